//! The throwaway PostgreSQL cluster of the tests and benchmarks, and tracing for tests.
//!
//! PostgreSQL: one throwaway cluster per run (`DW_TEST_DATABASE_URL`, exported by
//! `scripts/test.sh`), or, when that is unset, one cluster per test process started with
//! `tests/support/pg-cluster.sh` and removed by its watchdog once the process exits. Every test
//! gets its own database: [`fresh_pg`] clones a template that already has the migrations applied
//! (built once per cluster and migration set), [`fresh_pg_empty`] is an empty database.
//!
//! Test databases are not dropped afterwards; the cluster is throwaway.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::OnceCell;

/// Env var with the URL of a running cluster (superuser `postgres`, database `postgres`).
pub const DATABASE_URL_ENV: &str = "DW_TEST_DATABASE_URL";

/// `pg_advisory_lock` key serialising template creation across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x6477_5f74_6d70_6c00; // "dw_tmpl\0"

/// Installs a `tracing` subscriber writing to the test output, once per process, but only when
/// `TEST_LOG` is set. Filter from `RUST_LOG`, default `info`.
pub fn init_tracing() {
    static INIT: Once = Once::new();
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// URL of the test cluster's `postgres` database, as superuser `postgres` (trust auth).
///
/// Once per process: `DW_TEST_DATABASE_URL` if set, otherwise a cluster started by
/// `tests/support/pg-cluster.sh` (about 1 s) and watched by this process id. Panics when no
/// PostgreSQL is available: run `bash scripts/test.sh`, which installs and starts it.
///
/// Blocking (it may run a shell script); fine to call from async tests.
pub fn pg_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => start_cluster(),
    })
    .clone()
}

/// The repository (this crate lives in its `fakes/` folder).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fakes/ has a parent")
        .to_path_buf()
}

fn cluster_script() -> PathBuf {
    repo_root().join("tests/support/pg-cluster.sh")
}

fn new_cluster_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("dw-test-pg.{}.{nanos:x}", std::process::id()))
}

fn start_cluster() -> String {
    start_cluster_in(&new_cluster_dir())
}

/// A PostgreSQL cluster of one test's own, for tests that restart or stop the server (never
/// the shared one). Stopped and removed on drop (and by the script's watchdog if this process
/// dies).
pub struct PrivateCluster {
    /// Superuser URL of its `postgres` database.
    pub url: String,
    dir: PathBuf,
}

impl PrivateCluster {
    /// Starts one (about 1 s; blocking).
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts one with these server options added (`pg-cluster.sh`'s `PG_CLUSTER_OPTIONS`,
    /// e.g. `-c wal_level=logical`).
    pub fn start_with(options: &str) -> Self {
        let dir = new_cluster_dir();
        let url = start_cluster_with(&dir, options);
        PrivateCluster { url, dir }
    }

    /// `pg_ctl restart -m fast`: every session is cut, the server comes back on the same port.
    /// Blocking; returns once it accepts connections again.
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    /// The server stopped (`-m fast`: every session cut) for `down`, then started again with
    /// the same options (same port). Blocking; returns once it accepts connections again.
    pub fn outage(&self, down: Duration) {
        // `postmaster.opts`: the server binary, then its quoted options.
        let opts = std::fs::read_to_string(self.dir.join("data/postmaster.opts"))
            .expect("read postmaster.opts");
        let options = opts
            .trim()
            .split_once(' ')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        self.pg_ctl(&["-m", "fast", "stop"]);
        std::thread::sleep(down);
        self.pg_ctl(&["-o", &options, "start"]);
    }

    /// Runs `pg_ctl -D DIR/data -l DIR/log -w -t 60 ARGS` as pg-cluster.sh runs it: as
    /// `postgres` when we are root, from `/`.
    fn pg_ctl(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(cluster_script())
            .arg("bindir")
            .output()
            .expect("pg-cluster.sh bindir");
        let bindir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let pg_ctl = format!("{bindir}/pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_ctl]);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let out = cmd
            .args(["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()])
            .args(["-w", "-t", "60"])
            .args(args)
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(cluster_script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn start_cluster_in(dir: &Path) -> String {
    start_cluster_with(dir, "")
}

fn start_cluster_with(dir: &Path, options: &str) -> String {
    let script = cluster_script();
    let output = Command::new("bash")
        .env("PG_CLUSTER_OPTIONS", options)
        .arg(&script)
        .arg("start")
        .arg(dir)
        .arg(std::process::id().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);

    if output.status.code() == Some(3) {
        // pg-cluster.sh: no PostgreSQL server binaries.
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but no PostgreSQL server is installed and {DATABASE_URL_ENV} is unset; \
                 CI must run `bash scripts/test.sh` (it installs PostgreSQL and starts a cluster).\n\
                 pg-cluster.sh said:\n{stderr}"
            );
        }
        panic!(
            "these tests need PostgreSQL and none was found: run the suite with \
             `bash scripts/test.sh` (installs PostgreSQL if needed, starts a throwaway cluster), \
             or set {DATABASE_URL_ENV} to a superuser URL of a disposable cluster.\n\
             pg-cluster.sh said:\n{stderr}"
        );
    }
    if !output.status.success() {
        panic!(
            "starting a test PostgreSQL cluster with {} failed ({}):\n{stderr}",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);

    stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("postgres://"))
        .unwrap_or_else(|| panic!("pg-cluster.sh printed no URL; stdout: {stdout:?}\n{stderr}"))
        .to_owned()
}

/// A database of its own for one test.
pub struct TestDb {
    /// Pool to this database (max 20 connections).
    pub pool: PgPool,
    /// URL of this database (superuser `postgres`).
    pub url: String,
    /// Database name, `test_<uuid>`.
    pub name: String,
}

/// A new database with the project's migrations applied (cloned from a per-cluster template).
pub async fn fresh_pg() -> TestDb {
    init_tracing();
    let template = template_db().await;
    create_test_db(Some(&template)).await
}

/// A new, empty database (no migrations), e.g. for migration and upgrade-path tests.
pub async fn fresh_pg_empty() -> TestDb {
    init_tracing();
    create_test_db(None).await
}

/// A temp dir and the path of a not yet existing `queue.db` inside it. Keep the `TempDir`
/// alive for as long as the database is used.
pub fn fresh_sqlite() -> (tempfile::TempDir, PathBuf) {
    init_tracing();
    let dir = tempfile::Builder::new()
        .prefix("dw-test-sqlite.")
        .tempdir()
        .expect("create temp dir for sqlite");
    let path = dir.path().join("queue.db");
    (dir, path)
}

/// `url` with its database replaced by `db` (query string kept).
pub fn url_with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match main[authority_start..].find('/') {
        Some(i) => &main[..authority_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn admin_conn() -> PgConnection {
    let url = pg_url();
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to test cluster {url}: {e}"))
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Kicks every other session off database `db`.
async fn terminate_connections(conn: &mut PgConnection, db: &str) {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db)
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("terminate connections to {db}: {e}"));
}

/// Runs a statement that needs `db` to have no other sessions (CREATE DATABASE ... TEMPLATE,
/// ALTER DATABASE ... RENAME), terminating stragglers and retrying for a few seconds.
async fn exec_needing_no_sessions(conn: &mut PgConnection, db: &str, sql: String) {
    let mut attempt = 0;
    loop {
        terminate_connections(conn, db).await;
        match exec(conn, sql.clone()).await {
            Ok(()) => return,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn create_test_db(template: Option<&str>) -> TestDb {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin_conn().await;
    match template {
        Some(t) => {
            let sql = format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(t)
            );
            exec_needing_no_sessions(&mut admin, t, sql).await;
        }
        None => exec(
            &mut admin,
            format!("CREATE DATABASE {}", quote_ident(&name)),
        )
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}")),
    }
    let _ = admin.close().await;

    let url = url_with_database(&pg_url(), &name);
    let pool = pool_for(&url, 20).await;
    TestDb { pool, url, name }
}

pub async fn pool_for(url: &str, max_connections: u32) -> PgPool {
    let options =
        PgConnectOptions::from_str(url).unwrap_or_else(|e| panic!("bad database url {url}: {e}"));
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Hash of the migration set: names and contents of every file under `migrations/` (and of the
/// crate's migration runner source, if any), sorted by path.
fn migrations_hash() -> u64 {
    let root = repo_root();
    let root = root.as_path();
    let mut files = Vec::new();
    collect_files(&root.join("migrations"), &mut files);
    let runner = root.join("src/queue/migrate.rs");
    if runner.is_file() {
        files.push(runner);
    }
    files.sort();

    let mut hasher = DefaultHasher::new();
    for file in &files {
        file.strip_prefix(root).unwrap_or(file).hash(&mut hasher);
        std::fs::read(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
            .hash(&mut hasher);
    }
    hasher.finish()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// Name of the template database with the migrations applied, creating it if this cluster
/// does not have it yet. Once per process; serialised across processes by an advisory lock.
async fn template_db() -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("dw_template_{:016x}", migrations_hash());
            let mut admin = admin_conn().await;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(TEMPLATE_LOCK_KEY)
                .execute(&mut admin)
                .await
                .expect("pg_advisory_lock for template creation");

            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("look up template database");
            if !exists {
                build_template(&mut admin, &name).await;
            }

            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(TEMPLATE_LOCK_KEY)
                .execute(&mut admin)
                .await
                .expect("pg_advisory_unlock");
            let _ = admin.close().await;
            name
        })
        .await
        .clone()
}

/// Builds the template under a temporary name and renames it only once the migrations have
/// succeeded, so a crashed or failed build never leaves a half-migrated template behind.
async fn build_template(admin: &mut PgConnection, name: &str) {
    let build = format!("dw_build_{}", uuid::Uuid::new_v4().simple());
    exec(admin, format!("CREATE DATABASE {}", quote_ident(&build)))
        .await
        .unwrap_or_else(|e| panic!("create database {build}: {e}"));

    let url = url_with_database(&pg_url(), &build);
    let pool = pool_for(&url, 5).await;
    let result = douyin_worker::queue::migrate::apply_postgres(&pool).await;
    pool.close().await;
    if let Err(e) = result {
        terminate_connections(admin, &build).await;
        let _ = exec(
            admin,
            format!("DROP DATABASE IF EXISTS {}", quote_ident(&build)),
        )
        .await;
        panic!("applying the migrations to the template database failed: {e:?}");
    }

    exec_needing_no_sessions(
        admin,
        &build,
        format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&build),
            quote_ident(name)
        ),
    )
    .await;
    // Nobody should ever connect to the template (it would block cloning).
    exec(
        admin,
        format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
            quote_ident(name)
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("mark {name} as template: {e}"));
}
