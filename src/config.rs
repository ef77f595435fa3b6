//! Configuration: every setting from a flag, else an environment variable (a `.env` file in
//! the working directory is read first), else its default; validated at start-up.
//!
//! The old worker's variables keep their names, units and defaults (`SUPABASE_URL`,
//! `SUPABASE_SERVICE_ROLE_KEY`, `WORKER_ID`, `MAX_CONCURRENT`, `POLL_INTERVAL` in ms,
//! `DEBUG`). clap reads the raw strings; [`Config::resolve`] parses them so that an error
//! names where the bad value came from: `MAX_CONCURRENT=abc: ...` for a variable,
//! `--max-concurrent abc: ...` for a flag. Secrets are never echoed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;

pub mod database_url;
pub mod env_file;
mod settings;
pub use settings::RawSettings;
use url::Url;

/// A configuration value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret, and registers it so that [`crate::redact::scrub`] keeps it out of any
    /// upstream text that is logged or stored.
    pub fn new(s: impl Into<String>) -> Self {
        let s = s.into();
        crate::redact::register(&s);
        Self(s)
    }

    /// Wraps a URL that holds a secret (`DATABASE_URL`): only its password and password-like
    /// query parameters are registered for scrubbing, so the rest of it can be shown.
    pub fn url(s: impl Into<String>) -> Self {
        let s = s.into();
        crate::redact::register_url_password(&s);
        Self(s)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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
    pub fn keeps_sessions(self) -> bool {
        self != DbPooler::Transaction
    }

    /// The mode `auto` picks for `url`: transaction for Supabase's transaction-pooler port 6543
    /// or a `pgbouncer=true` parameter (the convention of other clients), else none.
    pub fn detect(url: &str) -> Self {
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

/// How a bucket the worker creates is set up (`STORAGE_PUBLIC`, `STORAGE_FILE_SIZE_LIMIT`,
/// `STORAGE_ALLOWED_MIME_TYPES`); what [`crate::storage::ObjectBackend::ensure_bucket`] takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketSpec {
    /// Readable without a key.
    pub public: bool,
    /// Largest object, in bytes.
    pub file_size_limit: Option<u64>,
    /// Content types accepted (`type/subtype` or `type/*`).
    pub allowed_mime_types: Vec<String>,
}

/// What to do with image posts (`IMAGE_POSTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ImagePolicy {
    /// Fail the job permanently with "image post (N images)".
    #[default]
    Refuse,
    /// Store the pictures (and live photos' motion) and the soundtrack.
    Store,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Supabase project URL.
    pub supabase_url: Option<Url>,
    /// Supabase service role key.
    pub supabase_key: Option<Secret>,
    /// The queue backend.
    pub queue: QueueBackend,
    /// The embedded default's folder.
    pub data_dir: PathBuf,
    /// This worker's name.
    pub worker_id: String,
    /// Jobs at once.
    pub max_concurrent: usize,
    /// Fallback poll interval.
    pub poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Attempts per job.
    pub max_attempts: i32,
    /// Backoff base.
    pub retry_base: Duration,
    /// Backoff cap.
    pub retry_max: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Temp folder.
    pub temp_dir: PathBuf,
    /// PostgreSQL pool size.
    pub db_max_connections: u32,
    /// The pooler in front of PostgreSQL, after detection.
    pub db_pooler: DbPooler,
    /// Debug logging.
    pub debug: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Cookie for Douyin hosts.
    pub douyin_cookie: Option<Secret>,
    /// Where Douyin requests go instead of Douyin (tests).
    pub douyin_upstream: Option<Url>,
    /// Prefer H.264.
    pub prefer_h264: bool,
    /// Timeout of one request to Douyin.
    pub extract_timeout: Duration,
    /// Largest media file.
    pub max_video_bytes: u64,
    /// Download connect timeout.
    pub download_connect_timeout: Duration,
    /// Download idle timeout.
    pub download_idle_timeout: Duration,
    /// Whole-download timeout.
    pub download_timeout: Duration,
    /// Resumes per download.
    pub download_max_resumes: u32,
    /// SSRF guard lifted.
    pub allow_private_networks: bool,
    /// Bucket name.
    pub storage_bucket: String,
    /// Local store folder.
    pub storage_dir: PathBuf,
    /// Object key template (`None`: the storage stage's default); checked by
    /// [`crate::storage::check_key_template`].
    pub object_key_template: Option<String>,
    /// Cache lifetime of stored objects.
    pub cache_control_seconds: u64,
    /// How a bucket the worker creates is set up.
    pub bucket_spec: BucketSpec,
    /// Object store URL (`s3://`, `gs://`, `az://`, `file://`).
    pub storage_url: Option<Url>,
    /// Where the HTTP server listens (`None`: off).
    pub http_addr: Option<SocketAddr>,
    /// The download API is served.
    pub api_enabled: bool,
    /// Lifetime of signed download URLs.
    pub signed_url_ttl: Duration,
    /// Origins allowed by CORS (`["*"]` for any; empty for none).
    pub api_cors_origins: Vec<String>,
    /// The download API's own listener (`None`: on `http_addr` when enabled).
    pub api_addr: Option<SocketAddr>,
    /// Bearer token the download API requires.
    pub api_token: Option<Secret>,
    /// Requests per minute per client on the download API (0: no limit).
    pub api_rate_limit: u32,
    /// Time after a video's last queued download before the API queues it again.
    pub api_retry_cooldown: Duration,
    /// The client address comes from the last `X-Forwarded-For` entry.
    pub api_trust_forwarded_for: bool,
    /// Open connections per listener.
    pub http_max_connections: usize,
    /// Time to send a request's headers.
    pub http_header_timeout: Duration,
    /// Idle keep-alive time.
    pub http_idle_timeout: Duration,
    /// Time an API request may take before its answer starts.
    pub http_request_timeout: Duration,
    /// The browser executable, if set (else searched on PATH).
    pub chromium_path: Option<PathBuf>,
    /// The browser strategy is used.
    pub browser_enabled: bool,
    /// Pages per browser launch.
    pub browser_max_pages: u32,
    /// Time one browser extraction may take.
    pub browser_timeout: Duration,
    /// What to do with image posts.
    pub image_posts: ImagePolicy,
}

/// A setting that failed validation; the message names the variable or flag and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads one raw setting with the name to blame for it.
struct Field<'a> {
    value: Option<&'a str>,
    origin: String,
    secret: bool,
}

impl Field<'_> {
    fn fail(&self, why: impl fmt::Display) -> ConfigError {
        if self.secret {
            ConfigError(format!("{}: {why}", self.origin))
        } else {
            ConfigError(format!(
                "{}={}: {why}",
                self.origin,
                self.value.unwrap_or_default()
            ))
        }
    }

    fn present(&self) -> Option<&str> {
        self.value.map(str::trim).filter(|v| !v.is_empty())
    }

    fn number<T>(&self, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.present() else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(self.fail(format_args!("expected a whole number from {min} to {max}"))),
        }
    }

    fn boolean(&self, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.present() else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.fail("expected true or false")),
        }
    }
}

impl Config {
    /// Validates the raw settings. `matches` tells whether each came from a flag or from the
    /// environment, for the error message; without it, variables are named.
    pub fn resolve<'r>(
        raw: &'r RawSettings,
        matches: Option<&ArgMatches>,
    ) -> Result<Self, ConfigError> {
        let field = |id: &str, env: &str, value: &'r Option<String>, secret: bool| {
            field_of(matches, id, env, value, secret)
        };
        let supabase_url_f = field("supabase_url", "SUPABASE_URL", &raw.supabase_url, false);
        let supabase_url = match supabase_url_f.present() {
            None => None,
            Some(s) => Some(parse_http_url(s).map_err(|why| supabase_url_f.fail(why))?),
        };
        let key_f = field(
            "supabase_service_role_key",
            "SUPABASE_SERVICE_ROLE_KEY",
            &raw.supabase_service_role_key,
            true,
        );
        let supabase_key = match key_f.present() {
            Some(key) => {
                crate::supabase::check_service_key(key).map_err(|why| key_f.fail(why))?;
                Some(Secret::new(key))
            }
            None => None,
        };
        if supabase_key.is_some() != supabase_url.is_some() {
            return Err(ConfigError(if supabase_url.is_some() {
                "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not: set both, or neither"
                    .into()
            } else {
                "SUPABASE_SERVICE_ROLE_KEY is set but SUPABASE_URL is not: set both, or neither"
                    .into()
            }));
        }

        let data_dir = PathBuf::from(
            field("data_dir", "DATA_DIR", &raw.data_dir, false)
                .present()
                .unwrap_or("./data"),
        );

        let db_f = field("database_url", "DATABASE_URL", &raw.database_url, true);
        let queue = match db_f.present() {
            Some(url) => {
                validate_database_url(url).map_err(|why| db_f.fail(why))?;
                QueueBackend::Postgres {
                    url: Secret::url(url),
                }
            }
            None if supabase_url.is_some() => QueueBackend::Supabase,
            None => QueueBackend::Sqlite {
                path: data_dir.join("douyin-worker.db"),
            },
        };

        let worker_f = field("worker_id", "WORKER_ID", &raw.worker_id, false);
        let worker_id = match worker_f.present() {
            Some(id) => {
                if id.len() > 200 || id.chars().any(|c| c.is_control()) {
                    return Err(worker_f.fail("expected at most 200 printable characters"));
                }
                id.to_string()
            }
            None => default_worker_id(),
        };

        let max_concurrent: usize = field(
            "max_concurrent",
            "MAX_CONCURRENT",
            &raw.max_concurrent,
            false,
        )
        .number(2, 1, 1000)?;
        let poll_ms: u64 = field("poll_interval", "POLL_INTERVAL", &raw.poll_interval, false)
            .number(10_000, 10, 3_600_000)?;
        let lease_s: u64 = field("lease_seconds", "LEASE_SECONDS", &raw.lease_seconds, false)
            .number(60, 3, 86_400)?;
        let max_attempts: i32 =
            field("max_attempts", "MAX_ATTEMPTS", &raw.max_attempts, false).number(5, 1, 1000)?;
        let base_f = field(
            "retry_base_seconds",
            "RETRY_BASE_SECONDS",
            &raw.retry_base_seconds,
            false,
        );
        let retry_base_s: u64 = base_f.number(30, 0, 86_400)?;
        let retry_max_s: u64 = field(
            "retry_max_seconds",
            "RETRY_MAX_SECONDS",
            &raw.retry_max_seconds,
            false,
        )
        .number(3600, 0, 7 * 86_400)?;
        if retry_base_s > retry_max_s {
            return Err(base_f.fail(format_args!(
                "the backoff base is above its cap RETRY_MAX_SECONDS={retry_max_s}"
            )));
        }
        let grace_s: u64 = field(
            "shutdown_grace_seconds",
            "SHUTDOWN_GRACE_SECONDS",
            &raw.shutdown_grace_seconds,
            false,
        )
        .number(30, 0, 86_400)?;
        let temp_dir = field("temp_dir", "TEMP_DIR", &raw.temp_dir, false)
            .present()
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let db_max_connections: u32 = field(
            "db_max_connections",
            "DB_MAX_CONNECTIONS",
            &raw.db_max_connections,
            false,
        )
        .number(max_concurrent.min(10_000) as u32 + 4, 2, 10_000)?;
        let pooler_f = field("db_pooler", "DB_POOLER", &raw.db_pooler, false);
        let db_pooler = match pooler_f.present().map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => match &queue {
                QueueBackend::Postgres { url } => DbPooler::detect(url.expose()),
                _ => DbPooler::None,
            },
            Some("transaction") => DbPooler::Transaction,
            Some("session") => DbPooler::Session,
            Some("none" | "off" | "direct") => DbPooler::None,
            Some(_) => return Err(pooler_f.fail("expected auto, transaction, session or none")),
        };
        let debug = field("debug", "DEBUG", &raw.debug, false).boolean(false)?;
        let format_f = field("log_format", "LOG_FORMAT", &raw.log_format, false);
        let log_format = match format_f.present().map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") | Some("pretty") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(format_f.fail("expected text or json")),
        };

        let douyin_cookie = field("douyin_cookie", "DOUYIN_COOKIE", &raw.douyin_cookie, true)
            .present()
            .map(|c| {
                crate::redact::register_cookie(c);
                Secret::new(c)
            });
        let upstream_f = field(
            "douyin_upstream",
            "DOUYIN_UPSTREAM",
            &raw.douyin_upstream,
            false,
        );
        let douyin_upstream = match upstream_f.present() {
            None => None,
            Some(s) => Some(parse_http_url(s).map_err(|why| upstream_f.fail(why))?),
        };
        let prefer_h264 =
            field("prefer_h264", "PREFER_H264", &raw.prefer_h264, false).boolean(true)?;
        let extract_timeout_s: u64 = field(
            "extract_timeout_seconds",
            "EXTRACT_TIMEOUT_SECONDS",
            &raw.extract_timeout_seconds,
            false,
        )
        .number(15, 1, 600)?;

        let max_video_bytes: u64 = field(
            "max_video_bytes",
            "MAX_VIDEO_BYTES",
            &raw.max_video_bytes,
            false,
        )
        .number(2 * 1024 * 1024 * 1024, 1, u64::MAX / 2)?;
        let secs = |id: &str, env: &str, value: &'r Option<String>, default: u64, max: u64| {
            field_of(matches, id, env, value, false)
                .number(default, 1, max)
                .map(Duration::from_secs)
        };
        let download_connect_timeout = secs(
            "download_connect_timeout_seconds",
            "DOWNLOAD_CONNECT_TIMEOUT_SECONDS",
            &raw.download_connect_timeout_seconds,
            10,
            600,
        )?;
        let download_idle_timeout = secs(
            "download_idle_timeout_seconds",
            "DOWNLOAD_IDLE_TIMEOUT_SECONDS",
            &raw.download_idle_timeout_seconds,
            30,
            3600,
        )?;
        let download_timeout = secs(
            "download_timeout_seconds",
            "DOWNLOAD_TIMEOUT_SECONDS",
            &raw.download_timeout_seconds,
            3600,
            7 * 86_400,
        )?;
        let download_max_resumes: u32 = field(
            "download_max_resumes",
            "DOWNLOAD_MAX_RESUMES",
            &raw.download_max_resumes,
            false,
        )
        .number(5, 0, 1000)?;
        let allow_private_networks = field(
            "allow_private_networks",
            "ALLOW_PRIVATE_NETWORKS",
            &raw.allow_private_networks,
            false,
        )
        .boolean(false)?;

        let bucket_f = field(
            "storage_bucket",
            "STORAGE_BUCKET",
            &raw.storage_bucket,
            false,
        );
        let storage_bucket = bucket_f.present().unwrap_or("videos").to_string();
        if storage_bucket.len() > 63
            || !storage_bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(
                bucket_f.fail("expected a bucket name of letters, digits, '-', '_' and '.'")
            );
        }
        let storage_dir = field("storage_dir", "STORAGE_DIR", &raw.storage_dir, false)
            .present()
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join(&storage_bucket));
        let template_f = field(
            "object_key_template",
            "OBJECT_KEY_TEMPLATE",
            &raw.object_key_template,
            false,
        );
        // Checked by the storage stage, which owns the key rules.
        let object_key_template = template_f.present().map(str::to_string);
        let cache_control_seconds: u64 = field(
            "cache_control_seconds",
            "CACHE_CONTROL_SECONDS",
            &raw.cache_control_seconds,
            false,
        )
        .number(3600, 0, 31_536_000)?;

        let storage_public = field(
            "storage_public",
            "STORAGE_PUBLIC",
            &raw.storage_public,
            false,
        )
        .boolean(true)?;
        let storage_file_size_limit: u64 = field(
            "storage_file_size_limit",
            "STORAGE_FILE_SIZE_LIMIT",
            &raw.storage_file_size_limit,
            false,
        )
        .number(max_video_bytes, 1, u64::MAX / 2)?;
        let mime_f = field(
            "storage_allowed_mime_types",
            "STORAGE_ALLOWED_MIME_TYPES",
            &raw.storage_allowed_mime_types,
            false,
        );
        let allowed_mime_types: Vec<String> = mime_f
            .present()
            .unwrap_or(
                "video/mp4,video/quicktime,audio/mp4,audio/mpeg,image/jpeg,image/png,image/webp,image/heic",
            )
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if allowed_mime_types.iter().any(|t| {
            t.split_once('/')
                .is_none_or(|(a, b)| a.is_empty() || b.is_empty())
        }) {
            return Err(mime_f.fail("expected type/subtype entries separated by commas"));
        }

        let storage_url_f = field("storage_url", "STORAGE_URL", &raw.storage_url, false);
        let storage_url = match storage_url_f.present() {
            None => None,
            Some(raw_url) => {
                let url = Url::parse(raw_url)
                    .map_err(|e| storage_url_f.fail(format_args!("not a valid URL ({e})")))?;
                check_storage_url(&url).map_err(|why| storage_url_f.fail(why))?;
                Some(url)
            }
        };

        let http_f = field("http_addr", "HTTP_ADDR", &raw.http_addr, false);
        // An empty HTTP_ADDR turns the server off (clap may report an empty variable as unset).
        let http_off_by_env =
            raw.http_addr.is_none() && std::env::var_os("HTTP_ADDR").is_some_and(|v| v.is_empty());
        let http_addr = match http_f.present() {
            _ if http_off_by_env => None,
            None if raw.http_addr.is_some() => None,
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            Some(v) if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "false") => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                http_f.fail("expected IP:PORT (e.g. 127.0.0.1:9464 or 0.0.0.0:8080), or off")
            })?),
        };
        let api_addr_f = field("api_addr", "API_ADDR", &raw.api_addr, false);
        let api_addr = match api_addr_f.present() {
            None => None,
            Some(v) if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "false") => None,
            Some(v) => Some(
                v.parse::<SocketAddr>()
                    .map_err(|_| api_addr_f.fail("expected IP:PORT (e.g. 0.0.0.0:8080), or off"))?,
            ),
        };
        if let (Some(api), Some(http)) = (api_addr, http_addr)
            && api == http
            && api.port() != 0
        {
            return Err(api_addr_f.fail(
                "the download API needs its own address: it is the same as HTTP_ADDR (health and metrics)",
            ));
        }
        // API_ADDR turns the API on unless API_ENABLED says otherwise.
        let api_enabled = field("api_enabled", "API_ENABLED", &raw.api_enabled, false)
            .boolean(api_addr.is_some())?;
        let api_addr = api_addr.filter(|_| api_enabled);
        if api_enabled && api_addr.is_none() && http_addr.is_none() {
            return Err(ConfigError(
                "API_ENABLED=true needs a listener: set API_ADDR (or HTTP_ADDR, which is off)"
                    .into(),
            ));
        }
        let signed_url_ttl = Duration::from_secs(
            field(
                "signed_url_ttl",
                "SIGNED_URL_TTL",
                &raw.signed_url_ttl,
                false,
            )
            .number(3600, 1, 7 * 86_400)?,
        );
        let cors_f = field(
            "api_cors_origins",
            "API_CORS_ORIGINS",
            &raw.api_cors_origins,
            false,
        );
        let api_cors_origins: Vec<String> = cors_f
            .present()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| o.trim_end_matches('/').to_string())
            .collect();
        for origin in &api_cors_origins {
            let ok = origin == "*"
                || Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.path() == "/"
                });
            if !ok {
                return Err(cors_f.fail(format_args!(
                    "expected * or origins like https://example.com separated by commas, not {origin}"
                )));
            }
        }
        let api_token_f = field("api_token", "API_TOKEN", &raw.api_token, true);
        let api_token = match api_token_f.present() {
            None => None,
            Some(t) if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(api_token_f.fail(
                    "expected at least 16 characters without spaces (e.g. from `openssl rand -hex 32`)",
                ));
            }
            Some(t) => Some(Secret::new(t)),
        };
        let api_rate_limit: u32 = field(
            "api_rate_limit",
            "API_RATE_LIMIT",
            &raw.api_rate_limit,
            false,
        )
        .number(120, 0, 1_000_000)?;
        let api_retry_cooldown = Duration::from_secs(
            field(
                "api_retry_cooldown_seconds",
                "API_RETRY_COOLDOWN_SECONDS",
                &raw.api_retry_cooldown_seconds,
                false,
            )
            .number(60, 0, 86_400)?,
        );
        let api_trust_forwarded_for = field(
            "api_trust_forwarded_for",
            "API_TRUST_FORWARDED_FOR",
            &raw.api_trust_forwarded_for,
            false,
        )
        .boolean(false)?;
        let http_max_connections: usize = field(
            "http_max_connections",
            "HTTP_MAX_CONNECTIONS",
            &raw.http_max_connections,
            false,
        )
        .number(512, 1, 1_000_000)?;
        let http_header_timeout = secs(
            "http_header_timeout_seconds",
            "HTTP_HEADER_TIMEOUT_SECONDS",
            &raw.http_header_timeout_seconds,
            10,
            3600,
        )?;
        let http_idle_timeout = secs(
            "http_idle_timeout_seconds",
            "HTTP_IDLE_TIMEOUT_SECONDS",
            &raw.http_idle_timeout_seconds,
            60,
            86_400,
        )?;
        let http_request_timeout = secs(
            "http_request_timeout_seconds",
            "HTTP_REQUEST_TIMEOUT_SECONDS",
            &raw.http_request_timeout_seconds,
            30,
            3600,
        )?;
        let chromium_path = field("chromium_path", "CHROMIUM_PATH", &raw.chromium_path, false)
            .present()
            .map(PathBuf::from);
        let browser_enabled = field(
            "browser_enabled",
            "BROWSER_ENABLED",
            &raw.browser_enabled,
            false,
        )
        .boolean(cfg!(feature = "browser"))?;
        let browser_max_pages: u32 = field(
            "browser_max_pages",
            "BROWSER_MAX_PAGES",
            &raw.browser_max_pages,
            false,
        )
        .number(200, 1, 1_000_000)?;
        let browser_timeout = Duration::from_secs(
            field(
                "browser_timeout_seconds",
                "BROWSER_TIMEOUT_SECONDS",
                &raw.browser_timeout_seconds,
                false,
            )
            .number(30, 1, 600)?,
        );

        let images_f = field("image_posts", "IMAGE_POSTS", &raw.image_posts, false);
        let image_posts = match images_f.present().map(str::to_ascii_lowercase).as_deref() {
            None | Some("refuse") => ImagePolicy::Refuse,
            Some("store") => ImagePolicy::Store,
            Some(_) => return Err(images_f.fail("expected refuse or store")),
        };

        Ok(Config {
            image_posts,
            http_addr,
            api_enabled,
            signed_url_ttl,
            api_cors_origins,
            api_addr,
            api_token,
            api_rate_limit,
            api_retry_cooldown,
            api_trust_forwarded_for,
            http_max_connections,
            http_header_timeout,
            http_idle_timeout,
            http_request_timeout,
            chromium_path,
            browser_enabled,
            browser_max_pages,
            browser_timeout,
            storage_url,
            bucket_spec: BucketSpec {
                public: storage_public,
                file_size_limit: Some(storage_file_size_limit),
                allowed_mime_types,
            },
            storage_bucket,
            storage_dir,
            object_key_template,
            cache_control_seconds,
            max_video_bytes,
            download_connect_timeout,
            download_idle_timeout,
            download_timeout,
            download_max_resumes,
            allow_private_networks,
            douyin_cookie,
            douyin_upstream,
            prefer_h264,
            extract_timeout: Duration::from_secs(extract_timeout_s),
            supabase_url,
            supabase_key,
            queue,
            data_dir,
            worker_id,
            max_concurrent,
            poll_interval: Duration::from_millis(poll_ms),
            lease: Duration::from_secs(lease_s),
            max_attempts,
            retry_base: Duration::from_secs(retry_base_s),
            retry_max: Duration::from_secs(retry_max_s),
            shutdown_grace: Duration::from_secs(grace_s),
            temp_dir,
            db_max_connections,
            db_pooler,
            debug,
            log_format,
        })
    }

    /// The settings worth logging at start-up, without secrets.
    pub fn summary(&self) -> String {
        let queue = match &self.queue {
            QueueBackend::Postgres { url } => format!(
                "postgres {} pooler={}",
                redact_url(url.expose()),
                self.db_pooler.as_str()
            ),
            QueueBackend::Supabase => format!(
                "supabase {}",
                self.supabase_url.as_ref().map(Url::as_str).unwrap_or("?")
            ),
            QueueBackend::Sqlite { path } => format!("sqlite {}", path.display()),
        };
        format!(
            "queue={queue} worker_id={} max_concurrent={} poll_interval={}ms lease={}s \
             max_attempts={} retry_base={}s retry_max={}s shutdown_grace={}s temp_dir={}",
            self.worker_id,
            self.max_concurrent,
            self.poll_interval.as_millis(),
            self.lease.as_secs(),
            self.max_attempts,
            self.retry_base.as_secs(),
            self.retry_max.as_secs(),
            self.shutdown_grace.as_secs(),
            self.temp_dir.display()
        )
    }
}

/// Reads one raw setting, noting whether it came from a flag or the environment.
fn field_of<'a>(
    matches: Option<&ArgMatches>,
    id: &str,
    env: &str,
    value: &'a Option<String>,
    secret: bool,
) -> Field<'a> {
    let from_flag = matches
        .and_then(|m| m.value_source(id))
        .is_some_and(|s| s == ValueSource::CommandLine);
    let origin = if from_flag {
        format!("--{}", id.replace('_', "-"))
    } else {
        env.to_string()
    };
    Field {
        value: value.as_deref(),
        origin,
        secret,
    }
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

fn validate_database_url(s: &str) -> Result<(), String> {
    // Errors must not echo the URL: it may hold a password. Parameters nothing understands
    // are reported when connecting.
    database_url::parse_database_url(s)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A URL with its password, and the values of its query parameters, replaced by `***`
/// (`?password=` and `?sslpassword=` are secrets too); only `sslmode` and `pgbouncer` show.
pub fn redact_url(s: &str) -> String {
    match Url::parse(s) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            if url.query().is_some() {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let shown = matches!(k.as_ref(), "sslmode" | "ssl-mode" | "pgbouncer");
                        let v = if shown { v.into_owned() } else { "***".into() };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

/// Host name plus a short random suffix: unique per process, readable in the queue.
pub fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "worker".into()
    } else {
        host
    };
    let suffix: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{host}-{suffix:06x}")
}

/// Checks the form of a `STORAGE_URL`: `s3://BUCKET`, `gs://BUCKET`, `az://CONTAINER` (also
/// `azure://`, and `abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net`) or `file:///PATH`. The
/// credentials are the object store's own variables, read when the store is built.
fn check_storage_url(url: &Url) -> Result<(), &'static str> {
    let host = url.host_str().unwrap_or("");
    let no_path = || {
        if url.path().trim_matches('/').is_empty() && url.query().is_none() {
            Ok(())
        } else {
            Err("a path after the bucket is not supported (OBJECT_KEY_TEMPLATE sets the keys)")
        }
    };
    match url.scheme() {
        "s3" | "s3a" if !host.is_empty() => Ok(()),
        "s3" | "s3a" => Err("expected s3://BUCKET"),
        "file" => Ok(()),
        "gs" => {
            // Bucket names: 3 to 222 characters, lower-case letters, digits, `-`, `_`, `.`.
            let ok = (3..=222).contains(&host.len())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !ok {
                return Err("expected gs://BUCKET (3 to 222 characters: a-z, 0-9, -, _, .)");
            }
            no_path()
        }
        "az" | "azure" | "abfs" | "abfss" => {
            // abfs[s]://CONTAINER@ACCOUNT.dfs.core.windows.net names the account too.
            let container = if url.username().is_empty() {
                host
            } else {
                url.username()
            };
            // Container names: 3 to 63 characters, lower-case letters, digits and `-`.
            let ok = (3..=63).contains(&container.len())
                && container
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(
                    "expected az://CONTAINER (3 to 63 characters: a-z, 0-9, -; the account is \
                     AZURE_STORAGE_ACCOUNT_NAME)",
                );
            }
            no_path()
        }
        _ => Err("expected s3://BUCKET, gs://BUCKET, az://CONTAINER or file:///PATH"),
    }
}

#[cfg(test)]
mod tests;
