//! The binary: configuration errors, `migrate`, and `run` refusing to pretend.

use std::process::{Command, Output};

use crate::helpers::{fresh_pg_empty, init_tracing};

fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    worker_in(dir.path(), args, env)
}

fn worker_in(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    cmd.args(args).current_dir(cwd);
    for var in [
        "DATABASE_URL",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "MAX_CONCURRENT",
        "DATA_DIR",
        "LOG_FORMAT",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_settings_fail_fast_naming_the_variable_or_flag() {
    let o = worker(&["run"], &[("MAX_CONCURRENT", "abc")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("MAX_CONCURRENT=abc: expected a whole number"),
        "{}",
        stderr(&o)
    );
    let o = worker(&["--poll-interval", "soon", "run"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--poll-interval=soon"),
        "{}",
        stderr(&o)
    );
    let o = worker(
        &["run"],
        &[
            ("SUPABASE_URL", "ftp://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("SUPABASE_URL=ftp://x"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_database_password_never_reaches_the_output() {
    let o = worker(
        &["migrate"],
        &[("DATABASE_URL", "postgres://user:hunter2@127.0.0.1:1/db")],
    );
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(all.contains("cannot connect to DATABASE_URL"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[tokio::test]
async fn migrate_then_run_says_it_cannot_process_jobs_yet() {
    init_tracing();
    let db = fresh_pg_empty().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    // Before the migrations, `run` says what is missing.
    let o = worker(&["run"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("douyin-worker migrate"),
        "{}",
        stderr(&o)
    );

    let o = worker(&["migrate"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("applied")
            .count(),
        3
    );
    let o = worker(&["migrate"], &env);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("unchanged")
            .count(),
        3
    );

    let o = worker(&["run"], &env);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("queue ready"), "{err}");
    assert!(
        err.contains("cannot process jobs yet: no implementation for storage"),
        "{err}"
    );
}

#[test]
fn the_embedded_default_needs_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = worker(&["migrate"], &[("DATA_DIR", data.to_str().unwrap())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(data.join("douyin-worker.db").exists());
    let o = worker(&["run"], &[("DATA_DIR", data.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("backend=\"sqlite\"") || stderr(&o).contains("sqlite"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("cannot process jobs yet"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn supabase_only_mode_explains_how_to_migrate() {
    let o = worker(
        &["migrate"],
        &[
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("SQL editor") && err.contains("0001_schema.sql"),
        "{err}"
    );
    assert!(!err.contains("sb_secret_abc"));
}

#[test]
fn a_dot_env_file_is_read_and_real_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "MAX_CONCURRENT=lots\nDATA_DIR=./from-dotenv\n",
    )
    .unwrap();
    let o = worker_in(dir.path(), &["migrate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("MAX_CONCURRENT=lots"), "{}", stderr(&o));
    let o = worker_in(dir.path(), &["migrate"], &[("MAX_CONCURRENT", "3")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("from-dotenv/douyin-worker.db").exists());
}

#[test]
fn json_logs_are_one_object_per_line_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = worker(
        &["run"],
        &[
            ("DATA_DIR", data.to_str().unwrap()),
            ("LOG_FORMAT", "json"),
            ("WORKER_ID", "json-test"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let start = lines
        .iter()
        .find(|v| v["message"] == "douyin-worker starting")
        .unwrap_or_else(|| panic!("no start-up line in {err}"));
    assert!(
        start["settings"]
            .as_str()
            .unwrap()
            .contains("worker_id=json-test")
    );
    assert_eq!(start["level"], "INFO");
}
