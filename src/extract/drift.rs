//! Douyin's new shapes, kept for the fix: when a strategy meets an answer no parser knows
//! (drift), the answer that did it (the request's URL and method, the status, the response
//! headers and the body) is written to a folder, with every configured secret and every
//! cookie value taken out, so that a maintainer can turn it into a test fixture
//! (docs/testing.md says how). At most one file per strategy per interval, and a bounded
//! number in the folder: a worker meeting drift on every job keeps a few, not thousands.
//! `douyin-worker extract --save FOLDER` writes every strategy's answer the same way.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Page, Session};

/// What replaces a cookie value in a kept answer.
const COOKIE: &str = "<cookie>";

/// Cookie values shorter than this are left alone (`1`, `0`: replacing them everywhere would
/// garble the body, and they carry nothing).
const MIN_COOKIE_VALUE: usize = 6;

/// Keeps drift answers under a folder, rate-limited per strategy and bounded in number.
#[derive(Debug)]
pub struct DriftKeeper {
    dir: PathBuf,
    every: Duration,
    max_files: usize,
    last: Mutex<HashMap<&'static str, Instant>>,
}

/// One answer to keep, with what it was for.
pub struct Answer<'a> {
    /// The strategy that met it.
    pub strategy: &'static str,
    /// The post asked for.
    pub aweme_id: &'a str,
    /// What the parser said of it (empty when it was kept on demand).
    pub what: &'a str,
    /// The answer.
    pub page: &'a Page,
}

impl DriftKeeper {
    /// At most one file per strategy per `every`, and `max_files` in `dir`.
    pub fn new(dir: PathBuf, every: Duration, max_files: usize) -> Self {
        Self {
            dir,
            every,
            max_files,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `answer` unless this strategy kept one within the interval or the folder is
    /// full; returns the file written.
    pub fn keep(
        &self,
        answer: &Answer<'_>,
        cookie_values: &[&str],
    ) -> std::io::Result<Option<PathBuf>> {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if last
                .get(answer.strategy)
                .is_some_and(|t| now.duration_since(*t) < self.every)
            {
                return Ok(None);
            }
            last.insert(answer.strategy, now);
        }
        if kept_files(&self.dir) >= self.max_files {
            return Ok(None);
        }
        save(&self.dir, answer, cookie_values).map(Some)
    }
}

/// Which answers to keep.
pub enum Keep<'a> {
    /// Every one, in this folder (`extract --save`), with what the parser said if anything.
    Always(&'a Path, &'a str),
    /// One in drift, with what the parser said, as the keeper allows.
    Drift(&'a DriftKeeper, &'a str),
}

/// Keeps the session's last answer (the one the strategy just met) as `keep` says, without
/// the session's cookie values; says where in the log.
pub(crate) fn keep_answer(
    keep: Keep<'_>,
    strategy: &'static str,
    aweme_id: &str,
    session: &Session<'_>,
) {
    let Some(page) = session.last_answer() else {
        return;
    };
    let cookies: Vec<&str> = session.cookie_values().collect();
    let mut answer = Answer {
        strategy,
        aweme_id,
        what: "",
        page,
    };
    let kept = match keep {
        Keep::Always(dir, what) => {
            answer.what = what;
            save(dir, &answer, &cookies).map(Some)
        }
        Keep::Drift(keeper, what) => {
            answer.what = what;
            keeper.keep(&answer, &cookies)
        }
    };
    match kept {
        Ok(Some(path)) => tracing::info!(
            strategy,
            path = %path.display(),
            "kept Douyin's answer (secrets and cookie values removed) for the parser's fix"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(strategy, error = %e, "could not keep Douyin's answer"),
    }
}

/// The `.json` files in `dir` (none when it does not exist).
fn kept_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    })
}

/// Writes `answer` to `dir` (created if missing) as one JSON file, whole or not at all (a
/// temp file renamed into place); returns its path.
pub fn save(dir: &Path, answer: &Answer<'_>, cookie_values: &[&str]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let clean = |text: &str| redact(text, cookie_values);
    let page = answer.page;
    let headers: Vec<_> = page
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name.eq_ignore_ascii_case("set-cookie") {
                set_cookie_without_value(value)
            } else {
                clean(value)
            };
            json!([name, value])
        })
        .collect();
    let record = json!({
        "saved_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "strategy": answer.strategy,
        "aweme_id": answer.aweme_id,
        "what": answer.what,
        "request": { "method": "GET", "url": clean(page.url.as_str()) },
        "response": { "status": page.status, "headers": headers },
        "body": clean(&page.body),
    });
    // The sequence keeps two answers of one millisecond apart.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = format!(
        "{stamp}-{n}-{}-{}.json",
        answer.strategy,
        safe_part(answer.aweme_id)
    );
    let mut tmp = tempfile::Builder::new()
        .prefix(".drift-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &record)?;
    tmp.write_all(b"\n")?;
    let path = dir.join(name);
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// `text` without the configured secrets and without these cookie values.
fn redact(text: &str, cookie_values: &[&str]) -> String {
    let mut out = crate::redact::scrub(text).into_owned();
    for value in cookie_values {
        let value = value.trim();
        if value.len() >= MIN_COOKIE_VALUE && out.contains(value) {
            out = out.replace(value, COOKIE);
        }
    }
    out
}

/// A `Set-Cookie` value with its cookie's value taken out (`name=<cookie>; Path=/; ...`).
fn set_cookie_without_value(value: &str) -> String {
    let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
    let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
    if attributes.is_empty() {
        format!("{name}={COOKIE}")
    } else {
        format!("{name}={COOKIE};{attributes}")
    }
}

/// `s` fit for a file name: ASCII letters, digits, `-` and `_`, at most 40 of them.
fn safe_part(s: &str) -> String {
    let part: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    if part.is_empty() { "post".into() } else { part }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Page {
        Page {
            url: "https://www.iesdouyin.com/share/video/1/?token=tok-abcdef-123"
                .parse()
                .unwrap(),
            status: 200,
            location: None,
            headers: vec![
                ("content-type".into(), "text/html".into()),
                (
                    "set-cookie".into(),
                    "ttwid=tw-value-0123456789; Path=/; HttpOnly".into(),
                ),
            ],
            body: body.into(),
        }
    }

    fn answer<'a>(strategy: &'static str, page: &'a Page) -> Answer<'a> {
        Answer {
            strategy,
            aweme_id: "7412345678901234567",
            what: "no window._ROUTER_DATA",
            page,
        }
    }

    #[test]
    fn a_kept_answer_has_no_cookie_value_and_names_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = page("<html>tw-value-0123456789 and tok-abcdef-123</html>");
        let cookies = ["tw-value-0123456789", "tok-abcdef-123", "1"];
        let path = save(dir.path(), &answer("share-page", &p), &cookies).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for secret in ["tw-value-0123456789", "tok-abcdef-123"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["strategy"], "share-page");
        assert_eq!(v["what"], "no window._ROUTER_DATA");
        assert_eq!(v["response"]["status"], 200);
        assert_eq!(
            v["response"]["headers"][1],
            json!(["set-cookie", "ttwid=<cookie>; Path=/; HttpOnly"])
        );
        assert_eq!(v["body"], "<html><cookie> and <cookie></html>");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.ends_with("-share-page-7412345678901234567.json"),
            "{name}"
        );
        // Nothing else in the folder: the temp file became the file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn one_per_strategy_per_interval_and_a_bounded_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = page("<html></html>");
        let keeper = DriftKeeper::new(dir.path().join("drift"), Duration::from_secs(3600), 2);
        assert!(
            keeper
                .keep(&answer("share-page", &p), &[])
                .unwrap()
                .is_some()
        );
        assert!(
            keeper
                .keep(&answer("share-page", &p), &[])
                .unwrap()
                .is_none()
        );
        assert!(keeper.keep(&answer("iteminfo", &p), &[]).unwrap().is_some());
        // A fresh keeper (a restarted worker) still stops at the folder's bound.
        let again = DriftKeeper::new(dir.path().join("drift"), Duration::from_secs(3600), 2);
        assert!(
            again
                .keep(&answer("slidesinfo", &p), &[])
                .unwrap()
                .is_none()
        );
        assert_eq!(kept_files(keeper.dir()), 2);
        // No interval: every answer, up to the bound.
        let dir = tempfile::tempdir().unwrap();
        let all = DriftKeeper::new(dir.path().into(), Duration::ZERO, 3);
        for _ in 0..5 {
            let _ = all.keep(&answer("share-page", &p), &[]).unwrap();
        }
        assert_eq!(kept_files(dir.path()), 3);
    }

    #[test]
    fn file_names_take_only_safe_characters() {
        assert_eq!(safe_part("../../etc/passwd"), "etcpasswd");
        assert_eq!(safe_part("///"), "post");
    }
}
