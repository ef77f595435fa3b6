//! Queue backends for tests: every queue test runs against each of them.

use std::sync::Arc;

use douyin_worker::config::Secret;
use douyin_worker::queue::Queue;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::rest::RestQueue;
use douyin_worker::queue::sqlite::SqliteQueue;
use douyin_worker::queue::{EnqueueOutcome, EnqueueRequest};
use uuid::Uuid;

use fakes::pg::{TestDb, fresh_pg, fresh_sqlite, init_tracing};

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
    /// The SQL functions over the Supabase REST API (the PostgREST emulator on PostgreSQL).
    Rest,
}

/// A fresh queue and what keeps it alive.
pub struct Backend {
    pub queue: Arc<dyn Queue>,
    /// How another process reaches the same queue: `("postgres", url)` or `("sqlite", path)`.
    pub locator: (String, String),
    pub pg: Option<TestDb>,
    pub rest: Option<fakes::postgrest::PostgrestEmulator>,
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
                    rest: None,
                    _dir: None,
                }
            }
            Kind::Rest => {
                let db = fresh_pg().await;
                let emulator = fakes::postgrest::PostgrestEmulator::start(db.pool.clone()).await;
                let key = fakes::postgrest::jwt("service_role");
                let queue = RestQueue::new(&emulator.url.parse().unwrap(), Secret::new(&key))
                    .expect("rest queue");
                Backend {
                    queue: Arc::new(queue),
                    locator: ("rest".into(), format!("{} {key}", emulator.url)),
                    pg: Some(db),
                    rest: Some(emulator),
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
                    rest: None,
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

    /// Moves a pending job's due time to `secs` seconds from now (negative: in the past), as
    /// a backoff would, straight in the database.
    pub async fn set_due(&self, id: Uuid, secs: i64) {
        self.update_row(
            id,
            "update public.download_jobs
                set scheduled_at = now() + make_interval(secs => $2::float8) where id = $1",
            "update download_jobs
                set scheduled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2 || ' seconds')
              where id = ?1",
            &[&secs.to_string()],
        )
        .await;
    }

    /// Makes a running job's lease run out now, straight in the database, as a worker that
    /// stopped renewing it would.
    pub async fn expire_lease(&self, id: Uuid) {
        self.update_row(
            id,
            "update public.download_jobs
                set lease_expires_at = now() - interval '1 second'
              where id = $1 and status = 'running'",
            "update download_jobs
                set lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 seconds')
              where id = ?1 and status = 'running'",
            &[],
        )
        .await;
    }

    /// Hands a running job to `worker` under a new lease, straight in the database, as a
    /// rescue and a claim by another worker would: the lease its worker holds is gone.
    pub async fn take_over(&self, id: Uuid, worker: &str) {
        self.update_row(
            id,
            "update public.download_jobs
                set worker_id = $2, lease_id = $3::uuid,
                    lease_expires_at = now() + interval '1 hour'
              where id = $1 and status = 'running'",
            "update download_jobs
                set worker_id = ?2, lease_id = ?3,
                    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+3600 seconds')
              where id = ?1 and status = 'running'",
            &[worker, &Uuid::new_v4().to_string()],
        )
        .await;
    }

    /// Marks a video for deletion straight in the database, as the app does.
    pub async fn mark_for_deletion(&self, video: Uuid) {
        self.update_row(
            video,
            "update public.videos set marked_for_deletion = true where id = $1",
            "update videos set marked_for_deletion = 1 where id = ?1",
            &[],
        )
        .await;
    }

    /// Runs one update of a row straight in the database: `pg` on PostgreSQL (and behind the
    /// REST API), `sqlite` on SQLite; the row's id is the first parameter, `args` (text) the
    /// next ones.
    pub async fn update_row(&self, id: Uuid, pg: &str, sqlite: &str, args: &[&str]) {
        match &self.pg {
            Some(db) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(pg.to_string())).bind(id);
                for a in args {
                    q = q.bind(a.to_string());
                }
                q.execute(&db.pool).await.unwrap();
            }
            None => {
                let pool = self.sqlite_pool().await;
                let mut q =
                    sqlx::query(sqlx::AssertSqlSafe(sqlite.to_string())).bind(id.to_string());
                for a in args {
                    q = q.bind(a.to_string());
                }
                q.execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// One column of a row of `table` (`videos` or `download_jobs`) as text, read straight
    /// from the database (`None` for NULL); JSON columns come back as JSON text, to compare
    /// parsed.
    pub async fn column(&self, table: &str, id: Uuid, column: &str) -> Option<String> {
        match &self.pg {
            Some(db) => {
                let sql = format!("select {column}::text from public.{table} where id = $1");
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap()
            }
            None => {
                let pool = self.sqlite_pool().await;
                let sql = format!("select cast({column} as text) from {table} where id = ?1");
                let v = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                v
            }
        }
    }

    async fn sqlite_pool(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.locator.1))
            .await
            .unwrap()
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

/// Waits until the job is in one of `statuses`; panics with the job after `within`.
/// Queues `link` in the PostgreSQL queue of `pool` and waits until its job reaches one of
/// `statuses` (a worker process elsewhere runs it).
pub async fn enqueue_link_and_wait(
    pool: &sqlx::PgPool,
    link: &str,
    statuses: &[&str],
    within: std::time::Duration,
) -> douyin_worker::queue::JobRecord {
    let q = PgQueue::from_pool(pool.clone());
    let r = q
        .enqueue(&EnqueueRequest {
            url: Some(link.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_status(&q, r.job_id.unwrap(), statuses, within).await
}

pub async fn wait_for_status(
    q: &dyn QueueAdmin,
    id: Uuid,
    statuses: &[&str],
    within: std::time::Duration,
) -> douyin_worker::queue::JobRecord {
    let deadline = std::time::Instant::now() + within;
    loop {
        let rec = q.job(id).await.unwrap().unwrap();
        if statuses.contains(&rec.status.as_str()) {
            return rec;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} still {} (wanted {statuses:?}): {rec:?}",
            rec.status
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Opens the SQLite queue a worker process creates at `path`, once the file is there.
pub async fn open_sqlite_when_created(path: &std::path::Path) -> SqliteQueue {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no queue file at {}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    SqliteQueue::open(path).await.unwrap()
}

/// Queues the video `douyin_id` into the SQLite queue of the worker process running on
/// `data_dir` and waits (30 s at most) until that job is completed.
pub async fn queue_and_complete(
    data_dir: &std::path::Path,
    douyin_id: &str,
) -> douyin_worker::queue::JobRecord {
    let q = open_sqlite_when_created(&data_dir.join("douyin-worker.db")).await;
    let r = q
        .enqueue(&douyin_worker::queue::EnqueueRequest {
            douyin_id: Some(douyin_id.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = r.job_id.expect("queued");
    wait_for_status(&q, id, &["completed"], std::time::Duration::from_secs(30)).await
}

/// Runs each named async test fn (taking a [`Kind`]) once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        crate::support::backends::on_backends!([postgres: Postgres, sqlite: Sqlite, rest: Rest] $($name),*);
    };
}
pub(crate) use on_every_backend;

/// Runs each named test on the backends that push wake-ups (not the REST API, which polls).
macro_rules! on_push_backends {
    ($($name:ident),* $(,)?) => {
        crate::support::backends::on_backends!([postgres: Postgres, sqlite: Sqlite] $($name),*);
    };
}
pub(crate) use on_push_backends;

macro_rules! on_backends {
    ([] $($name:ident),*) => {};
    ([$module:ident : $kind:ident $(, $rest_module:ident : $rest_kind:ident)*] $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(crate::support::backends::Kind::$kind).await
                }
            )*
        }
        crate::support::backends::on_backends!([$($rest_module : $rest_kind),*] $($name),*);
    };
}
pub(crate) use on_backends;
