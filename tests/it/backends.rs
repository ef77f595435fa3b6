//! Queue backends for tests: every queue test runs against each of them.

use std::sync::Arc;

use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::sqlite::SqliteQueue;
use douyin_worker::queue::{EnqueueOutcome, EnqueueRequest, JobQueue};
use uuid::Uuid;

use crate::helpers::{TestDb, fresh_pg, fresh_sqlite, init_tracing};

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// A fresh queue and what keeps it alive.
pub struct Backend {
    pub queue: Arc<dyn JobQueue>,
    /// How another process reaches the same queue: `("postgres", url)` or `("sqlite", path)`.
    pub locator: (String, String),
    pub pg: Option<TestDb>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// A fresh, empty, migrated queue.
    pub async fn new(kind: Kind) -> Self {
        init_tracing();
        match kind {
            Kind::Postgres => {
                let db = fresh_pg().await;
                let queue = PgQueue::from_pool(db.pool.clone());
                Backend {
                    queue: Arc::new(queue),
                    locator: ("postgres".into(), db.url.clone()),
                    pg: Some(db),
                    _dir: None,
                }
            }
            Kind::Sqlite => {
                let (dir, path) = fresh_sqlite();
                let queue = SqliteQueue::open(&path).await.expect("open sqlite queue");
                Backend {
                    queue: Arc::new(queue),
                    locator: ("sqlite".into(), path.display().to_string()),
                    pg: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// Queues a job for a new video with the given Douyin id; returns the job id.
    pub async fn enqueue(&self, douyin_id: &str) -> Uuid {
        self.enqueue_with(EnqueueRequest {
            douyin_id: Some(douyin_id.to_string()),
            ..Default::default()
        })
        .await
    }

    /// Queues a job; it must be new.
    pub async fn enqueue_with(&self, req: EnqueueRequest) -> Uuid {
        let r = self.queue.enqueue(&req).await.expect("enqueue");
        assert_eq!(r.outcome, EnqueueOutcome::Queued, "{req:?}");
        r.job_id.expect("job id")
    }

    /// Queues `n` jobs with distinct Douyin ids.
    pub async fn enqueue_many(&self, n: usize) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(
                self.enqueue(&format!("{}", 7_400_000_000_000_000_000u64 + i as u64))
                    .await,
            );
        }
        ids
    }
}

/// Runs each named async test fn (taking a [`Kind`]) once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(crate::backends::Kind::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(crate::backends::Kind::Sqlite).await
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;
