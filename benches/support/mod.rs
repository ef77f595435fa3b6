//! What more than one benchmark needs.

use std::process::Command;

/// The PostgreSQL to run on: `DW_TEST_DATABASE_URL` when set, else a throwaway cluster started
/// with `tests/support/pg-cluster.sh`, removed when the returned folder is dropped (and by the
/// script's watcher if this process dies first).
pub fn cluster_url() -> (String, Option<tempfile::TempDir>) {
    if let Ok(url) = std::env::var("DW_TEST_DATABASE_URL") {
        return (url, None);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pg-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .arg(dir.path().join("pg"))
        .arg(std::process::id().to_string())
        .output()
        .expect("run pg-cluster.sh");
    assert!(
        out.status.success(),
        "pg-cluster.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (url, Some(dir))
}
