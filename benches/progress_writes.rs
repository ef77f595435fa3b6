//! Progress write rate (figures, not a timed test): the real binary with `MAX_CONCURRENT=16`
//! downloads 16 videos at once from the loopback CDN of the tests, paced so each download
//! lasts several seconds, into a local folder, on PostgreSQL. A trigger counts every progress
//! write (`report_download_progress`) the database receives. Prints the writes per download
//! and per second, next to the bound (one per whole percent and per half second per video,
//! plus the final 100 %: at most 101 per download and about 2 a second per download).
//!
//! `cargo bench --bench progress_writes`. Settings: `BENCH_MB` (size of each video, 8),
//! `BENCH_KBPS` (speed of each download in KiB/s, 1024), `BENCH_DOWNLOADS` (16). Uses
//! `DW_TEST_DATABASE_URL` when set, else starts a throwaway cluster with
//! `tests/support/pg-cluster.sh`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{EnqueueRequest, QueueAdmin};
use fakes::cdn::{Cdn, Serve};
use fakes::douyin::{Behaviour, DouyinServer, mp4_of_size, video_post_from};

/// Counts the progress writes of running jobs (completion, which also sets `progress_at`,
/// is not one).
const COUNT_WRITES: &str = "
create table public.progress_writes (n bigserial primary key, job_id uuid not null);
create function public.count_progress_write() returns trigger language plpgsql as $$
begin
    if new.progress_at is distinct from old.progress_at and new.progress_bytes is not null
       and old.status = 'running' and new.status = 'running' then
        insert into public.progress_writes (job_id) values (new.id);
    end if;
    return new;
end $$;
create trigger count_progress_write after update on public.download_jobs
    for each row execute function public.count_progress_write();
";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a whole number"))
        })
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let mb = setting("BENCH_MB", 8);
    let kbps = setting("BENCH_KBPS", 1024).max(1);
    let downloads = setting("BENCH_DOWNLOADS", 16) as usize;
    let size = (mb * 1024 * 1024) as usize;
    // 16 KiB pieces at the configured speed.
    let piece = 16 * 1024u64;
    let every = Duration::from_micros(piece * 1_000_000 / (kbps * 1024));
    let serve = Serve::Trickle {
        after: 0,
        piece,
        every,
        count: (size as u64).div_ceil(piece) as u32,
    };

    let db = fakes::pg::fresh_pg().await;
    sqlx::raw_sql(COUNT_WRITES).execute(&db.pool).await.unwrap();
    let cdn = Cdn::start().await;
    let mut posts = Vec::new();
    let ids: Vec<String> = (0..downloads)
        .map(|i| format!("74123456789012{i:05}"))
        .collect();
    for id in &ids {
        let media = mp4_of_size(id, size);
        let path = format!("/media/{id}.mp4");
        cdn.add(&path, media, serve.clone());
        posts.push(video_post_from(
            id,
            Behaviour::NewSharePage,
            &cdn.url(&path),
            size as u64,
        ));
    }
    let server = DouyinServer::start(posts).await;
    let data = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
        .arg("run")
        .env_remove("SUPABASE_URL")
        .env_remove("SUPABASE_SERVICE_ROLE_KEY")
        .env_remove("STORAGE_URL")
        .env("DATABASE_URL", &db.url)
        .env("DOUYIN_UPSTREAM", &server.url)
        .env("DATA_DIR", data.path())
        .env("TEMP_DIR", temp.path())
        .env("MAX_CONCURRENT", downloads.to_string())
        .env("ALLOW_PRIVATE_NETWORKS", "true")
        .env("BROWSER_ENABLED", "false")
        .env("HTTP_ADDR", "off")
        .env("MIN_FREE_DISK", "0")
        .env("POLL_INTERVAL", "200")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start douyin-worker");

    let q = PgQueue::from_pool(db.pool.clone());
    let started = Instant::now();
    for id in &ids {
        q.enqueue(&EnqueueRequest {
            douyin_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let deadline = started + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar(
            "select count(*) from public.download_jobs where status in ('completed', 'failed')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if done as usize == downloads {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the downloads did not end within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();

    let completed: i64 =
        sqlx::query_scalar("select count(*) from public.download_jobs where status = 'completed'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // Per download: its progress writes and how long it ran (claim to outcome).
    let per_job: Vec<(i64, f64)> = sqlx::query_as(
        "select count(w.n), extract(epoch from (j.finished_at - j.started_at))::float8
           from public.download_jobs j left join public.progress_writes w on w.job_id = j.id
          group by j.id, j.finished_at, j.started_at order by 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let total: i64 = per_job.iter().map(|(n, _)| n).sum();
    let rate = |(n, secs): &(i64, f64)| *n as f64 / secs.max(0.001);
    let fastest = per_job.iter().map(rate).fold(0.0, f64::max);
    let longest = per_job.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    println!(
        "{downloads} concurrent downloads of {mb} MiB at {kbps} KiB/s each, {completed} \
         completed, {elapsed:.1} s in all (the longest job {longest:.1} s)"
    );
    println!(
        "progress writes: {total} in all, {:.1}/s over the run; per download min {} max {} \
         (bound 101), at most {fastest:.2}/s for one download (bound about 2)",
        total as f64 / elapsed,
        per_job.first().map_or(0, |p| p.0),
        per_job.last().map_or(0, |p| p.0),
    );
}
