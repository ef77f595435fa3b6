//! Upstream text made safe to log or store: the configured secrets scrubbed out, control
//! characters escaped.
//!
//! Answers from Supabase, a proxy or Douyin end up in errors, logs, `last_error` and
//! terminals. A proxy that echoes the request headers puts `Bearer <service key>` in its error
//! body; a page may echo the cookies it was sent; an `ESC[2J` in a share page rewrites the
//! operator's terminal when the excerpt is printed. So:
//!
//! - every secret the process is configured with is registered here when it is read
//!   (`config::Secret::new` registers itself; [`register_cookie`] and
//!   `register_url_password` add the parts a secret is sent as), and `scrub` replaces any
//!   of them in a text by `[redacted]`. The constructors of the error types that carry
//!   upstream text (`error::JobError`, `storage::StorageError`) scrub their
//!   message, and so does every excerpt;
//! - [`excerpt`] turns an upstream body into one short line: whitespace collapsed, control
//!   and bidirectional-override characters escaped as `\u{..}`, secrets scrubbed.
//!
//! The registry is process-wide and append-only: secrets come from the configuration once, at
//! start-up (and from the few clients tests build in-process).

use std::borrow::Cow;
use std::sync::RwLock;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// Shorter values are not scrubbed (a cookie value `1` would blank every digit); secrets
/// worth the name are longer.
const MIN_SECRET_CHARS: usize = 6;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret (and its percent-encoded and JSON-escaped forms, if different) so that
/// [`scrub`] removes it from any text. Values shorter than six characters are ignored.
pub(crate) fn register(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let encoded = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
    // As it appears inside a JSON string (a JSON log line, a JSON error body).
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_string();
    let mut list = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for s in [secret.to_string(), encoded, json] {
        if !list.contains(&s) {
            list.push(s);
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the values of a cookie string (`a=b; c=d`): they may come back one by one, in
/// another order, in a `Set-Cookie` or an echoed header.
pub fn register_cookie(cookie: &str) {
    register(cookie);
    for pair in cookie.split(';') {
        if let Some((_, value)) = pair.split_once('=') {
            register(value.trim().trim_matches('"'));
        }
    }
}

/// Registers the password of a URL (`postgres://user:PASSWORD@host/db`) and the values of
/// password-like query parameters (see [`is_secret_param`]), raw and decoded.
pub(crate) fn register_url_password(raw: &str) {
    let Ok(url) = url::Url::parse(raw) else {
        return;
    };
    if let Some(p) = url.password() {
        register(p);
        if let Ok(decoded) = percent_decode(p) {
            register(&decoded);
        }
    }
    for (k, v) in url.query_pairs() {
        if is_secret_param(&k) {
            register(&v);
        }
    }
}

/// Whether a URL query parameter holds a secret: `password`, `sslpassword`, or any name
/// containing `key`, `token`, `secret` or `password`.
pub(crate) fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "key", "token", "secret"]
        .iter()
        .any(|w| n.contains(w))
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    std::str::from_utf8(&bytes).map(str::to_owned)
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub(crate) fn scrub(text: &str) -> Cow<'_, str> {
    let list = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in list.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

/// [`scrub`] for an owned string (no copy when there is nothing to scrub).
pub(crate) fn scrub_owned(text: String) -> String {
    match scrub(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => s,
    }
}

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls (ESC, BEL, ...) and the
/// bidirectional overrides and isolates that make text read differently from what it is.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// One line of at most `max_chars` characters from an upstream `body`: whitespace collapsed
/// to single spaces, control characters escaped (`\u{1b}`), secrets scrubbed, `…` when cut.
pub fn excerpt(body: &str, max_chars: usize) -> String {
    // Enough of the head for any collapse of whitespace; escapes only lengthen.
    let head: String = body.chars().take(max_chars.saturating_mul(8)).collect();
    let mut line = String::with_capacity(head.len().min(max_chars * 4));
    let mut space = false;
    for c in head.chars() {
        if c.is_whitespace() {
            space = !line.is_empty();
            continue;
        }
        if space {
            line.push(' ');
            space = false;
        }
        if is_hazard(c) {
            line.extend(c.escape_unicode());
        } else {
            line.push(c);
        }
    }
    let line = scrub_owned(line);
    if line.chars().count() <= max_chars {
        return line;
    }
    let mut cut: String = line.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_scrubbed_in_any_position() {
        register("svc-key-0123456789abcdef");
        let text = "HTTP 502: echo: authorization: Bearer svc-key-0123456789abcdef; \
                    apikey=svc-key-0123456789abcdef";
        let out = scrub(text);
        assert!(!out.contains("svc-key-0123456789abcdef"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
        assert!(matches!(scrub("nothing secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn cookie_values_are_scrubbed_one_by_one_and_short_values_are_left() {
        register_cookie("sessionid=sess0123456789; ttwid=1%7Cabcdefghij; n=1");
        let echoed = "Set-Cookie: ttwid=1%7Cabcdefghij\nCookie: n=1; sessionid=sess0123456789";
        let out = scrub(echoed);
        assert!(!out.contains("sess0123456789"), "{out}");
        assert!(!out.contains("1%7Cabcdefghij"), "{out}");
        assert!(out.contains("n=1"), "a one-character value stays: {out}");
    }

    #[test]
    fn url_passwords_and_secret_parameters_are_registered_raw_and_decoded() {
        register_url_password(
            "postgres://u:p%40ss-w0rd-xyz@h/db?sslpassword=cert-pass-123&application_name=dw",
        );
        let out = scrub("auth failed for p@ss-w0rd-xyz and p%40ss-w0rd-xyz, cert-pass-123, dw");
        assert_eq!(
            out,
            "auth failed for [redacted] and [redacted], [redacted], dw"
        );
        assert!(is_secret_param("sslpassword"));
        assert!(is_secret_param("api_key"));
        assert!(is_secret_param("X-Token"));
        assert!(is_secret_param("client_secret"));
        assert!(!is_secret_param("sslmode"));
    }

    #[test]
    fn excerpts_escape_terminal_controls_and_collapse_whitespace() {
        let page = "<html>\n\t<title>\u{1b}[2J\u{1b}]0;pwned\u{7}</title>  \u{202e}gnp.exe\r\n";
        let out = excerpt(page, 200);
        assert!(!out.chars().any(is_hazard), "{out:?}");
        assert_eq!(
            out,
            "<html> <title>\\u{1b}[2J\\u{1b}]0;pwned\\u{7}</title> \\u{202e}gnp.exe"
        );
    }

    #[test]
    fn excerpts_are_cut_to_length_with_an_ellipsis() {
        let out = excerpt(&"页".repeat(5000), 200);
        assert_eq!(out.chars().count(), 200);
        assert!(out.ends_with('…'));
        assert_eq!(excerpt("  short  ", 200), "short");
        assert_eq!(excerpt("", 200), "");
    }

    #[test]
    fn excerpts_scrub_secrets() {
        register("cookie-value-abcdef123");
        let out = excerpt("<p>your cookie: cookie-value-abcdef123</p>", 200);
        assert_eq!(out, "<p>your cookie: [redacted]</p>");
    }
}
