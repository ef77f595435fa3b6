//! The HTTP server: health and metrics on `HTTP_ADDR`, the UI's download API on `API_ADDR`
//! (or beside them), and the limits every listener keeps under hostile clients.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use url::Url;

use super::field::{Field, Fields, field};
use super::{ConfigError, Secret};

/// `HTTP_ADDR`, `API_ENABLED`, `API_ADDR`, `SIGNED_URL_TTL`, `API_CORS_ORIGINS`, `API_TOKEN`,
/// `API_RATE_LIMIT`, `API_RETRY_COOLDOWN_SECONDS`, `API_TRUST_FORWARDED_FOR`,
/// `HTTP_MAX_CONNECTIONS`, `HTTP_HEADER_TIMEOUT_SECONDS`, `HTTP_IDLE_TIMEOUT_SECONDS`,
/// `HTTP_REQUEST_TIMEOUT_SECONDS`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: HTTP server and download API")]
pub struct HttpArgs {
    /// Address (IP:PORT, or HOST:PORT resolved at start-up) of the health and metrics server
    /// (and of the download API when API_ADDR is unset); empty or `off` turns it off.
    #[arg(
        long,
        env = "HTTP_ADDR",
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub http_addr: Option<String>,

    /// Serve the UI's download API (`/api/videos/:id/download`, `/retry`, `/health`); it may
    /// face the internet [default: true when API_ADDR is set, else false].
    #[arg(
        long,
        env = "API_ENABLED",
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub api_enabled: Option<String>,

    /// Address of the download API's own listener (e.g. 0.0.0.0:8080); setting it turns the
    /// API on there, apart from health and metrics on HTTP_ADDR.
    #[arg(long, env = "API_ADDR", global = true, value_name = "ADDR")]
    pub api_addr: Option<String>,

    /// Lifetime of the download API's signed URLs, in seconds.
    #[arg(
        long,
        env = "SIGNED_URL_TTL",
        global = true,
        value_name = "S",
        default_value = "3600"
    )]
    pub signed_url_ttl: Option<String>,

    /// Origins allowed to call the download API from a browser, comma-separated, or `*`
    /// [default: none (same origin only)].
    #[arg(long, env = "API_CORS_ORIGINS", global = true, value_name = "ORIGINS")]
    pub api_cors_origins: Option<String>,

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

    /// Requests per minute one client may make to the download API; 0 turns the limit off.
    #[arg(
        long,
        env = "API_RATE_LIMIT",
        global = true,
        value_name = "N",
        default_value = "120"
    )]
    pub api_rate_limit: Option<String>,

    /// Seconds after a video's last queued download before the API queues it again.
    #[arg(
        long,
        env = "API_RETRY_COOLDOWN_SECONDS",
        global = true,
        value_name = "S",
        default_value = "60"
    )]
    pub api_retry_cooldown_seconds: Option<String>,

    /// Behind a reverse proxy: take the client's address for the rate limit from the last
    /// entry of `X-Forwarded-For` (true/false).
    #[arg(
        long,
        env = "API_TRUST_FORWARDED_FOR",
        global = true,
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub api_trust_forwarded_for: Option<String>,

    /// Connections the HTTP server holds open at once, per listener.
    #[arg(
        long,
        env = "HTTP_MAX_CONNECTIONS",
        global = true,
        value_name = "N",
        default_value = "512"
    )]
    pub http_max_connections: Option<String>,

    /// Seconds a client may take to send a request's headers.
    #[arg(
        long,
        env = "HTTP_HEADER_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "10"
    )]
    pub http_header_timeout_seconds: Option<String>,

    /// Seconds an idle keep-alive connection stays open.
    #[arg(
        long,
        env = "HTTP_IDLE_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "60"
    )]
    pub http_idle_timeout_seconds: Option<String>,

    /// Seconds an API request may take before its answer starts (a proxied file may then
    /// stream for longer).
    #[arg(
        long,
        env = "HTTP_REQUEST_TIMEOUT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "30"
    )]
    pub http_request_timeout_seconds: Option<String>,
}

/// The HTTP server's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// Where health and metrics listen (`None`: off).
    pub http_addr: Option<SocketAddr>,
    /// The download API is served.
    pub api_enabled: bool,
    /// The download API's own listener (`None`: on `http_addr` when enabled).
    pub api_addr: Option<SocketAddr>,
    /// Lifetime of signed download URLs.
    pub signed_url_ttl: Duration,
    /// Origins allowed by CORS (`["*"]` for any; empty for none).
    pub api_cors_origins: Vec<String>,
    /// Bearer token the download API requires.
    pub api_token: Option<Secret>,
    /// Requests per minute per client on the download API (0: no limit).
    pub api_rate_limit: u32,
    /// Time after a video's last queued download before the API queues it again.
    pub api_retry_cooldown: Duration,
    /// The client address comes from the last `X-Forwarded-For` entry.
    pub api_trust_forwarded_for: bool,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Idle keep-alive time.
    pub idle_timeout: Duration,
    /// Time an API request may take before its answer starts.
    pub request_timeout: Duration,
}

impl HttpArgs {
    /// The HTTP settings: the listeners must differ, and an enabled API needs one.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<HttpSettings, ConfigError> {
        let http_f = field!(f, self.http_addr);
        // An empty HTTP_ADDR turns the server off (clap may report an empty variable as unset).
        let off_by_env =
            self.http_addr.is_none() && std::env::var_os("HTTP_ADDR").is_some_and(|v| v.is_empty());
        let http_addr = if off_by_env || http_f.is_set() && http_f.given().is_none() {
            None
        } else {
            address(
                &http_f,
                "expected IP:PORT or HOST:PORT (e.g. 127.0.0.1:9464, localhost:9464 or 0.0.0.0:8080), or off",
            )?
        };
        let api_f = field!(f, self.api_addr);
        let api_addr = address(
            &api_f,
            "expected IP:PORT or HOST:PORT (e.g. 0.0.0.0:8080 or localhost:8080), or off",
        )?;
        if let (Some(api), Some(http)) = (api_addr, http_addr)
            && api == http
            && api.port() != 0
        {
            return Err(api_f.fail(
                "the download API needs its own address: it is the same as HTTP_ADDR (health and metrics)",
            ));
        }
        // API_ADDR turns the API on unless API_ENABLED says otherwise.
        let api_enabled = field!(f, self.api_enabled).boolean_or(api_addr.is_some())?;
        let api_addr = api_addr.filter(|_| api_enabled);
        if api_enabled && api_addr.is_none() && http_addr.is_none() {
            return Err(ConfigError(
                "API_ENABLED=true needs a listener: set API_ADDR (or HTTP_ADDR, which is off)"
                    .into(),
            ));
        }
        let token_f = field!(f, self.api_token);
        let api_token = match token_f.given() {
            None => None,
            Some(t) if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(token_f.fail(
                    "expected at least 16 characters without spaces (e.g. from `openssl rand -hex 32`)",
                ));
            }
            Some(t) => Some(Secret::new(t)),
        };
        Ok(HttpSettings {
            http_addr,
            api_enabled,
            api_addr,
            signed_url_ttl: field!(f, self.signed_url_ttl).seconds(1, 7 * 86_400)?,
            api_cors_origins: cors_origins(&field!(f, self.api_cors_origins))?,
            api_token,
            api_rate_limit: field!(f, self.api_rate_limit).number(0, 1_000_000)?,
            api_retry_cooldown: field!(f, self.api_retry_cooldown_seconds).seconds(0, 86_400)?,
            api_trust_forwarded_for: field!(f, self.api_trust_forwarded_for).boolean()?,
            max_connections: field!(f, self.http_max_connections).number(1, 1_000_000)?,
            header_timeout: field!(f, self.http_header_timeout_seconds).seconds(1, 3600)?,
            idle_timeout: field!(f, self.http_idle_timeout_seconds).seconds(1, 86_400)?,
            request_timeout: field!(f, self.http_request_timeout_seconds).seconds(1, 3600)?,
        })
    }
}

/// A listener address, or `None` for `off`/`none`/`false` or nothing. `IP:PORT`, or
/// `HOST:PORT` with a host name resolved here, at start-up: its first IPv4 address (what
/// `localhost` means to most clients), else its first address.
fn address(f: &Field, expected: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let v = match f.present() {
        None => return Ok(None),
        Some(v) if matches!(v.to_ascii_lowercase().as_str(), "off" | "none" | "false") => {
            return Ok(None);
        }
        Some(v) => v,
    };
    if let Ok(addr) = v.parse() {
        return Ok(Some(addr));
    }
    let Some((host, port)) = v.rsplit_once(':') else {
        return Err(f.fail(expected));
    };
    let host_ok = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(f.fail(expected));
    }
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(v)
        .map_err(|e| f.fail(format_args!("cannot resolve the host name {host} ({e})")))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .map(Some)
        .ok_or_else(|| f.fail(format_args!("the host name {host} has no address")))
}

/// `API_CORS_ORIGINS`: `*`, or origins (`https://host[:port]`) separated by commas.
fn cors_origins(f: &Field) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = f
        .given()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| o.trim_end_matches('/').to_string())
        .collect();
    for origin in &origins {
        let ok = origin == "*"
            || Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.path() == "/"
            });
        if !ok {
            return Err(f.fail(format_args!(
                "expected * or origins like https://example.com separated by commas, not {origin}"
            )));
        }
    }
    Ok(origins)
}

impl Default for HttpSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        HttpArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
