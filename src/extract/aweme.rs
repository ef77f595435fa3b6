//! The tolerant model of Douyin's "aweme" record and the pure parsers of the pages and APIs
//! that carry it: the share page (`window._ROUTER_DATA`), the H5 item info, the slides info and
//! the web detail API.
//!
//! Douyin's shapes drift every few months, so the model is deliberately forgiving: every field
//! is optional, unknown fields are ignored, numbers may arrive as strings (and ids as numbers),
//! flags as `0`/`1` or booleans, and a field of an unexpected type reads as absent instead of
//! failing the whole record. The parsers tell apart a final answer ([`ParseError::Unavailable`]),
//! a passing refusal (captcha, empty body, `encrypt_data_miss`, another item) and an answer in a
//! shape none of them knows ([`ParseError::Drift`], with a short excerpt).

use serde_json::Value;

use crate::error::ErrorClass;

mod model;
mod page;
#[cfg(test)]
mod tests;

pub use model::*;
use model::{value_i64, value_string};
use page::{element_attributes, js_object};

/// Why a parser could not return a record.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Douyin says the item cannot be had (filtered, region blocked, deleted, private):
    /// permanent, with Douyin's reason.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Douyin's reason, readable.
        reason: String,
    },
    /// The anti-bot "验证码中间页" answered instead of content: transient.
    #[error("captcha page")]
    Captcha,
    /// An empty body: transient.
    #[error("empty answer")]
    Empty,
    /// H5 item info refused the request (missing or stale token): transient.
    #[error("encrypt_data_miss (status_code 11110)")]
    EncryptDataMiss,
    /// The answer is about another item: transient.
    #[error("answered for aweme {got}, not {wanted}")]
    IdMismatch {
        /// The id asked for.
        wanted: String,
        /// The id answered (`none` when the record carries none).
        got: String,
    },
    /// A non-zero `status_code`, or a success without a record: transient.
    #[error("status_code {code}: {message}")]
    Api {
        /// Douyin's `status_code`.
        code: i64,
        /// Douyin's `status_msg`, or what was missing.
        message: String,
    },
    /// The share page carries no record (the usual case since 2026-08): go on to the next
    /// strategy.
    #[error("no record in the share page")]
    NoRecord,
    /// A page or API answered in a shape no parser knows.
    #[error("unknown shape ({what}): {excerpt}")]
    Drift {
        /// What was expected and missing.
        what: String,
        /// The start of the answer, whitespace collapsed, at most 200 characters.
        excerpt: String,
    },
}

impl ParseError {
    /// Whether a retry can help: [`ParseError::Unavailable`] is permanent,
    /// [`ParseError::Drift`] is drift, everything else is transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            ParseError::Unavailable { .. } => ErrorClass::Permanent,
            ParseError::Drift { .. } => ErrorClass::Drift,
            _ => ErrorClass::Transient,
        }
    }

    fn drift(what: impl Into<String>, body: &str) -> Self {
        ParseError::Drift {
            what: what.into(),
            excerpt: excerpt(body),
        }
    }

    fn unavailable(reason: impl Into<String>) -> Self {
        ParseError::Unavailable {
            reason: reason.into(),
        }
    }
}

/// Longest excerpt kept in [`ParseError::Drift`], in characters.
pub const EXCERPT_CHARS: usize = 200;

/// The start of `body` on one line, at most [`EXCERPT_CHARS`] characters, control
/// characters escaped and secrets scrubbed ([`crate::redact::excerpt`]).
fn excerpt(body: &str) -> String {
    crate::redact::excerpt(body, EXCERPT_CHARS)
}

/// Whether `body` is ByteDance's captcha middle page ("验证码中间页") rather than content.
pub fn is_captcha_page(body: &str) -> bool {
    // JSON, or a page that carries data, is not a challenge (whatever a caption says, and
    // even if the page loads the captcha SDK).
    let start = body.trim_start();
    if start.starts_with('{') || start.starts_with('[') {
        return false;
    }
    if body.contains("_ROUTER_DATA") || body.contains("douyin_reflow_token") {
        return false;
    }
    [
        "验证码中间页",
        "TTGCaptcha",
        "verifycenter/captcha",
        "middle_page_loading",
    ]
    .iter()
    .any(|marker| body.contains(marker))
}

/// Empty and captcha answers, common to every parser.
fn refusal(body: &str) -> Result<(), ParseError> {
    if body.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    if is_captcha_page(body) {
        return Err(ParseError::Captcha);
    }
    Ok(())
}

/// The JSON of `window._ROUTER_DATA = {...}` in a share page (`\u002F` and other escapes are
/// plain JSON; a bare JavaScript `undefined` reads as `null`).
pub fn router_data(html: &str) -> Result<Value, ParseError> {
    const MARKER: &str = "_ROUTER_DATA";
    for (pos, _) in html.match_indices(MARKER) {
        let rest = html[pos + MARKER.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        if !rest.starts_with('{') {
            continue;
        }
        return js_object(rest).ok_or_else(|| ParseError::drift("_ROUTER_DATA is not JSON", rest));
    }
    Err(ParseError::drift("no window._ROUTER_DATA", html))
}

/// The record of a share page (`https://www.iesdouyin.com/share/{video|note}/{id}/`):
/// `loaderData["video_(id)/page" | "note_(id)/page" | any other page].videoInfoRes`.
/// [`ParseError::NoRecord`] when the page has no `videoInfoRes` (the usual case since
/// 2026-08); [`ParseError::Unavailable`] when `filter_list` names the item. Watermarked
/// `playwm` URLs come back as `play`.
pub fn share_page_record(html: &str, aweme_id: &str) -> Result<Aweme, ParseError> {
    refusal(html)?;
    let new_style = || reflow_tokens(html).is_some();
    let router = match router_data(html) {
        Ok(router) => router,
        Err(_) if new_style() => return Err(ParseError::NoRecord),
        Err(e) => return Err(e),
    };
    let Some(info) = video_info_res(&router) else {
        if router.get("loaderData").is_some_and(Value::is_object) || new_style() {
            return Err(ParseError::NoRecord);
        }
        return Err(ParseError::drift(
            "_ROUTER_DATA without loaderData",
            &router.to_string(),
        ));
    };
    match pick(info, "item_list", aweme_id, false)? {
        Picked::Found(aweme) => finish(*aweme),
        Picked::EmptyList | Picked::NoList => Err(ParseError::NoRecord),
    }
}

/// `loaderData[...].videoInfoRes`, the known page keys first.
fn video_info_res(router: &Value) -> Option<&Value> {
    let loader = router.get("loaderData")?.as_object()?;
    fn info(page: &Value) -> Option<&Value> {
        page.get("videoInfoRes").filter(|v| v.is_object())
    }
    ["video_(id)/page", "note_(id)/page"]
        .iter()
        .filter_map(|key| loader.get(*key))
        .chain(
            loader
                .iter()
                .filter(|(k, _)| k.ends_with("/page"))
                .map(|(_, v)| v),
        )
        .chain(loader.values())
        .find_map(info)
}

/// The tokens the post-2026-08 share page carries for the H5 item info call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReflowTokens {
    /// `xsstoken` of `div#douyin_reflow_token`.
    pub xsstoken: String,
    /// `webId` of `div#douyin_reflow_webId`.
    pub web_id: String,
    /// `usercip` of `div#douyin_reflow_webId`, when present.
    pub user_cip: Option<String>,
}

/// Reads `<div id=douyin_reflow_token xsstoken=...>` and `<div id=douyin_reflow_webId
/// webId=... usercip=...>`: attributes quoted with `"`, `'` or not at all, in any order,
/// names in any case. `None` unless both `xsstoken` and `webId` are present and non-empty.
pub fn reflow_tokens(html: &str) -> Option<ReflowTokens> {
    let mut attrs = element_attributes(html, "douyin_reflow_token");
    attrs.extend(element_attributes(html, "douyin_reflow_webId"));
    let get = |name: &str| {
        attrs
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    };
    Some(ReflowTokens {
        xsstoken: get("xsstoken")?,
        web_id: get("webId")?,
        user_cip: get("usercip"),
    })
}

/// The record of the H5 item info API (`/web/api/v2/aweme/iteminfo/`): `status_code` 0 and
/// `item_list[0].aweme_id == aweme_id`. 11110 is [`ParseError::EncryptDataMiss`].
pub fn iteminfo_record(body: &str, aweme_id: &str) -> Result<Aweme, ParseError> {
    let json = parse_json(body, "iteminfo answer is not JSON")?;
    api_status(&json)?;
    match pick(&json, "item_list", aweme_id, true)? {
        Picked::Found(aweme) => finish(*aweme),
        Picked::EmptyList => Err(api_empty("empty item_list")),
        Picked::NoList => Err(ParseError::drift("iteminfo without item_list", body)),
    }
}

/// The record of the slides info API (`/web/api/v2/aweme/slidesinfo/`): `aweme_details[0]`.
pub fn slidesinfo_record(body: &str, aweme_id: &str) -> Result<Aweme, ParseError> {
    let json = parse_json(body, "slidesinfo answer is not JSON")?;
    api_status(&json)?;
    match pick(&json, "aweme_details", aweme_id, false)? {
        Picked::Found(aweme) => finish(*aweme),
        Picked::EmptyList => Err(api_empty("empty aweme_details")),
        Picked::NoList => Err(ParseError::drift("slidesinfo without aweme_details", body)),
    }
}

/// The record of the web detail API (`/aweme/v1/web/aweme/detail/`): `aweme_detail`, or
/// `filter_detail` for a blocked item (`copyright_foreign` reads "region blocked").
pub fn detail_record(body: &str, aweme_id: &str) -> Result<Aweme, ParseError> {
    let json = parse_json(body, "detail answer is not JSON")?;
    api_status(&json)?;
    // Some relays wrap the answer in `data`.
    let root = match json.get("data") {
        Some(data) if json.get("aweme_detail").is_none() && json.get("filter_detail").is_none() => {
            api_status(data)?;
            data
        }
        _ => &json,
    };
    let no_record = !root.get("aweme_detail").is_some_and(Value::is_object);
    if let Some(reason) = filtered(root, aweme_id, no_record) {
        return Err(ParseError::unavailable(reason));
    }
    match root.get("aweme_detail") {
        Some(detail) if detail.is_object() => {
            let aweme = Aweme::from_value(detail).unwrap_or_default();
            finish(same_id(aweme, aweme_id, false)?)
        }
        _ => {
            if let Some(other) = root
                .pointer("/filter_detail/aweme_id")
                .and_then(value_string)
            {
                return Err(ParseError::IdMismatch {
                    wanted: aweme_id.to_string(),
                    got: other,
                });
            }
            match root.get("aweme_detail") {
                Some(_) => Err(api_empty("aweme_detail is null")),
                None => Err(ParseError::drift(
                    "detail without aweme_detail or filter_detail",
                    body,
                )),
            }
        }
    }
}

/// Permanent refusals recorded in the item itself: deleted, prohibited, private.
pub fn check_status(aweme: &Aweme) -> Result<(), ParseError> {
    let Some(status) = &aweme.status else {
        return Ok(());
    };
    if status.is_delete == Some(true) {
        return Err(ParseError::unavailable("deleted"));
    }
    if status.is_prohibited == Some(true) {
        return Err(ParseError::unavailable("prohibited"));
    }
    if status.private_status.is_some_and(|p| p != 0) {
        return Err(ParseError::unavailable("private"));
    }
    Ok(())
}

fn parse_json(body: &str, what: &str) -> Result<Value, ParseError> {
    refusal(body)?;
    match serde_json::from_str::<Value>(body.trim()) {
        Ok(value) if value.is_object() => Ok(value),
        _ => Err(ParseError::drift(what, body)),
    }
}

fn api_empty(message: &str) -> ParseError {
    ParseError::Api {
        code: 0,
        message: message.to_string(),
    }
}

/// A non-zero `status_code` (11110 / `encrypt_data_miss` apart).
fn api_status(json: &Value) -> Result<(), ParseError> {
    let code = json.get("status_code").and_then(value_i64);
    let message = ["status_msg", "message", "msg"].iter().find_map(|k| {
        json.get(*k)
            .and_then(value_string)
            .filter(|m| !m.is_empty())
    });
    if code == Some(11110) || message.as_deref() == Some("encrypt_data_miss") {
        return Err(ParseError::EncryptDataMiss);
    }
    match code {
        None | Some(0) => Ok(()),
        Some(code) => Err(ParseError::Api {
            code,
            message: message.unwrap_or_else(|| "(no message)".into()),
        }),
    }
}

enum Picked {
    Found(Box<Aweme>),
    EmptyList,
    NoList,
}

/// The record for `aweme_id` in `container[list_key]`, after the `filter_list` check.
/// `strict`: a record without an id is a mismatch (else it is taken to be the one asked for).
fn pick(
    container: &Value,
    list_key: &str,
    aweme_id: &str,
    strict: bool,
) -> Result<Picked, ParseError> {
    let items = container.get(list_key).and_then(Value::as_array);
    let empty = items.is_none_or(|items| items.is_empty());
    if let Some(reason) = filtered(container, aweme_id, empty) {
        return Err(ParseError::unavailable(reason));
    }
    let Some(items) = items else {
        return Ok(Picked::NoList);
    };
    let Some(first) = items.first() else {
        return Ok(Picked::EmptyList);
    };
    let matching = items
        .iter()
        .find(|item| item_id(item).as_deref() == Some(aweme_id));
    let item = matching.unwrap_or(first);
    let Some(aweme) = Aweme::from_value(item) else {
        return Err(ParseError::drift(
            format!("{list_key}[0] is not an object"),
            &item.to_string(),
        ));
    };
    same_id(aweme, aweme_id, strict).map(|a| Picked::Found(Box::new(a)))
}

fn same_id(mut aweme: Aweme, aweme_id: &str, strict: bool) -> Result<Aweme, ParseError> {
    match aweme.aweme_id.as_deref().map(str::trim) {
        Some(got) if got == aweme_id => Ok(aweme),
        Some(got) if !got.is_empty() => Err(ParseError::IdMismatch {
            wanted: aweme_id.to_string(),
            got: got.to_string(),
        }),
        _ if strict => Err(ParseError::IdMismatch {
            wanted: aweme_id.to_string(),
            got: "none".into(),
        }),
        _ => {
            aweme.aweme_id = Some(aweme_id.to_string());
            Ok(aweme)
        }
    }
}

fn finish(mut aweme: Aweme) -> Result<Aweme, ParseError> {
    aweme.unwatermark();
    check_status(&aweme)?;
    Ok(aweme)
}

fn item_id(item: &Value) -> Option<String> {
    item.get("aweme_id").and_then(value_string)
}

/// Douyin's reason when `filter_list[]` / `filter_detail` names the item (or, when no
/// record came back, names no item at all).
fn filtered(container: &Value, aweme_id: &str, no_record: bool) -> Option<String> {
    let list = container
        .get("filter_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let detail = container.get("filter_detail").into_iter();
    list.chain(detail)
        .filter(|entry| entry.is_object())
        .find_map(|entry| match item_id(entry) {
            Some(id) if id == aweme_id => Some(filter_reason(entry)),
            None if no_record => Some(filter_reason(entry)),
            _ => None,
        })
}

fn filter_reason(entry: &Value) -> String {
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            entry
                .get(*k)
                .and_then(value_string)
                .filter(|s| !s.trim().is_empty())
        })
    };
    let reason = text(&["filter_reason", "reason"]);
    let message = text(&["detail_msg", "notice", "filter_msg", "msg"]);
    match (reason, message) {
        (Some(r), m) if r == "copyright_foreign" => match m {
            Some(m) => format!("region blocked (copyright_foreign): {m}"),
            None => "region blocked (copyright_foreign)".to_string(),
        },
        (Some(r), Some(m)) => format!("{m} ({r})"),
        (Some(r), None) => r,
        (None, Some(m)) => m,
        (None, None) => "filtered by Douyin".to_string(),
    }
}
