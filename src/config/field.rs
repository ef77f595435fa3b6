//! Reading one raw setting, so that an error names where its value came from: the variable
//! (`MAX_CONCURRENT=abc: ...`) or the flag (`--max-concurrent=abc: ...`), and never echoes a
//! secret.
//!
//! What to call a setting and its default are read from its clap declaration (the group's
//! `Args` struct), so they are written once: the environment variable, the flag, the default
//! (which `--help` prints too) and whether its value is a secret (`hide_env_values`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};
use url::Url;

use super::{ConfigError, RawSettings};

/// What the clap declaration says of one setting.
struct Spec {
    env: String,
    flag: String,
    default: Option<String>,
    secret: bool,
}

/// The declarations of every setting, by id (the field name).
fn specs() -> &'static HashMap<String, Spec> {
    static SPECS: OnceLock<HashMap<String, Spec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        RawSettings::augment_args(Command::new("douyin-worker"))
            .get_arguments()
            .map(|a| {
                let id = a.get_id().to_string();
                let spec = Spec {
                    env: a
                        .get_env()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_else(|| id.to_ascii_uppercase()),
                    flag: format!("--{}", a.get_long().unwrap_or(&id)),
                    default: a
                        .get_default_values()
                        .first()
                        .map(|d| d.to_string_lossy().into_owned()),
                    secret: a.is_hide_env_values_set(),
                };
                (id, spec)
            })
            .collect()
    })
}

/// Where the raw settings came from: a parsed command line, or none (settings built in code,
/// as tests do: variables are named then).
#[derive(Clone, Copy, Default)]
pub struct Fields<'m> {
    matches: Option<&'m ArgMatches>,
}

impl<'m> Fields<'m> {
    /// The origins of a parsed command line.
    pub fn new(matches: Option<&'m ArgMatches>) -> Self {
        Self { matches }
    }

    /// The setting `id` (its field name) with its raw `value`.
    pub(crate) fn get<'v>(&self, id: &str, value: &'v Option<String>) -> Field<'v> {
        let spec = specs()
            .get(id)
            .unwrap_or_else(|| panic!("no setting is declared with the id {id}"));
        let from_flag = self
            .matches
            .and_then(|m| m.value_source(id))
            .is_some_and(|s| s == ValueSource::CommandLine);
        Field {
            value: value.as_deref(),
            origin: if from_flag {
                spec.flag.clone()
            } else {
                spec.env.clone()
            },
            default: spec.default.as_deref(),
            secret: spec.secret,
        }
    }
}

/// `field!(fields, args.max_concurrent)`: the field of a group's `Args` by its name.
macro_rules! field {
    ($fields:expr, $args:ident . $name:ident) => {
        $fields.get(stringify!($name), &$args.$name)
    };
}
pub(crate) use field;

/// One raw setting, with the name to blame for it and its declared default.
pub(crate) struct Field<'v> {
    value: Option<&'v str>,
    origin: String,
    default: Option<&'static str>,
    secret: bool,
}

impl<'v> Field<'v> {
    /// An error naming the setting and, unless it is a secret, its value.
    pub fn fail(&self, why: impl fmt::Display) -> ConfigError {
        if self.secret {
            ConfigError(format!("{}: {why}", self.origin))
        } else {
            ConfigError(format!(
                "{}={}: {why}",
                self.origin,
                self.value.unwrap_or_default()
            ))
        }
    }

    /// The value given (flag or variable), trimmed; `None` when unset or empty.
    pub fn given(&self) -> Option<&'v str> {
        self.value.map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether a value was given at all, even an empty one.
    pub(crate) fn is_set(&self) -> bool {
        self.value.is_some()
    }

    /// The value given, else the declared default.
    pub fn present(&self) -> Option<&'v str> {
        self.given().or(self.default)
    }

    /// A whole number from `min` to `max`: the value given, else the declared default.
    pub fn number<T>(&self, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let raw = self
            .present()
            .ok_or_else(|| self.fail("a value is needed"))?;
        self.number_from(raw, min, max)
    }

    /// A whole number from `min` to `max`, or `default` when none is given (for settings
    /// whose default is computed from others).
    pub(crate) fn number_or<T>(&self, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        match self.given() {
            Some(raw) => self.number_from(raw, min, max),
            None => Ok(default),
        }
    }

    fn number_from<T>(&self, raw: &str, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        match raw.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(self.fail(format_args!("expected a whole number from {min} to {max}"))),
        }
    }

    /// A number of seconds from `min` to `max`.
    pub fn seconds(&self, min: u64, max: u64) -> Result<Duration, ConfigError> {
        self.number(min, max).map(Duration::from_secs)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`): the value given, else the
    /// declared default.
    pub fn boolean(&self) -> Result<bool, ConfigError> {
        let raw = self
            .present()
            .ok_or_else(|| self.fail("a value is needed"))?;
        self.boolean_from(raw)
    }

    /// A boolean, or `default` when none is given.
    pub(crate) fn boolean_or(&self, default: bool) -> Result<bool, ConfigError> {
        match self.given() {
            Some(raw) => self.boolean_from(raw),
            None => Ok(default),
        }
    }

    fn boolean_from(&self, raw: &str) -> Result<bool, ConfigError> {
        match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(self.fail("expected true or false")),
        }
    }

    /// An `http://` or `https://` URL with a host, if one is given.
    pub(crate) fn http_url(&self) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.given() else {
            return Ok(None);
        };
        let url = Url::parse(raw).map_err(|e| self.fail(format_args!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.fail("expected an http:// or https:// URL with a host"));
        }
        Ok(Some(url))
    }

    /// One of `choices` (case-insensitive, the given value else the declared default),
    /// returned in lower case.
    pub(crate) fn one_of(&self, choices: &[&str]) -> Result<String, ConfigError> {
        let raw = self
            .present()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| self.fail("a value is needed"))?;
        if choices.contains(&raw.as_str()) {
            Ok(raw)
        } else {
            Err(self.fail(format_args!("expected {}", either(choices))))
        }
    }
}

/// `a, b or c`.
fn either(choices: &[&str]) -> String {
    match choices.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
