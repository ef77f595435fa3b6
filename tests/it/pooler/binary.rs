//! The binary with `DATABASE_URL` pointing at PgBouncer: the admin commands, and `run` doing
//! one job end to end with the download API answering for it. Its log must hold no warning
//! or error; in transaction mode it announces that wake-ups are polled, in session mode
//! pickups are pushed (LISTEN works).

use std::process::Output;
use std::time::Duration;

use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::migrate::POSTGRES;
use douyin_worker::queue::postgres::PgQueue;
use serde_json::Value;
use uuid::Uuid;

use super::{PgBouncer, PoolMode, announces_polling, complaints};
use crate::admin::{Place, complete, fail_for_good, stderr};
use crate::system::{Rig, wait_until};
use fakes::cdn::Serve;
use fakes::pg::fresh_pg_empty;
use fakes::servers::free_port;

/// The JSON lines of a command's standard error.
fn log_lines(o: &Output) -> Vec<Value> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs a command that must succeed and log no warning or error; its standard output.
fn quietly(place: &Place, args: &[&str]) -> String {
    let o = place.run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let bad = complaints(&log_lines(&o), |_| false);
    assert!(bad.is_empty(), "{args:?} logged:\n{}", bad.join("\n"));
    String::from_utf8(o.stdout).unwrap()
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `DATABASE_URL` of database `db` through `bouncer` in `mode`, and the `DB_POOLER` setting
/// to go with it: transaction mode as detection finds it (the `pgbouncer=true` parameter
/// other clients use), session mode as the setting says.
fn database_env(bouncer: &PgBouncer, db: &str, mode: PoolMode) -> Vec<(String, String)> {
    match mode {
        PoolMode::Session => vec![
            ("DATABASE_URL".into(), bouncer.url(db)),
            ("DB_POOLER".into(), "session".into()),
        ],
        PoolMode::Transaction => vec![(
            "DATABASE_URL".into(),
            format!("{}?pgbouncer=true", bouncer.url(db)),
        )],
    }
}

/// `migrate` (twice), `enqueue`, `stats`, `jobs`, `retry` and `gc` through a PgBouncer in
/// `mode`.
async fn admin_commands(mode: PoolMode) {
    let bouncer = PgBouncer::start(mode);
    let db = fresh_pg_empty().await;
    let mut place = Place::postgres(&db.url);
    // The pooler's URL in place of the direct one.
    place.env.retain(|(k, _)| k != "DATABASE_URL");
    place.env.extend(database_env(&bouncer, &db.name, mode));
    place.env.push(("LOG_FORMAT".into(), "json".into()));

    let out = quietly(&place, &["migrate"]);
    assert_eq!(out.matches("applied").count(), POSTGRES.len(), "{out}");
    let out = quietly(&place, &["migrate"]);
    assert_eq!(out.matches("unchanged").count(), POSTGRES.len(), "{out}");

    let rows = json(&quietly(
        &place,
        &[
            "enqueue",
            "--json",
            "7400000000000000011",
            "https://www.douyin.com/video/7400000000000000012",
            "7400000000000000011",
        ],
    ));
    let outcomes: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["queued", "queued", "duplicate"]);
    let job = |i: usize| rows[i]["job_id"].as_str().unwrap().parse::<Uuid>().unwrap();
    let (doomed, done) = (job(0), job(1));

    // A worker's outcomes, recorded directly.
    let q = PgQueue::from_pool(db.pool.clone());
    fail_for_good(&q, doomed).await;
    let key = "7400000000000000012/7400000000000000012.mp4";
    complete(&q, done, "videos", key).await;

    let stats = json(&quietly(&place, &["stats", "--json"]));
    assert_eq!(stats["stats"]["completed_jobs"], 1, "{stats}");
    assert_eq!(stats["stats"]["failed_jobs"], 1, "{stats}");
    let table = quietly(&place, &["stats"]);
    assert!(!table.is_empty());

    let failed = json(&quietly(&place, &["jobs", "--status", "failed", "--json"]));
    assert_eq!(failed[0]["id"], doomed.to_string(), "{failed}");
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let listed = quietly(&place, &["jobs"]);
    assert_eq!(listed.lines().count(), 3, "titles and two jobs: {listed}");

    let retried = json(&quietly(&place, &["retry", "--json", &doomed.to_string()]));
    assert_eq!(retried[0]["outcome"], "queued", "{retried}");
    quietly(&place, &["retry", "--all-failed"]);
    let pending = json(&quietly(&place, &["jobs", "--status", "pending", "--json"]));
    assert_eq!(pending.as_array().unwrap().len(), 1, "{pending}");

    // The store: the completed video's object, and an orphan.
    for name in [key, "9/9.mp4"] {
        let path = place.store.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"bytes").unwrap();
    }
    let report = json(&quietly(
        &place,
        &["gc", "--apply", "--min-age", "0", "--json"],
    ));
    assert_eq!(report["deleted"], 1, "{report}");
    assert_eq!(report["orphans"][0]["key"], "9/9.mp4", "{report}");
    assert!(place.store.join(key).exists());
    assert!(!place.store.join("9/9.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_work_through_a_session_mode_pooler() {
    admin_commands(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_work_through_a_transaction_mode_pooler() {
    admin_commands(PoolMode::Transaction).await;
}

/// A video row of the crawler's shape, with no job.
async fn insert_video(pool: &sqlx::PgPool, douyin_id: &str) -> Uuid {
    sqlx::query_scalar(
        "insert into public.videos (douyin_id, video_url, title)
         values ($1, 'https://www.douyin.com/video/' || $1, 'a title') returning id",
    )
    .bind(douyin_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Whether the worker's database shows a session that LISTENs and, idle, one whose last
/// statement was a claim (the worker's first claim is done and found nothing).
async fn listening_and_idle(pool: &sqlx::PgPool) -> (bool, bool) {
    sqlx::query_as(
        "select coalesce(bool_or(query ilike 'listen%'), false),
                coalesce(bool_or(state = 'idle' and query like '%claim_download_jobs%'), false)
           from pg_stat_activity where datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `run` through a PgBouncer in `mode`: the UI asks the download API for a video, the worker
/// stores it, the API answers with the file.
async fn one_job_end_to_end(mode: PoolMode) {
    const ID: &str = "7412345678901239021";
    let bouncer = PgBouncer::start(mode);
    let rig = Rig::start(&[(ID, 256 * 1024, Serve::Normal)]).await;
    // Health and metrics on one listener, the download API on its own, as deployed.
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let api_addr = format!("127.0.0.1:{}", free_port());
    let api = format!("http://{api_addr}");
    let env = database_env(&bouncer, &rig.db.name, mode);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // In session mode no test waits out the poll interval: only a pushed wake-up explains
    // a pickup.
    let poll = match mode {
        PoolMode::Session => "600000",
        PoolMode::Transaction => "200",
    };
    env.extend([
        ("HTTP_ADDR", addr.as_str()),
        ("API_ADDR", api_addr.as_str()),
        ("POLL_INTERVAL", poll),
    ]);
    let bin = rig.worker(&env);
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.bytes().await.ok()?))
        }
    };
    wait_until(Duration::from_secs(30), "the worker's /readyz", || async {
        get(format!("{base}/readyz"))
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    if mode == PoolMode::Session {
        wait_until(
            Duration::from_secs(30),
            "LISTEN and an idle claimer",
            || async {
                let (listening, idle) = listening_and_idle(&rig.db.pool).await;
                (listening && idle).then_some(())
            },
        )
        .await;
    }

    let video = insert_video(&rig.db.pool, ID).await;
    let download = format!("{api}/api/videos/{video}/download");
    let r = client.post(&download).send().await.unwrap();
    assert_eq!(r.status(), 202, "queued through the API");
    let answer: Value = wait_until(Duration::from_secs(60), "the video ready", || async {
        let (status, body) = get(download.clone()).await?;
        let body: Value = serde_json::from_slice(&body).ok()?;
        assert!(matches!(status, 200 | 202), "{status} {body}");
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(answer["status"], "ready", "{answer}");
    let link = answer["download_url"].as_str().unwrap();
    let (status, bytes) = get(format!("{api}{link}")).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        bytes == rig.videos[0].media,
        "the stored file, byte for byte"
    );
    let (status, _) = get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);

    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0), "{lines:?}");
    let bad = complaints(&lines, |_| false);
    assert!(bad.is_empty(), "the worker logged:\n{}", bad.join("\n"));
    let announced = lines.iter().any(announces_polling);
    match mode {
        PoolMode::Session => assert!(!announced, "LISTEN works in session mode"),
        PoolMode::Transaction => assert!(announced, "polling is announced: {lines:?}"),
    }
    let jobs = rig.q.jobs(&Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_end_to_end_through_a_session_mode_pooler_with_pushed_pickups() {
    one_job_end_to_end(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_end_to_end_through_a_transaction_mode_pooler_with_polling() {
    one_job_end_to_end(PoolMode::Transaction).await;
}
