//! `DATABASE_URL` through a connection pooler: a real PgBouncer (Debian's package,
//! installed by `scripts/test.sh`; Supabase's poolers speak the same protocol and have the same
//! limits) in front of the shared test cluster, in session mode and in transaction mode, with
//! PgBouncer's default settings apart from the pool mode and the authentication.
//!
//! - `queue`: the queue's life cycle through [`PgQueue`] with concurrent claimers, and
//!   `migrate` twice and two at once.
//! - `binary`: the admin commands, and one job end to end with the download API, through the
//!   binary, whose log must hold no error.
//!
//! [`PgQueue`]: douyin_worker::queue::postgres::PgQueue

mod binary;
mod queue;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use douyin_worker::config::DbPooler;

/// PgBouncer's `pool_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolMode {
    /// A server connection per client connection, for as long as the client stays.
    Session,
    /// A server connection per transaction: Supabase's port 6543.
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }

    /// The `DB_POOLER` mode the worker must use behind this pooler.
    pub(crate) fn pooler(self) -> DbPooler {
        match self {
            PoolMode::Session => DbPooler::Session,
            PoolMode::Transaction => DbPooler::Transaction,
        }
    }
}

/// A PgBouncer on a free loopback port in front of the test cluster; killed, and its folder
/// removed, on drop.
pub(crate) struct PgBouncer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgBouncer {
    /// Starts one in `mode`, returning once it accepts connections.
    pub(crate) fn start(mode: PoolMode) -> PgBouncer {
        let bin = binary();
        let cluster = url::Url::parse(&fakes::pg::pg_url()).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("dw-test-pgbouncer.")
            .tempdir()
            .unwrap();
        let port = fakes::servers::free_port();
        let auth_file = dir.path().join("userlist.txt");
        std::fs::write(&auth_file, "\"postgres\" \"\"\n").unwrap();
        // Defaults apart from the pool mode and auth; where to listen and write is ours, so
        // nothing clashes with another test's PgBouncer or the Debian package's service.
        let ini = format!(
            "[databases]\n\
             * = host={host} port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             pool_mode = {mode}\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             logfile = {log}\n",
            host = cluster.host_str().unwrap(),
            pg_port = cluster.port().unwrap_or(5432),
            mode = mode.as_str(),
            auth = auth_file.display(),
            log = dir.path().join("pgbouncer.log").display(),
        );
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(&config, ini).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg(&config)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres_when_root(&mut cmd, dir.path());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): run bash scripts/test.sh, which installs PgBouncer",
                bin.display()
            )
        });
        let bouncer = |child| PgBouncer { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let b = bouncer(child);
                panic!("pgbouncer exited at start-up ({status}):\n{}", b.log());
            }
            assert!(Instant::now() < deadline, "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer(child)
    }

    /// The URL of database `db` through this PgBouncer.
    pub(crate) fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// PgBouncer's own log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pgbouncer` program: on PATH, else Debian's `/usr/sbin/pgbouncer` (not on a normal
/// user's PATH). Panics, saying how to get it, when there is none.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file());
    let debian = PathBuf::from("/usr/sbin/pgbouncer");
    on_path
        .or_else(|| debian.is_file().then_some(debian))
        .expect(
            "PgBouncer is needed (Debian package pgbouncer): run bash scripts/test.sh, \
             which installs it",
        )
}

/// PgBouncer refuses to run as root: when we are root, `cmd` runs as `postgres` (set on the
/// process itself rather than through runuser, so that killing the child kills PgBouncer),
/// and `dir` becomes theirs.
fn as_postgres_when_root(cmd: &mut Command, dir: &Path) {
    use std::os::unix::process::CommandExt;
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no postgres user to run PgBouncer as (root may not): run bash scripts/test.sh"
    );
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    cmd.uid(uid).gid(gid);
}

/// The lines of a binary's JSON log at WARN or ERROR, except those `expected`
/// says are fine.
pub(crate) fn complaints(
    lines: &[serde_json::Value],
    expected: impl Fn(&serde_json::Value) -> bool,
) -> Vec<String> {
    lines
        .iter()
        .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        .filter(|l| !expected(l))
        .map(|l| l.to_string())
        .collect()
}

/// The message of the line announcing that wake-ups are polled.
pub(crate) const POLLING_ANNOUNCEMENT: &str = "push wake-ups are off";

/// Whether `line` is the polling announcement.
pub(crate) fn announces_polling(line: &serde_json::Value) -> bool {
    line["message"]
        .as_str()
        .is_some_and(|m| m.starts_with(POLLING_ANNOUNCEMENT))
}
