//! `DATABASE_URL` to connect options, the one way every PostgreSQL connection of the worker is
//! set up (the queue's pool, `migrate`, the start-up check of the URL).
//!
//! Two things sqlx would do on its own are changed:
//!
//! - sqlx's URL parser logs a query parameter it does not know at WARN *with its value*
//!   (`ignoring unrecognized connect parameter`), which would put e.g. `sslpassword=...` in the
//!   logs. Only parameters it knows reach it: `pgbouncer` (the pooler flag other clients use,
//!   read by `DbPooler::detect`) is removed, and any other
//!   unknown one is dropped and reported by name only.
//! - sqlx sends the startup parameter `extra_float_digits`, which PgBouncer and Supabase's
//!   pooler refuse (`unsupported startup parameter`) unless configured to ignore it. It is not
//!   sent, on direct connections either: it only changes how floats are written as *text*,
//!   and the worker reads every float in binary (prepared statements); since PostgreSQL 12 the
//!   server's default text output round-trips exactly anyway.

use sqlx::postgres::PgConnectOptions;
use url::Url;

/// The query parameters sqlx's URL parser understands (sqlx-postgres 0.9,
/// `options/parse.rs`), besides `options[NAME]`.
const UNDERSTOOD: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Our own parameter: the pooler flag (see `DB_POOLER`).
const POOLER_FLAG: &str = "pgbouncer";

/// A `DATABASE_URL` that cannot be used. The message never holds the URL (it may hold a
/// password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDatabaseUrl(String);

/// A parsed `DATABASE_URL`. Its `Debug` leaves out the options (sqlx's show the password).
#[derive(Clone)]
pub(crate) struct DatabaseUrl {
    /// What to connect with.
    pub options: PgConnectOptions,
    /// The names of the query parameters that were dropped because nothing here understands
    /// them (never their values).
    pub ignored: Vec<String>,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .field("database", &self.options.get_database())
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}

/// Parses `url` into connect options (see the module docs), without logging. Use
/// [`connect_options`] to connect; this is for checking a URL and for tests.
pub(crate) fn parse_database_url(url: &str) -> Result<DatabaseUrl, BadDatabaseUrl> {
    let mut parsed =
        Url::parse(url).map_err(|e| BadDatabaseUrl(format!("not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(BadDatabaseUrl(format!(
            "expected a postgres:// or postgresql:// URL, not {}://",
            parsed.scheme()
        )));
    }
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key.eq_ignore_ascii_case(POOLER_FLAG) {
            continue;
        }
        if UNDERSTOOD.contains(&key.as_ref()) || (key.starts_with("options[") && key.ends_with(']'))
        {
            kept.push((key.into_owned(), value.into_owned()));
        } else if !ignored.iter().any(|k| *k == key) {
            ignored.push(key.into_owned());
        }
    }
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    let options: PgConnectOptions = parsed
        .as_str()
        .parse()
        .map_err(|e| BadDatabaseUrl(format!("not a usable PostgreSQL URL ({e})")))?;
    Ok(DatabaseUrl {
        options: options.extra_float_digits(None),
        ignored,
    })
}

/// The connect options for `url` (see the module docs); logs, at WARN and by name only, the
/// query parameters that were dropped.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, BadDatabaseUrl> {
    let parsed = parse_database_url(url)?;
    for key in &parsed.ignored {
        tracing::warn!(
            parameter = %key,
            "DATABASE_URL has a parameter this worker does not understand; ignored"
        );
    }
    Ok(parsed.options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> DatabaseUrl {
        parse_database_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn the_pooler_flag_is_ours_and_never_reaches_sqlx() {
        let url = parse("postgres://u:pw@pooler.example.com:6543/postgres?pgbouncer=true");
        assert!(url.ignored.is_empty(), "{:?}", url.ignored);
        assert_eq!(url.options.get_host(), "pooler.example.com");
        assert_eq!(url.options.get_port(), 6543);
        assert_eq!(url.options.get_database(), Some("postgres"));
        assert_eq!(url.options.get_username(), "u");
        // Any spelling or value: it is removed, not passed on.
        let url = parse("postgres://u@h/db?PgBouncer=1&sslmode=disable");
        assert!(url.ignored.is_empty(), "{:?}", url.ignored);
    }

    #[test]
    fn unknown_parameters_are_dropped_and_named_without_their_values() {
        let url = parse(
            "postgresql://u@h:5432/db?sslpassword=s3cret&sslmode=require&connect_timeout=5\
             &sslpassword=again&application_name=mine",
        );
        assert_eq!(url.ignored, ["sslpassword", "connect_timeout"]);
        let debug = format!("{:?}", url.ignored);
        assert!(
            !debug.contains("s3cret") && !debug.contains("again"),
            "{debug}"
        );
        // What sqlx knows still applies.
        assert!(matches!(
            url.options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::Require
        ));
        assert_eq!(url.options.get_application_name(), Some("mine"));
    }

    /// What `f` logs, as text.
    fn logs_of(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn connecting_logs_the_names_of_dropped_parameters_not_their_values() {
        let logs = logs_of(|| {
            connect_options("postgres://u@h/db?sslpassword=s3cret&pgbouncer=true").unwrap();
        });
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains("sslpassword"), "{logs}");
        assert!(!logs.contains("s3cret"), "{logs}");
        // Ours is not reported, and sqlx's parser never saw either.
        assert!(!logs.contains("pgbouncer"), "{logs}");
        assert!(!logs.contains("unrecognized"), "{logs}");
        // What sqlx alone would have logged.
        let theirs = logs_of(|| {
            let _: PgConnectOptions = "postgres://u@h/db?sslpassword=s3cret".parse().unwrap();
        });
        assert!(theirs.contains("s3cret"), "{theirs}");
    }

    #[test]
    fn understood_parameters_pass_through() {
        let url = parse(
            "postgres://u@h/db?options[search_path]=public&statement-cache-capacity=7\
             &sslrootcert=/etc/ca.pem&host=other",
        );
        assert!(url.ignored.is_empty(), "{:?}", url.ignored);
        assert_eq!(url.options.get_host(), "other");
        assert_eq!(url.options.get_options(), Some("-c search_path=public"));
    }

    /// The startup parameter names a client sends with `options`, read by a loopback
    /// listener standing in for the server (which then hangs up).
    async fn startup_parameters(options: PgConnectOptions) -> Vec<String> {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let len = sock.read_i32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            sock.read_exact(&mut body).await.unwrap();
            // Protocol version, then NUL-terminated name/value pairs, then a NUL.
            let fields: Vec<String> = body[4..]
                .split(|b| *b == 0)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            fields
                .chunks(2)
                .filter(|kv| kv.len() == 2 && !kv[0].is_empty())
                .map(|kv| kv[0].clone())
                .collect::<Vec<_>>()
        });
        let options = options.host("127.0.0.1").port(port);
        let _refused = sqlx::ConnectOptions::connect(&options).await;
        server.await.unwrap()
    }

    #[tokio::test]
    async fn extra_float_digits_is_not_sent() {
        let url = "postgres://someone@h/db?sslmode=disable";
        let ours = startup_parameters(parse(url).options).await;
        assert!(ours.contains(&"user".to_string()), "{ours:?}");
        assert!(ours.contains(&"database".to_string()), "{ours:?}");
        assert!(
            !ours.contains(&"extra_float_digits".to_string()),
            "{ours:?}"
        );
        // sqlx's own default sends it: what poolers refuse.
        let default = startup_parameters(url.parse().unwrap()).await;
        assert!(
            default.contains(&"extra_float_digits".to_string()),
            "{default:?}"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        for bad in [
            "mysql://u:hunter2@h/db",
            "postgres://u:hunter2@h:notaport/db",
            "postgres://u:hunter2@h/db?sslmode=sometimes",
        ] {
            let e = parse_database_url(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = parse_database_url("mysql://h/db").unwrap_err().to_string();
        assert!(e.contains("postgres://"), "{e}");
    }
}
