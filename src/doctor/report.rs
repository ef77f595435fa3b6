//! What `doctor` found: one line per check (name, status, time, detail, advice), rendered as
//! text for people and as JSON for scripts, and the exit code it maps to.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How a check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It works.
    Pass,
    /// Something `run` needs does not work: the exit code is 1 (2 for the configuration).
    Fail,
    /// Worth a look, but `run` works without it (a strategy of several that did not answer).
    Warn,
    /// Not checked: not needed by this configuration, or impossible here (no browser).
    Skip,
}

impl Status {
    /// The mark of the text form.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Warn => "!",
            Status::Skip => "-",
        }
    }
}

/// One check's outcome, before it is timed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// One line: what to do about it (on failures and warnings).
    pub advice: Option<String>,
}

impl Outcome {
    /// It works.
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Status::Pass, detail, None::<String>)
    }

    /// Not checked, and why.
    pub fn skip(detail: impl Into<String>) -> Self {
        Self::new(Status::Skip, detail, None::<String>)
    }

    /// It does not work, and what to do.
    pub fn fail(detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Self::new(Status::Fail, detail, Some(advice))
    }

    /// Worth a look, and what to do.
    pub fn warn(detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Self::new(Status::Warn, detail, Some(advice))
    }

    /// A failure when `counted`, else a warning.
    pub(crate) fn fail_if(
        counted: bool,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        let status = if counted { Status::Fail } else { Status::Warn };
        Self::new(status, detail, Some(advice))
    }

    fn new(status: Status, detail: impl Into<String>, advice: Option<impl Into<String>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            advice: advice.map(Into::into),
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`queue`, `storage round trip`, `douyin share_page`, ...).
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Milliseconds it took.
    pub ms: u64,
    /// What was found (secrets scrubbed).
    pub detail: String,
    /// What to do about it, on failures and warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Check {
    /// The line of `outcome`, which took `ms`; every configured secret is scrubbed from its
    /// text (a store or database may echo what it was sent).
    pub fn new(name: impl Into<String>, ms: u64, outcome: Outcome) -> Self {
        let scrub = |s: String| crate::redact::scrub_owned(s);
        Self {
            name: name.into(),
            status: outcome.status,
            ms,
            detail: scrub(outcome.detail),
            advice: outcome.advice.map(scrub),
        }
    }
}

/// Runs one check within `budget`: a check that hangs (a store that never answers) fails with
/// "no answer within" instead of hanging `doctor`.
pub async fn timed(name: &str, budget: Duration, check: impl Future<Output = Outcome>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(budget, check)
        .await
        .unwrap_or_else(|_| {
            Outcome::fail(
                format!("no answer within {budget:?}"),
                "it hangs: check that it is reachable from this machine (firewall, DNS, proxy)",
            )
        });
    Check::new(name, started.elapsed().as_millis() as u64, outcome)
}

/// Every check, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Whether everything `run` needs works.
    pub ok: bool,
    /// The mode the configuration selects (`embedded`, `postgres`, `supabase`).
    pub mode: String,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report on `mode` with no check yet.
    pub fn new(mode: impl Into<String>) -> Self {
        Self {
            ok: true,
            mode: mode.into(),
            checks: Vec::new(),
        }
    }

    /// Adds checks; a failed one makes the report not ok.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        for check in checks {
            self.ok &= check.status != Status::Fail;
            self.checks.push(check);
        }
    }

    /// Whether the check called `name` failed.
    pub fn failed(&self, name: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && c.status == Status::Fail)
    }

    /// The exit code: 0 when everything `run` needs works, 2 for a bad configuration (as
    /// every command exits for one), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.failed(super::CONFIGURATION) {
            crate::exit::USAGE
        } else if self.ok {
            0
        } else {
            crate::exit::FAILURE
        }
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The text form: a mark, the name, the detail and the time on one line, the advice
    /// under it, then a summary.
    pub(crate) fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.chars().count()).max();
        let width = width.unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{} {:width$}  {} ({} ms)",
                c.status.mark(),
                c.name,
                c.detail,
                c.ms
            );
            if let Some(advice) = &c.advice {
                let _ = writeln!(out, "  {:width$}  → {advice}", "");
            }
        }
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect();
        if failed.is_empty() {
            let _ = writeln!(out, "\nready to run ({} mode)", self.mode);
        } else {
            let _ = writeln!(out, "\nnot ready: {}", failed.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_makes_the_report_not_ok_and_a_warning_or_skip_does_not() {
        let mut r = Report::new("embedded");
        r.extend([
            Check::new("a", 1, Outcome::pass("fine")),
            Check::new("b", 2, Outcome::skip("not here")),
            Check::new("c", 3, Outcome::warn("odd", "look")),
        ]);
        assert!(r.ok);
        assert_eq!(r.exit_code(), 0);
        assert!(r.to_text().contains("ready to run (embedded mode)"));
        r.extend([Check::new("d", 4, Outcome::fail("broken", "fix it"))]);
        assert!(!r.ok);
        assert_eq!(r.exit_code(), 1);
        let text = r.to_text();
        assert!(text.contains("✗ d  broken (4 ms)\n     → fix it"), "{text}");
        assert!(text.ends_with("not ready: d\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][3]["status"], "fail");
        assert_eq!(json["checks"][0].get("advice"), None);
    }

    #[test]
    fn a_bad_configuration_exits_as_bad_usage() {
        let mut r = Report::new("embedded");
        r.extend([Check::new(
            super::super::CONFIGURATION,
            0,
            Outcome::fail("MAX_CONCURRENT=x", "fix"),
        )]);
        assert_eq!(r.exit_code(), crate::exit::USAGE);
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_at_its_budget() {
        let c = timed("slow", Duration::from_millis(20), std::future::pending()).await;
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.detail, "no answer within 20ms");
    }
}
