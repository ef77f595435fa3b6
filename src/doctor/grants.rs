//! What the public anon key may not do, checked live: call the worker's functions (claim,
//! the job list, the statistics) or read the jobs table. Migration `0005_row_security.sql`
//! promises it; a database set up before it, or grants added by hand since, break it.
//!
//! With `SUPABASE_ANON_KEY` the key itself is tried over the REST API (each call must be
//! refused). Without it, on a direct `DATABASE_URL`, the same calls run as the `anon` role
//! (`SET LOCAL ROLE anon` in a transaction that is rolled back) when the role exists and the
//! database user may take it.

use std::time::Duration;

use sqlx::{Connection, Executor};

use super::{Check, Outcome};
use crate::config::{Config, QueueBackend, Secret};
use crate::queue::rest::RestQueue;
use crate::queue::{JobFilter, JobQueue, QueueAdmin, QueueError};

/// The check's name.
pub(crate) const NAME: &str = "anon key";

/// What to do when the anon key may do what it must not.
const OPEN: &str = "anyone holding the app's public key can change the queue: run `douyin-worker \
                    migrate` (migrations/0005_row_security.sql), and revoke what was granted to \
                    anon by hand";

/// The anon key's check.
pub async fn check(config: &Config, budget: Duration) -> Check {
    let project = config.supabase.as_ref();
    if let Some((project, anon)) = project.and_then(|p| p.anon_key.as_ref().map(|k| (p, k))) {
        return super::report::timed(NAME, budget, over_rest(&project.url, anon, config)).await;
    }
    match &config.queue.backend {
        QueueBackend::Postgres { url } => {
            super::report::timed(NAME, budget, as_anon_role(url, &config.worker.worker_id)).await
        }
        QueueBackend::Supabase => Check::new(
            NAME,
            0,
            Outcome::skip(
                "SUPABASE_ANON_KEY is not set: set it to check that the app's public key cannot \
                 reach the queue",
            ),
        ),
        QueueBackend::Sqlite { .. } => Check::new(
            NAME,
            0,
            Outcome::skip("the embedded queue has no public key"),
        ),
    }
}

/// Each worker function called with the anon key: each must be refused.
async fn over_rest(url: &url::Url, anon: &Secret, config: &Config) -> Outcome {
    let q = match RestQueue::new(url, anon.clone()) {
        Ok(q) => q,
        Err(e) => return Outcome::fail(e.to_string(), "fix SUPABASE_URL"),
    };
    let worker = &config.worker.worker_id;
    let filter = JobFilter {
        status: None,
        limit: 1,
    };
    let calls = [
        (
            "claim_download_jobs",
            q.claim(worker, 0, config.worker.lease).await.map(drop),
        ),
        ("list_download_jobs", q.jobs(&filter).await.map(drop)),
        ("get_worker_stats", q.stats().await.map(drop)),
    ];
    let mut allowed = Vec::new();
    for (function, result) in calls {
        match result {
            Ok(()) => allowed.push(function),
            Err(QueueError::PermissionDenied(_)) => {}
            Err(e) => {
                return Outcome::fail(
                    format!("could not check {function} with the anon key: {e}"),
                    "is the REST API reachable, and SUPABASE_ANON_KEY this project's anon key?",
                );
            }
        }
    }
    verdict(
        &allowed,
        "claim_download_jobs, list_download_jobs and get_worker_stats",
    )
}

/// The calls run as the `anon` role over `DATABASE_URL`, in a transaction rolled back.
async fn as_anon_role(url: &Secret, worker_id: &str) -> Outcome {
    let options = match crate::config::database_url::connect_options(url.expose()) {
        Ok(o) => o,
        Err(e) => return Outcome::fail(format!("DATABASE_URL: {e}"), "fix DATABASE_URL"),
    };
    let result: Result<Option<Vec<&'static str>>, sqlx::Error> = async {
        let mut conn = sqlx::postgres::PgConnection::connect_with(&options).await?;
        let roles: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = 'anon')")
                .persistent(false)
                .fetch_one(&mut conn)
                .await?;
        if !roles {
            return Ok(None);
        }
        let mut tx = conn.begin().await?;
        if tx.execute("set local role anon").await.is_err() {
            return Ok(None);
        }
        let probes = [
            (
                "claim_download_jobs",
                "select * from public.claim_download_jobs($1, 0)",
            ),
            (
                "download_jobs",
                "select 1 from public.download_jobs limit 1",
            ),
        ];
        let mut allowed = Vec::new();
        for (what, sql) in probes {
            tx.execute("savepoint probe").await?;
            // Unnamed statements: safe behind a transaction-mode pooler too.
            let query = sqlx::query(sql).persistent(false);
            let query = if sql.contains("$1") {
                query.bind(worker_id)
            } else {
                query
            };
            match query.fetch_all(&mut *tx).await {
                Ok(_) => allowed.push(what),
                Err(e) if is_denied(&e) => {}
                Err(e) => return Err(e),
            }
            tx.execute("rollback to savepoint probe").await?;
        }
        tx.rollback().await?;
        Ok(Some(allowed))
    }
    .await;
    match result {
        Ok(Some(allowed)) => verdict(&allowed, "claim_download_jobs and the download_jobs table"),
        Ok(None) => Outcome::skip(
            "no anon role this database user may take (not set up like Supabase): set \
             SUPABASE_ANON_KEY to check the app's public key over the REST API",
        ),
        Err(e) => Outcome::fail(
            format!("could not check as the anon role: {}", QueueError::from(e)),
            "see the database's log",
        ),
    }
}

/// `insufficient_privilege`: what the anon role must get.
fn is_denied(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42501"))
}

fn verdict(allowed: &[&str], checked: &str) -> Outcome {
    if allowed.is_empty() {
        Outcome::pass(format!("refused {checked}, as it must"))
    } else {
        Outcome::fail(
            format!("the anon role may use {}", allowed.join(", ")),
            OPEN,
        )
    }
}
