//! The embedded default as a new user meets it, through the binary: switches, `--help`, a
//! host name for `HTTP_ADDR`, a job queued from another process picked up at once, and log
//! lines a person reads.

use crate::cli::{stderr, worker};

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
