//! The raw settings shared by every subcommand: one clap argument per setting, each also read
//! from its environment variable. Values stay strings here; [`super::Config::resolve`] parses
//! them so an error can name where a bad value came from.

use clap::Args;

/// The settings shared by every subcommand, as raw strings.
#[derive(Args, Debug, Clone, Default)]
pub struct RawSettings {
    /// Supabase project URL (Supabase mode, and Supabase Storage).
    #[arg(long, env = "SUPABASE_URL", global = true, value_name = "URL")]
    pub supabase_url: Option<String>,

    /// Supabase service role key (a legacy JWT or an `sb_secret_...` key). Never logged.
    #[arg(
        long,
        env = "SUPABASE_SERVICE_ROLE_KEY",
        global = true,
        value_name = "KEY",
        hide_env_values = true
    )]
    pub supabase_service_role_key: Option<String>,

    /// PostgreSQL URL: queue over a direct connection with LISTEN/NOTIFY wake-ups.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Folder of the embedded default: the SQLite queue and the local video store.
    #[arg(long, env = "DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<String>,

    /// This worker's name in the queue [default: host name plus a short random suffix].
    #[arg(long, env = "WORKER_ID", global = true, value_name = "ID")]
    pub worker_id: Option<String>,

    /// Jobs processed at once by this process [default: 2].
    #[arg(long, env = "MAX_CONCURRENT", global = true, value_name = "N")]
    pub max_concurrent: Option<String>,

    /// Fallback poll interval in milliseconds when no wake-up arrives [default: 10000].
    #[arg(long, env = "POLL_INTERVAL", global = true, value_name = "MS")]
    pub poll_interval: Option<String>,

    /// Lease of a running job in seconds, renewed by heartbeats every third of it [default: 60].
    #[arg(long, env = "LEASE_SECONDS", global = true, value_name = "S")]
    pub lease_seconds: Option<String>,

    /// Attempts per job before it fails for good [default: 5].
    #[arg(long, env = "MAX_ATTEMPTS", global = true, value_name = "N")]
    pub max_attempts: Option<String>,

    /// Base of the exponential retry backoff, in seconds [default: 30].
    #[arg(long, env = "RETRY_BASE_SECONDS", global = true, value_name = "S")]
    pub retry_base_seconds: Option<String>,

    /// Cap of the retry backoff, in seconds [default: 3600].
    #[arg(long, env = "RETRY_MAX_SECONDS", global = true, value_name = "S")]
    pub retry_max_seconds: Option<String>,

    /// On SIGINT/SIGTERM, how long running jobs may finish before they are released [default: 30].
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", global = true, value_name = "S")]
    pub shutdown_grace_seconds: Option<String>,

    /// Folder for downloads in progress [default: the system temp folder].
    #[arg(long, env = "TEMP_DIR", global = true, value_name = "DIR")]
    pub temp_dir: Option<String>,

    /// A connection pooler between the worker and PostgreSQL: `transaction` (Supabase's port
    /// 6543, PgBouncer `pool_mode=transaction`: no prepared statements kept, no LISTEN),
    /// `session`, `none`, or `auto` [default: auto: transaction for port 6543 or
    /// `pgbouncer=true` in DATABASE_URL, else none].
    #[arg(long, env = "DB_POOLER", global = true, value_name = "MODE")]
    pub db_pooler: Option<String>,

    /// Pooled connections to PostgreSQL per process (LISTEN holds one); claims go over one
    /// more of their own [default: MAX_CONCURRENT + 4].
    #[arg(long, env = "DB_MAX_CONNECTIONS", global = true, value_name = "N")]
    pub db_max_connections: Option<String>,

    /// Debug logging (true/false) [default: false].
    #[arg(long, env = "DEBUG", global = true, value_name = "BOOL")]
    pub debug: Option<String>,

    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "LOG_FORMAT", global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// A browser cookie string sent to Douyin hosts only (helps when Douyin asks for a
    /// captcha). Never logged.
    #[arg(
        long,
        env = "DOUYIN_COOKIE",
        global = true,
        value_name = "COOKIE",
        hide_env_values = true
    )]
    pub douyin_cookie: Option<String>,

    /// Testing aid: send every request to a Douyin host to `{URL}/{host}{path}` instead
    /// (a local fixture server).
    #[arg(long, env = "DOUYIN_UPSTREAM", global = true, value_name = "URL")]
    pub douyin_upstream: Option<String>,

    /// Prefer H.264 over H.265 when both exist (true/false) [default: true].
    #[arg(long, env = "PREFER_H264", global = true, value_name = "BOOL")]
    pub prefer_h264: Option<String>,

    /// Timeout of one request to Douyin, in seconds [default: 15].
    #[arg(long, env = "EXTRACT_TIMEOUT_SECONDS", global = true, value_name = "S")]
    pub extract_timeout_seconds: Option<String>,

    /// Largest media file accepted, in bytes [default: 2147483648].
    #[arg(long, env = "MAX_VIDEO_BYTES", global = true, value_name = "BYTES")]
    pub max_video_bytes: Option<String>,

    /// Connect timeout of downloads, in seconds [default: 10].
    #[arg(
        long,
        env = "DOWNLOAD_CONNECT_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub download_connect_timeout_seconds: Option<String>,

    /// A download with no byte for this many seconds is resumed [default: 30].
    #[arg(
        long,
        env = "DOWNLOAD_IDLE_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub download_idle_timeout_seconds: Option<String>,

    /// Longest time for one whole download, in seconds [default: 3600].
    #[arg(
        long,
        env = "DOWNLOAD_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub download_timeout_seconds: Option<String>,

    /// Resumes of one download after dropped connections [default: 5].
    #[arg(long, env = "DOWNLOAD_MAX_RESUMES", global = true, value_name = "N")]
    pub download_max_resumes: Option<String>,

    /// Object store instead of Supabase Storage or the local folder: `s3://BUCKET` (settings
    /// from the AWS_* variables) or `file:///path`.
    #[arg(long, env = "STORAGE_URL", global = true, value_name = "URL")]
    pub storage_url: Option<String>,

    /// Storage bucket (Supabase Storage) or folder name of the local store [default: videos].
    #[arg(long, env = "STORAGE_BUCKET", global = true, value_name = "NAME")]
    pub storage_bucket: Option<String>,

    /// Folder of the local store [default: DATA_DIR/STORAGE_BUCKET].
    #[arg(long, env = "STORAGE_DIR", global = true, value_name = "DIR")]
    pub storage_dir: Option<String>,

    /// Object key template with {douyin_id}, {video_id}, {ext} [default: {douyin_id}/{douyin_id}.{ext}].
    #[arg(
        long,
        env = "OBJECT_KEY_TEMPLATE",
        global = true,
        value_name = "TEMPLATE"
    )]
    pub object_key_template: Option<String>,

    /// A bucket created by the worker is public (readable without a key) [default: true].
    #[arg(long, env = "STORAGE_PUBLIC", global = true, value_name = "BOOL")]
    pub storage_public: Option<String>,

    /// File size limit of a bucket created by the worker, in bytes [default: MAX_VIDEO_BYTES].
    #[arg(
        long,
        env = "STORAGE_FILE_SIZE_LIMIT",
        global = true,
        value_name = "BYTES"
    )]
    pub storage_file_size_limit: Option<String>,

    /// Content types a bucket created by the worker accepts, comma-separated [default: video/mp4,video/quicktime,audio/mp4,audio/mpeg,image/jpeg,image/png,image/webp,image/heic].
    #[arg(
        long,
        env = "STORAGE_ALLOWED_MIME_TYPES",
        global = true,
        value_name = "TYPES"
    )]
    pub storage_allowed_mime_types: Option<String>,

    /// Cache lifetime of stored objects, in seconds [default: 3600].
    #[arg(long, env = "CACHE_CONTROL_SECONDS", global = true, value_name = "S")]
    pub cache_control_seconds: Option<String>,

    /// Let downloads reach private, loopback and link-local addresses (tests only) [default: false].
    #[arg(
        long,
        env = "ALLOW_PRIVATE_NETWORKS",
        global = true,
        value_name = "BOOL"
    )]
    pub allow_private_networks: Option<String>,

    /// Address of the health, metrics and download-API server; empty or `off` turns it off
    /// [default: 127.0.0.1:9464].
    #[arg(long, env = "HTTP_ADDR", global = true, value_name = "ADDR")]
    pub http_addr: Option<String>,

    /// Serve the UI's download API (`/api/videos/:id/download`, `/retry`, `/health`) on
    /// HTTP_ADDR; it may face the internet [default: false].
    #[arg(long, env = "API_ENABLED", global = true, value_name = "BOOL")]
    pub api_enabled: Option<String>,

    /// Address of the download API's own listener (e.g. 0.0.0.0:8080); setting it turns the
    /// API on there, apart from health and metrics on HTTP_ADDR [default: unset].
    #[arg(long, env = "API_ADDR", global = true, value_name = "ADDR")]
    pub api_addr: Option<String>,

    /// A bearer token the download API requires (`Authorization: Bearer TOKEN`) [default:
    /// unset: the API is open]. Never logged.
    #[arg(
        long,
        env = "API_TOKEN",
        global = true,
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// Requests per minute one client may make to the download API; 0 turns the limit off
    /// [default: 120].
    #[arg(long, env = "API_RATE_LIMIT", global = true, value_name = "N")]
    pub api_rate_limit: Option<String>,

    /// Seconds after a video's last queued download before the API queues it again
    /// [default: 60].
    #[arg(
        long,
        env = "API_RETRY_COOLDOWN_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub api_retry_cooldown_seconds: Option<String>,

    /// Behind a reverse proxy: take the client's address for the rate limit from the last
    /// entry of `X-Forwarded-For` (true/false) [default: false].
    #[arg(
        long,
        env = "API_TRUST_FORWARDED_FOR",
        global = true,
        value_name = "BOOL"
    )]
    pub api_trust_forwarded_for: Option<String>,

    /// Connections the HTTP server holds open at once, per listener [default: 512].
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", global = true, value_name = "N")]
    pub http_max_connections: Option<String>,

    /// Seconds a client may take to send a request's headers [default: 10].
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub http_header_timeout_seconds: Option<String>,

    /// Seconds an idle keep-alive connection stays open [default: 60].
    #[arg(
        long,
        env = "HTTP_IDLE_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub http_idle_timeout_seconds: Option<String>,

    /// Seconds an API request may take before its answer starts (a proxied file may then
    /// stream for longer) [default: 30].
    #[arg(
        long,
        env = "HTTP_REQUEST_TIMEOUT_SECONDS",
        global = true,
        value_name = "S"
    )]
    pub http_request_timeout_seconds: Option<String>,

    /// Lifetime of the download API's signed URLs, in seconds [default: 3600].
    #[arg(long, env = "SIGNED_URL_TTL", global = true, value_name = "S")]
    pub signed_url_ttl: Option<String>,

    /// Origins allowed to call the download API from a browser, comma-separated, or `*`
    /// [default: none (same origin only)].
    #[arg(long, env = "API_CORS_ORIGINS", global = true, value_name = "ORIGINS")]
    pub api_cors_origins: Option<String>,

    /// The Chromium (or Chrome) executable of the browser strategy [default: `chromium`,
    /// `chromium-browser` or `google-chrome` on PATH].
    #[arg(long, env = "CHROMIUM_PATH", global = true, value_name = "PATH")]
    pub chromium_path: Option<String>,

    /// Use the headless-browser strategy when the HTTP strategies fail [default: true when
    /// built with the `browser` feature].
    #[arg(long, env = "BROWSER_ENABLED", global = true, value_name = "BOOL")]
    pub browser_enabled: Option<String>,

    /// Pages one browser serves before it is restarted [default: 200].
    #[arg(long, env = "BROWSER_MAX_PAGES", global = true, value_name = "N")]
    pub browser_max_pages: Option<String>,

    /// Time one browser extraction may take, in seconds [default: 30].
    #[arg(long, env = "BROWSER_TIMEOUT_SECONDS", global = true, value_name = "S")]
    pub browser_timeout_seconds: Option<String>,

    /// Image posts (photo slideshows): `refuse` (the job fails for good with "image post (N
    /// images)") or `store` (the pictures, live photos' motion and the soundtrack)
    /// [default: refuse].
    #[arg(long, env = "IMAGE_POSTS", global = true, value_name = "POLICY")]
    pub image_posts: Option<String>,
}
