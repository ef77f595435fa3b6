//! Where the queue lives: PostgreSQL (`DATABASE_URL`), Supabase's REST API (the Supabase
//! settings without `DATABASE_URL`), or the embedded SQLite file under `DATA_DIR`.

use std::path::PathBuf;

use clap::Args;
use url::Url;

use super::field::{Fields, field};
use super::{ConfigError, Secret};

/// `DATABASE_URL`, `DATA_DIR`, `DB_MAX_CONNECTIONS`, `DB_POOLER`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Queue")]
pub struct QueueArgs {
    /// PostgreSQL URL: queue over a direct connection (or a pooler) with LISTEN/NOTIFY
    /// wake-ups.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Folder of the embedded default: the SQLite queue and the local video store.
    #[arg(
        long,
        env = "DATA_DIR",
        global = true,
        value_name = "DIR",
        default_value = "./data"
    )]
    pub data_dir: Option<String>,

    /// Pooled connections to PostgreSQL per process (LISTEN holds one); claims go over one
    /// more of their own [default: MAX_CONCURRENT + 4].
    #[arg(long, env = "DB_MAX_CONNECTIONS", global = true, value_name = "N")]
    pub db_max_connections: Option<String>,

    /// A connection pooler between the worker and PostgreSQL: `transaction` (Supabase's port
    /// 6543, PgBouncer `pool_mode=transaction`: no prepared statements kept, no LISTEN),
    /// `session`, `none`, or `auto` (transaction for port 6543 or `pgbouncer=true` in
    /// DATABASE_URL, else none).
    #[arg(
        long,
        env = "DB_POOLER",
        global = true,
        value_name = "MODE",
        default_value = "auto"
    )]
    pub db_pooler: Option<String>,
}

/// Where the queue lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// Direct PostgreSQL (`DATABASE_URL`).
    Postgres {
        /// The connection URL (holds a password).
        url: Secret,
    },
    /// The Supabase REST API's RPC (`SUPABASE_URL` + key, no `DATABASE_URL`).
    Supabase,
    /// The embedded default: a SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

/// What sits between the worker and PostgreSQL (`DB_POOLER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbPooler {
    /// A direct connection (or a pooler that keeps sessions).
    None,
    /// A session-mode pooler: one server connection per client connection.
    Session,
    /// A transaction-mode pooler (Supabase's port 6543): a client's connection may change
    /// server connection after every transaction, so nothing may outlive one.
    Transaction,
}

impl DbPooler {
    /// The mode as `DB_POOLER` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DbPooler::None => "none",
            DbPooler::Session => "session",
            DbPooler::Transaction => "transaction",
        }
    }

    /// Whether a session outlives one transaction (LISTEN, prepared statements, session locks).
    pub(crate) fn keeps_sessions(self) -> bool {
        self != DbPooler::Transaction
    }

    /// The mode `auto` picks for `url`: transaction for Supabase's transaction-pooler port 6543
    /// or a `pgbouncer=true` parameter (the convention of other clients), else none.
    pub(crate) fn detect(url: &str) -> Self {
        let Ok(url) = Url::parse(url) else {
            return DbPooler::None;
        };
        let flagged = url.query_pairs().any(|(k, v)| {
            k.eq_ignore_ascii_case("pgbouncer")
                && matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        });
        if flagged || url.port() == Some(6543) {
            DbPooler::Transaction
        } else {
            DbPooler::None
        }
    }
}

/// The queue's settings.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// Which backend, and where.
    pub backend: QueueBackend,
    /// The embedded default's folder (`DATA_DIR`).
    pub data_dir: PathBuf,
    /// PostgreSQL pool size.
    pub db_max_connections: u32,
    /// The pooler in front of PostgreSQL, after detection.
    pub db_pooler: DbPooler,
}

impl QueueArgs {
    /// The queue: PostgreSQL when `DATABASE_URL` is set, else Supabase's REST API when the
    /// Supabase project is, else SQLite. The pool defaults to `max_concurrent + 4`.
    pub(crate) fn resolve(
        &self,
        f: &Fields,
        supabase: bool,
        max_concurrent: usize,
    ) -> Result<QueueSettings, ConfigError> {
        let data_dir = PathBuf::from(field!(f, self.data_dir).present().unwrap_or("./data"));
        let db_f = field!(f, self.database_url);
        let backend = match db_f.given() {
            Some(url) => {
                super::database_url::parse_database_url(url).map_err(|e| db_f.fail(e))?;
                QueueBackend::Postgres {
                    url: Secret::url(url),
                }
            }
            None if supabase => QueueBackend::Supabase,
            None => QueueBackend::Sqlite {
                path: data_dir.join("douyin-worker.db"),
            },
        };
        let db_max_connections = field!(f, self.db_max_connections).number_or(
            max_concurrent.min(10_000) as u32 + 4,
            2,
            10_000,
        )?;
        let pooler_f = field!(f, self.db_pooler);
        let db_pooler = match pooler_f
            .one_of(&["auto", "transaction", "session", "none", "off", "direct"])
            .map_err(|_| pooler_f.fail("expected auto, transaction, session or none"))?
            .as_str()
        {
            "transaction" => DbPooler::Transaction,
            "session" => DbPooler::Session,
            "none" | "off" | "direct" => DbPooler::None,
            _ => match &backend {
                QueueBackend::Postgres { url } => DbPooler::detect(url.expose()),
                _ => DbPooler::None,
            },
        };
        Ok(QueueSettings {
            backend,
            data_dir,
            db_max_connections,
            db_pooler,
        })
    }
}
