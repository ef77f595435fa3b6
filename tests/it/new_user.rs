//! The embedded default as a new user meets it, through the binary: switches, `--help`, a
//! host name for `HTTP_ADDR`, a job queued from another process picked up at once, and log
//! lines a person reads.

use std::time::{Duration, Instant};

use crate::cli::{RunningBinary, stderr, worker};

/// Every subcommand's `--help` lists its own arguments and options first, then the settings
/// every command shares, each group under a `Shared settings: ...` heading.
#[test]
fn each_subcommands_help_shows_its_own_options_first_then_the_shared_settings() {
    for (command, own) in [
        ("run", &[][..]),
        ("migrate", &[][..]),
        ("enqueue", &["--priority", "--force", "--json"][..]),
        ("extract", &[][..]),
        ("get", &["--output"][..]),
        ("stats", &["--json"][..]),
        ("jobs", &["--status", "--limit", "--json"][..]),
        ("retry", &["--all-failed", "--json"][..]),
        ("gc", &["--apply", "--min-age", "--json"][..]),
        ("setup-storage", &[][..]),
        ("doctor", &["--video", "--timeout", "--json"][..]),
    ] {
        let o = worker(&[command, "--help"], &[]);
        assert_eq!(o.status.code(), Some(0), "{command} --help");
        let help = String::from_utf8(o.stdout).unwrap();
        let headings: Vec<&str> = help
            .lines()
            .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
            .collect();
        let first_shared = headings
            .iter()
            .position(|h| h.starts_with("Shared settings: "))
            .unwrap_or_else(|| panic!("{command} --help has no shared settings:\n{help}"));
        assert!(
            headings[..first_shared]
                .iter()
                .all(|h| matches!(*h, "Arguments:" | "Options:")),
            "{command} --help: {headings:?}"
        );
        assert!(
            headings[first_shared..]
                .iter()
                .all(|h| h.starts_with("Shared settings: ")),
            "{command} --help: {headings:?}"
        );
        let shared_at = help.find("\nShared settings: ").unwrap();
        for flag in own.iter().chain(&["--help"]) {
            let at = help
                .find(&format!("{flag} "))
                .or_else(|| help.find(&format!("{flag}\n")))
                .unwrap_or_else(|| panic!("{command} --help lacks {flag}:\n{help}"));
            assert!(
                at < shared_at,
                "{command} --help: {flag} after the shared settings"
            );
        }
        for shared in ["--data-dir", "--max-concurrent", "--debug", "--http-addr"] {
            let at = help.find(shared).unwrap();
            assert!(
                at > shared_at,
                "{command} --help: {shared} among its own options"
            );
        }
    }
}

/// `--debug stats` runs `stats` with debug logging (it was `--debug=stats: expected true or
/// false`); `--debug=false` and a bad value after `=` are still understood.
#[test]
fn a_switch_before_the_command_is_a_switch_not_the_commands_value() {
    let data = tempfile::tempdir().unwrap();
    let env = [("DATA_DIR", data.path().to_str().unwrap())];
    for args in [
        &["--debug", "stats"][..],
        &["stats", "--debug=false", "--prefer-h264"],
    ] {
        let o = worker(args, &env);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("pending"));
    }
    let o = worker(&["--debug=maybe", "stats"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--debug=maybe: expected true or false"),
        "{}",
        stderr(&o)
    );
}

/// Waits until the worker has logged a line with `message`; panics with its log after
/// `within`.
fn wait_for_line(w: &RunningBinary, message: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = w.logs().into_iter().find(|l| l["message"] == message) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} line within {within:?}: {:#?}",
            w.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `run` in one shell, `enqueue` in another: the worker is woken by the other process's
/// write (its poll interval here is a minute) and says which link it picked up; every line
/// carries plain fields (no `RunSummary { .. }`, no `Some(..)`).
#[test]
fn a_job_queued_from_another_shell_is_picked_up_at_once_and_logged_in_plain_fields() {
    const LINK: &str = "https://www.douyin.com/video/7400000000000000042";
    let data = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let env = [
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("TEMP_DIR", temp.path().to_str().unwrap()),
        ("POLL_INTERVAL", "60000"),
        ("BROWSER_ENABLED", "false"),
        // Nothing listens there: the attempt fails at once, as a transient failure.
        ("DOUYIN_UPSTREAM", "http://127.0.0.1:9"),
        ("RETRY_BASE_SECONDS", "3600"),
        ("RETRY_MAX_SECONDS", "3600"),
    ];
    let w = RunningBinary::start(&env);
    wait_for_line(&w, "worker started", Duration::from_secs(60));
    // Its first claim found nothing; now only a wake-up (or the poll in a minute) finds a job.
    std::thread::sleep(Duration::from_millis(300));
    let o = worker(&["enqueue", LINK], &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let picked = wait_for_line(&w, "job picked up", Duration::from_secs(30));
    assert_eq!(picked["link"], LINK, "{picked}");
    let failed = wait_for_line(&w, "job failed", Duration::from_secs(30));
    assert!(
        failed["next"]
            .as_str()
            .is_some_and(|n| n.starts_with("retry in ")),
        "{failed}"
    );
    let (code, lines) = w.stop();
    assert_eq!(code, Some(0));
    let stopped = lines
        .iter()
        .find(|l| l["message"] == "worker stopped")
        .expect("a worker stopped line");
    assert_eq!(stopped["claimed"], 1, "{stopped}");
    assert_eq!(stopped["retried"], 1, "{stopped}");
    assert_eq!(stopped["completed"], 0, "{stopped}");
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains("RunSummary") && !text.contains("Some("),
            "a line not written for people: {text}"
        );
    }
}

/// A job rescued from a worker that died is logged with what became of it in words
/// (`outcome="back in the queue"`), not `requeued=true` (or PostgreSQL's `t`).
#[test]
fn a_rescued_job_is_logged_with_what_became_of_it_in_words() {
    use std::sync::Arc;

    use douyin_worker::worker::Worker;
    use tokio_util::sync::CancellationToken;

    use crate::support::backends::{Backend, Kind, wait_for_status};
    use crate::support::stages::Succeed;

    let text = crate::worker::json_logs_of("info,sqlx=warn", || async {
        let b = Backend::new(Kind::Sqlite).await;
        let id = b.enqueue("7400000000000000043").await;
        let held = b.queue.claim("gone", 1, Duration::from_secs(1)).await;
        assert_eq!(held.unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let tmp = tempfile::tempdir().unwrap();
        let opts = crate::worker::options("rescuer", tmp.path().into());
        let stop = CancellationToken::new();
        let worker = Worker::new(b.queue.clone(), Arc::new(Succeed::default()), opts);
        let run = tokio::spawn(worker.run(stop.clone()));
        wait_for_status(
            b.queue.as_ref(),
            id,
            &["completed"],
            Duration::from_secs(20),
        )
        .await;
        stop.cancel();
        run.await.unwrap();
    });
    let rescued: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["message"] == "rescued a job whose lease expired")
        .collect();
    assert_eq!(rescued.len(), 1, "{text}");
    assert_eq!(rescued[0]["outcome"], "back in the queue", "{}", rescued[0]);
    assert_eq!(rescued[0]["expired_worker"], "gone", "{}", rescued[0]);
    assert!(rescued[0].get("requeued").is_none(), "{}", rescued[0]);
}
