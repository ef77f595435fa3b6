//! The database's health as the worker reports it: a PostgreSQL that refuses connections is
//! named at once, and a queue whose claims keep failing (a damaged SQLite file, a table
//! PostgreSQL will not let the worker read) is counted, logged with what to do, and turns
//! `/readyz` to 503 until a claim works again.

use crate::cli::{stderr, worker};

/// Every command that opens the queue says `connection refused` when nothing listens at
/// DATABASE_URL, not `pool timed out while waiting for an open connection` ten seconds later.
#[test]
fn an_unreachable_postgres_is_reported_as_connection_refused() {
    let port = fakes::servers::free_port();
    let url = format!("postgres://worker:hunter2-secret@127.0.0.1:{port}/queue");
    for command in ["stats", "run"] {
        let o = worker(&[command], &[("DATABASE_URL", url.as_str())]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{command}: {err}");
        assert!(
            err.contains("cannot connect to DATABASE_URL")
                && err.to_lowercase().contains("connection refused"),
            "{command}: {err}"
        );
        assert!(!err.contains("pool timed out"), "{command}: {err}");
        assert!(!err.contains("hunter2-secret"), "{command}: {err}");
    }
}

/// Overwrites pages of an SQLite file; returns what was there.
fn overwrite_pages(file: &std::path::Path, pages: &[(u32, Vec<u8>)]) -> Vec<(u32, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut before = Vec::new();
    for (page, bytes) in pages {
        let at = SeekFrom::Start(u64::from(page - 1) * bytes.len() as u64);
        let mut old = vec![0; bytes.len()];
        f.seek(at).unwrap();
        f.read_exact(&mut old).unwrap();
        f.seek(at).unwrap();
        f.write_all(bytes).unwrap();
        before.push((*page, old));
    }
    f.sync_all().unwrap();
    before
}

/// A write by another connection, so the worker's connections drop their page caches and read
/// the file again (as after any other process's commit).
async fn touch(file: &std::path::Path, n: i32) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .connect()
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("pragma user_version = {n}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Polls `/readyz` until it answers `status`; its JSON body.
pub(crate) async fn wait_for_readyz(base: &str, status: u16) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if code == status {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz still answers {code} {body}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The queue's `download_jobs` pages damaged under a running worker (the table and the index
/// claims read): every claim fails. After a few in a row `/readyz` answers 503
/// `claims_failing` (it answered 200: the schema check still passes), the failures are
/// counted in `/metrics`, and the log says what to do; once the pages are whole again the
/// next claim works and `/readyz` answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sqlite_queue_turns_readyz_to_503_with_a_metric_and_advice_until_claims_work() {
    use douyin_worker::queue::sqlite::SqliteQueue;

    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("douyin-worker.db");
    let queue = SqliteQueue::open(&file).await.unwrap();
    let roots: Vec<(String, i64)> = sqlx::query_as(
        "select name, rootpage from sqlite_master
          where name in ('download_jobs', 'download_jobs_claim_idx')",
    )
    .fetch_all(queue.pool())
    .await
    .unwrap();
    assert_eq!(roots.len(), 2, "{roots:?}");
    let page_size: i64 = sqlx::query_scalar("pragma page_size")
        .fetch_one(queue.pool())
        .await
        .unwrap();
    sqlx::query("pragma wal_checkpoint(truncate)")
        .execute(queue.pool())
        .await
        .unwrap();
    queue.pool().close().await;

    let port = fakes::servers::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let w = crate::cli::RunningBinary::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("HTTP_ADDR", addr.as_str()),
    ]);
    wait_for_readyz(&base, 200).await;

    let garbage: Vec<(u32, Vec<u8>)> = roots
        .iter()
        .map(|(_, page)| (*page as u32, vec![0xab; page_size as usize]))
        .collect();
    let whole = overwrite_pages(&file, &garbage);
    touch(&file, 1).await;
    let body = wait_for_readyz(&base, 503).await;
    assert_eq!(body["reason"], "claims_failing", "{body}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name, labels| crate::api::sample(&metrics, name, labels);
    let failed = sample("douyin_claim_failures_total", &["error=\"database\""]);
    let in_a_row = sample("douyin_claim_consecutive_failures", &[]);
    let threshold = f64::from(douyin_worker::worker::NOT_READY_AFTER);
    assert!(failed.is_some_and(|n| n >= threshold), "{metrics}");
    assert!(in_a_row.is_some_and(|n| n >= threshold), "{metrics}");

    overwrite_pages(&file, &whole);
    touch(&file, 2).await;
    let body = wait_for_readyz(&base, 200).await;
    assert_eq!(body["status"], "ready", "{body}");

    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    let advice = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("claims keep failing"))
        })
        .unwrap_or_else(|| panic!("no advice in the log: {lines:#?}"));
    assert_eq!(advice["level"], "ERROR", "{advice}");
    let what = advice["what_to_do"].as_str().unwrap_or_default();
    assert!(
        what.contains("damaged") && what.contains("PRAGMA integrity_check"),
        "{advice}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "claims work again; ready"),
        "{lines:#?}"
    );
}

/// Waits until `readiness` lists `want`; panics after 30 s.
async fn wait_for_reasons(readiness: &douyin_worker::readiness::Readiness, want: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while readiness.reasons() != want {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness reasons {:?}, expected {want:?}",
            readiness.reasons()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The same on PostgreSQL: `download_jobs` renamed away under a running worker makes every
/// claim fail; after a few the worker reports `claims_failing` (the schema check `/readyz`
/// also runs still passes), and once the table is back the next claim clears it and jobs run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_failing_on_postgres_make_the_worker_not_ready_until_one_works() {
    use std::sync::Arc;
    use std::time::Duration;

    use douyin_worker::queue::QueueAdmin;
    use douyin_worker::queue::postgres::PgQueue;
    use douyin_worker::readiness::{CLAIMS_FAILING, Readiness};
    use douyin_worker::worker::Worker;
    use tokio_util::sync::CancellationToken;

    let db = fakes::pg::fresh_pg().await;
    let queue = Arc::new(PgQueue::from_pool(db.pool.clone()));
    let readiness = Arc::new(Readiness::new());
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = crate::worker::options("pg-health", tmp.path().into());
    opts.poll_interval = Duration::from_millis(200);
    let stop = CancellationToken::new();
    let worker = Worker::new(
        queue.clone(),
        Arc::new(crate::support::stages::Succeed::default()),
        opts,
    )
    .with_readiness(readiness.clone());
    let run = tokio::spawn(worker.run(stop.clone()));

    sqlx::query("alter table public.download_jobs rename to download_jobs_away")
        .execute(&db.pool)
        .await
        .unwrap();
    wait_for_reasons(&readiness, &[CLAIMS_FAILING]).await;
    queue.check_schema().await.expect("the schema check passes");

    sqlx::query("alter table public.download_jobs_away rename to download_jobs")
        .execute(&db.pool)
        .await
        .unwrap();
    wait_for_reasons(&readiness, &[]).await;
    let job = queue
        .enqueue(&douyin_worker::queue::EnqueueRequest {
            douyin_id: Some("7400000000000000044".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .job_id
        .unwrap();
    crate::support::backends::wait_for_status(
        queue.as_ref(),
        job,
        &["completed"],
        Duration::from_secs(30),
    )
    .await;
    stop.cancel();
    run.await.unwrap();
}
