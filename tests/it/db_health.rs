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
