//! The `.env` file: read whole or not at all.
//!
//! The old worker read a `.env` in the working directory, and so does this one (the nearest
//! one found from the working directory up, as before); real environment variables win over
//! it. A line that cannot be parsed used to be logged with its value (a pasted cookie) while
//! every setting after it was dropped, so a worker meant for PostgreSQL ran on SQLite. Now the
//! whole file is checked before anything is loaded, and a bad line stops start-up with its
//! file, line number and variable name, never its value.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why the `.env` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    /// The file.
    pub path: PathBuf,
    /// The line the bad entry starts on, from 1, when known.
    pub line: Option<usize>,
    /// The variable the bad entry sets, when its name could be read.
    pub variable: Option<String>,
    /// What is wrong, without the value.
    pub reason: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(var) = &self.variable {
            write!(f, " ({var})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for EnvFileError {}

/// The `.env` of the working directory or, failing that, of the nearest parent folder.
pub fn find() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(".env"))
        .find(|p| p.is_file())
}

/// Checks the whole `.env` (if there is one) and then loads it: variables already set keep
/// their values. Returns the file loaded.
pub fn load() -> Result<Option<PathBuf>, EnvFileError> {
    let Some(path) = find() else {
        return Ok(None);
    };
    check(&path)?;
    dotenvy::from_path(&path).map_err(|e| describe(&path, None, &e))?;
    Ok(Some(path))
}

/// Parses every entry of `path` without loading any; the first bad one is the error.
pub fn check(path: &Path) -> Result<(), EnvFileError> {
    let text = std::fs::read(path).map_err(|e| EnvFileError {
        path: path.to_owned(),
        line: None,
        variable: None,
        reason: format!("cannot be read ({e})"),
    })?;
    let text = String::from_utf8(text).map_err(|e| EnvFileError {
        path: path.to_owned(),
        line: Some(line_of_offset(e.as_bytes(), e.utf8_error().valid_up_to())),
        variable: None,
        reason: "is not UTF-8 text".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        if let Err(e) = item {
            return Err(describe(path, Some(text), &e));
        }
    }
    Ok(())
}

/// The error for `e`, with the line and variable found in `text`; never the value.
fn describe(path: &Path, text: Option<&str>, e: &dotenvy::Error) -> EnvFileError {
    let mut out = EnvFileError {
        path: path.to_owned(),
        line: None,
        variable: None,
        reason: String::new(),
    };
    match e {
        // `entry` is the unparsed rest of the entry: the whole entry, or only its value.
        dotenvy::Error::LineParse(entry, _) => {
            let head = entry.trim_start();
            if let Some((line, text_line)) = text.and_then(|t| locate(t, head)) {
                out.line = Some(line);
                out.variable = variable_name(text_line.trim_start());
            }
            out.reason = if ends_open(head) || out.variable.is_some() && ends_open_value(head) {
                "a quote is opened and never closed".into()
            } else {
                "cannot be parsed: put a value holding spaces, `;`, `#` or quotes in double \
                 quotes, e.g. DOUYIN_COOKIE=\"name=value; other=value\""
                    .into()
            };
        }
        dotenvy::Error::Io(io) => out.reason = format!("cannot be read ({io})"),
        // Only from a `${VAR}` substitution of a variable that is not Unicode.
        dotenvy::Error::EnvVar(_) => {
            out.reason = "refers to a variable whose value is not text".into();
        }
        other => out.reason = format!("cannot be used ({other})").replace(['\n', '\r'], " "),
    }
    out
}

/// The line number and text of the first line (not a comment) where `part` occurs.
fn locate<'t>(text: &'t str, part: &str) -> Option<(usize, &'t str)> {
    let part = part.lines().next().unwrap_or(part);
    if part.is_empty() {
        return None;
    }
    text.match_indices(part).find_map(|(at, _)| {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = &text[start..end];
        (!line.trim_start().starts_with('#')).then(|| (line_of_offset(text.as_bytes(), at), line))
    })
}

/// The name an entry sets, if it starts like `NAME=` or `export NAME=`.
fn variable_name(entry: &str) -> Option<String> {
    let entry = entry.strip_prefix("export ").unwrap_or(entry).trim_start();
    let name: String = entry
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect();
    let rest = entry[name.len()..].trim_start();
    (!name.is_empty() && rest.starts_with('=')).then_some(name)
}

/// Whether an entry's quotes are unbalanced (it ran to the end of the file).
fn ends_open(entry: &str) -> bool {
    ends_open_value(entry.split_once('=').map_or("", |(_, v)| v))
}

/// Whether a value opens a quote it never closes.
fn ends_open_value(value: &str) -> bool {
    let value = value.trim_start();
    let Some(q) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
        return false;
    };
    let mut escaped = false;
    for c in value.chars().skip(1) {
        match c {
            '\\' if !escaped => escaped = true,
            c if c == q && !escaped => return false,
            _ => escaped = false,
        }
    }
    true
}

/// The 1-based line number of byte offset `at`.
fn line_of_offset(text: &[u8], at: usize) -> usize {
    text[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<(), EnvFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, text).unwrap();
        check(&path)
    }

    #[test]
    fn an_unquoted_cookie_names_its_line_and_variable_but_not_its_value() {
        let e = check_text(
            "# settings\nMAX_CONCURRENT=4\n\nDOUYIN_COOKIE=sessionid=s3cr3tvalue; ttwid=abc\nDATABASE_URL=postgres://u:pw@h/db\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.variable.as_deref(), Some("DOUYIN_COOKIE"));
        let shown = e.to_string();
        assert!(
            shown.contains(".env line 4 (DOUYIN_COOKIE): cannot be parsed"),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3tvalue"), "{shown}");
        assert!(!shown.contains("ttwid"), "{shown}");
    }

    #[test]
    fn an_unterminated_quote_is_named_as_such() {
        let e = check_text("A=1\nexport SUPABASE_SERVICE_ROLE_KEY=\"sb_secret_abcdef\nB=2\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.variable.as_deref(), Some("SUPABASE_SERVICE_ROLE_KEY"));
        assert!(e.reason.contains("never closed"), "{e}");
        assert!(!e.to_string().contains("sb_secret_abcdef"), "{e}");
    }

    #[test]
    fn a_line_without_a_name_still_gets_its_number() {
        let e = check_text("A=1\n=oops secret-ish\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.variable, None);
        assert!(!e.to_string().contains("secret-ish"), "{e}");
    }

    #[test]
    fn quoted_values_with_spaces_and_semicolons_are_fine() {
        check_text(
            "DOUYIN_COOKIE=\"sessionid=abc; ttwid=1%7Cxyz\"\nTITLE='a b # c'\nexport DEBUG=true # on\n",
        )
        .unwrap();
    }

    #[test]
    fn a_file_that_is_not_text_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, b"A=1\nB=\xff\xfe\n").unwrap();
        let e = check(&path).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.reason.contains("UTF-8"), "{e}");
    }
}
