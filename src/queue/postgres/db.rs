//! How the queue's statements reach PostgreSQL: every one goes through [`Db`], which knows
//! whether a connection keeps its session.
//!
//! - Direct, or through a session-mode pooler: the pool (or the claims' kept connection), with
//!   sqlx's named prepared statements cached per connection: one round trip per call.
//! - Through a transaction-mode pooler (Supabase's port 6543, PgBouncer's
//!   `pool_mode = transaction`), a client connection may change server connection after every
//!   transaction, and sqlx runs a statement in two syncs (Parse + Describe, then Bind +
//!   Execute). So each call runs inside its own `BEGIN` .. `COMMIT`, which pins one server
//!   connection for both syncs, with the *unnamed* statement (a named one, `sqlx_s_N`, would
//!   outlive the transaction and collide with another client's on a shared server
//!   connection: `prepared statement "sqlx_s_1" already exists`). Four round trips per call
//!   instead of one.
//!
//! [`Db`] takes a query and returns rows; it has no way to run a statement that skips this
//! choice, so a new query cannot forget it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow};
use sqlx::{ConnectOptions, Connection, FromRow, Postgres};

use crate::config::DbPooler;

/// A statement with its arguments bound, as `sqlx::query` builds it.
pub(super) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The queue's way to the database: a pool, the claims' kept connection, and the pooler mode.
#[derive(Clone, Debug)]
pub(super) struct Db {
    pool: PgPool,
    pooler: DbPooler,
    /// The connection claims go over (a worker has one claim in flight at a time).
    claims: Arc<OwnConnection>,
}

impl Db {
    pub(super) fn new(pool: PgPool, pooler: DbPooler) -> Self {
        Self {
            pool,
            pooler,
            claims: Default::default(),
        }
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn pooler(&self) -> DbPooler {
        self.pooler
    }

    /// Runs `q` on a pooled connection; its rows.
    pub(super) async fn rows(&self, q: PgQuery<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        if self.pooler.keeps_sessions() {
            q.fetch_all(&self.pool).await
        } else {
            let mut conn = self.pool.acquire().await?;
            in_own_transaction(&mut conn, q).await
        }
    }

    /// Runs `q` on the claims' kept connection (see [`OwnConnection`]); its rows.
    pub(super) async fn claim_rows(&self, q: PgQuery<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut own = self.claims.get(&self.pool).await?;
        let rows = if self.pooler.keeps_sessions() {
            q.fetch_all(own.conn()).await
        } else {
            in_own_transaction(own.conn(), q).await
        };
        rows.inspect_err(|_| own.discard())
    }

    /// The rows of `q`, each as a `T` (a tuple, or a `FromRow` type).
    pub(super) async fn all<T>(&self, q: PgQuery<'_>) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow>,
    {
        self.rows(q).await?.iter().map(T::from_row).collect()
    }

    /// The first row of `q`, if any.
    pub(super) async fn optional_row(&self, q: PgQuery<'_>) -> Result<Option<PgRow>, sqlx::Error> {
        Ok(self.rows(q).await?.into_iter().next())
    }

    /// The first row of `q`; an error if there is none.
    pub(super) async fn row(&self, q: PgQuery<'_>) -> Result<PgRow, sqlx::Error> {
        self.optional_row(q).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// The first row of `q` as a `T`; an error if there is none.
    pub(super) async fn one<T>(&self, q: PgQuery<'_>) -> Result<T, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow>,
    {
        T::from_row(&self.row(q).await?)
    }
}

/// Runs `q` as an unnamed statement inside a transaction of its own, so that a
/// transaction-mode pooler keeps both of its syncs on one server connection.
async fn in_own_transaction(
    conn: &mut PgConnection,
    q: PgQuery<'_>,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let rows = q.persistent(false).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows)
}

/// A connection of its own for calls one task makes back to back (the claims), opened with
/// the pool's settings on first use and kept, outside the pool (closing the pool never waits
/// for it). A pool checkout per claim cost about 0.1 ms of a 0.6 ms claim and moved the claims
/// across server processes; on one kept connection the worker loop ran 30-40 % more jobs per
/// second (`benches/worker_loop.rs`; the same for the outcome calls, a few per second in
/// batches, changed nothing measurable). After any error the connection is dropped and the
/// next call opens a fresh one, so a broken connection never sticks.
#[derive(Debug, Default)]
struct OwnConnection(tokio::sync::Mutex<Option<PgConnection>>);

impl OwnConnection {
    /// The connection, opened first if there is none; callers take turns.
    async fn get(&self, pool: &PgPool) -> Result<OwnGuard<'_>, sqlx::Error> {
        let mut slot = self.0.lock().await;
        if slot.is_none() {
            // As long as the pool waits for a connection.
            let options = pool.connect_options();
            let conn = tokio::time::timeout(Duration::from_secs(10), options.connect())
                .await
                .map_err(|_| {
                    sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connecting to the database took longer than 10 s",
                    ))
                })??;
            *slot = Some(conn);
        }
        Ok(OwnGuard(slot))
    }
}

/// A turn on an [`OwnConnection`].
struct OwnGuard<'a>(tokio::sync::MutexGuard<'a, Option<PgConnection>>);

impl OwnGuard<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        self.0.as_mut().expect("opened by OwnConnection::get")
    }

    /// Drops the connection after an error; the next call opens another.
    fn discard(&mut self) {
        *self.0 = None;
    }
}
