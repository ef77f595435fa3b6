//! `stats`, `jobs` and `retry` through the binary, on PostgreSQL, SQLite and (`stats`) the
//! Supabase REST API.

use std::path::PathBuf;

use douyin_worker::queue::EnqueueRequest;
use douyin_worker::queue::Queue;
use douyin_worker::queue::postgres::PgQueue;
use serde_json::Value;
use uuid::Uuid;

use super::{Place, claim, fail_for_good, rows_starting, stderr};
use crate::support::backends::{Backend, Kind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_jobs_and_retry_through_the_binary_on_postgres() {
    let db = fakes::pg::fresh_pg().await;
    let q = PgQueue::from_pool(db.pool.clone());
    stats_jobs_and_retry(&q, &Place::postgres(&db.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_jobs_and_retry_through_the_binary_on_sqlite() {
    fakes::pg::init_tracing();
    let place = Place::sqlite();
    let q = place.sqlite_queue().await;
    stats_jobs_and_retry(&q, &place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_through_the_binary_in_supabase_mode() {
    let b = Backend::new(Kind::Rest).await;
    let (url, key) = b.locator.1.split_once(' ').unwrap();
    b.enqueue("7400000000000000001").await;
    let place = Place {
        env: vec![
            ("SUPABASE_URL".into(), url.into()),
            ("SUPABASE_SERVICE_ROLE_KEY".into(), key.into()),
        ],
        store: PathBuf::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let stats = tokio::task::spawn_blocking(move || place.json(&["stats", "--json"]))
        .await
        .unwrap();
    assert_eq!(stats["stats"]["pending_jobs"], 1);
    assert_eq!(stats["due_jobs"], 1);
}

async fn stats_jobs_and_retry(q: &dyn Queue, place: &Place) {
    let enqueue = |douyin_id: &'static str| async move {
        q.enqueue(&EnqueueRequest {
            douyin_id: Some(douyin_id.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .job_id
        .unwrap()
    };
    let failed = enqueue("7400000000000000002").await;
    fail_for_good(q, failed).await;
    let running = enqueue("7400000000000000001").await;
    let _held = claim(q, running, "w-hold").await;

    // stats
    let table = place.ok(&["stats"]);
    assert_eq!(rows_starting(&table, "total"), ["total jobs        2"]);
    assert!(table.lines().any(|l| l == "failed            1"), "{table}");
    assert!(table.lines().any(|l| l == "running           1"), "{table}");
    assert!(
        table.contains("WORKER  RUNNING\nw-hold        1"),
        "{table}"
    );
    let stats = place.json(&["stats", "--json"]);
    assert_eq!(stats["stats"]["total_jobs"], 2);
    assert_eq!(stats["stats"]["failed_jobs"], 1);
    assert_eq!(stats["stats"]["active_workers"], 1);
    assert_eq!(stats["due_jobs"], 0);
    assert_eq!(stats["oldest_due_seconds"], Value::Null);
    assert_eq!(stats["workers"][0]["worker_id"], "w-hold");

    // jobs
    let table = place.ok(&["jobs"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "JOB",
        "VIDEO",
        "STATUS",
        "ATTEMPTS",
        "WORKER",
        "PROGRESS",
        "LAST ERROR",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    // Newest first; aligned: every row's status starts where the title's does.
    let status_at = lines[0].find("STATUS").unwrap();
    assert!(lines[1].starts_with(&running.to_string()), "{table}");
    assert_eq!(&lines[1][status_at..status_at + 7], "running");
    assert!(lines[1].contains("w-hold") && lines[1].contains("7400000000000000001"));
    assert!(lines[2].starts_with(&failed.to_string()), "{table}");
    assert_eq!(&lines[2][status_at..status_at + 6], "failed");
    assert!(lines[2].contains("7400000000000000002"));
    assert!(lines[2].contains("1/5"));
    assert!(lines[2].ends_with("video deleted: 作品已删除"), "{table}");
    let jobs = place.json(&["jobs", "--status", "failed", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], failed.to_string());
    assert_eq!(jobs[0]["status"], "failed");
    assert_eq!(jobs[0]["last_error_class"], "permanent");
    let jobs = place.json(&["jobs", "--limit", "1", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], running.to_string());
    assert_eq!(
        place.ok(&["jobs", "--status", "completed"]),
        "no completed jobs\n"
    );
    let o = place.run(&["jobs", "--status", "done"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown job status \"done\": expected pending, running"),
        "{}",
        stderr(&o)
    );
    let o = place.run(&["jobs", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // retry
    let o = place.run(&["retry", "not-a-uuid"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"not-a-uuid\" is not a job id"),
        "{}",
        stderr(&o)
    );
    assert_eq!(place.run(&["retry"]).status.code(), Some(2));
    assert_eq!(
        place
            .run(&["retry", "--all-failed", &failed.to_string()])
            .status
            .code(),
        Some(2)
    );
    let table = place.ok(&["retry", &failed.to_string()]);
    let rows = rows_starting(&table, &failed.to_string());
    assert_eq!(rows.len(), 1, "{table}");
    assert!(table.starts_with("JOB "), "{table}");
    let cells: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(cells[1], "queued");
    let new_job: Uuid = cells[2].parse().unwrap();
    assert_eq!(q.job(new_job).await.unwrap().unwrap().status, "pending");

    let unknown = Uuid::new_v4();
    let o = place.run(&[
        "retry",
        "--json",
        &failed.to_string(),
        &running.to_string(),
        &unknown.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "not_found is bad input");
    assert!(
        stderr(&o).contains("1 of 3 job ids match no job"),
        "{}",
        stderr(&o)
    );
    let results: Value = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["duplicate", "not_failed", "not_found"]);
    assert_eq!(results[0]["new_job_id"], new_job.to_string());

    assert_eq!(
        place.ok(&["retry", "--all-failed"]),
        "no failed jobs to retry\n"
    );
    assert_eq!(
        place.json(&["retry", "--all-failed", "--json"]),
        Value::Array(vec![])
    );

    // enqueue prints the same kind of table.
    let table = place.ok(&["enqueue", "7400000000000000002"]);
    assert!(table.starts_with("OUTCOME"), "{table}");
    assert_eq!(rows_starting(&table, "duplicate").len(), 1, "{table}");
}
