//! Picking the record out of what the browser saw: the web detail API's answer
//! (`/aweme/v1/web/aweme/detail/`, `aweme_detail`), or the page itself (`_ROUTER_DATA`, or the
//! URL-encoded `<script id="RENDER_DATA">` of `www.douyin.com` whose aweme is camelCase).
//! Pure functions, tested on the recorded fixtures.

use serde_json::{Map, Value};

use crate::extract::aweme::{self, Aweme, ParseError};

/// The path of the web detail API the video page calls.
pub(crate) const DETAIL_PATH: &str = "/aweme/v1/web/aweme/detail/";

/// Whether a response URL is the web detail API (also through the `DOUYIN_UPSTREAM` rewrite,
/// where the path follows the host: `/www.douyin.com/aweme/v1/web/aweme/detail/`).
pub(crate) fn is_detail_url(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.contains(DETAIL_PATH)
}

/// The record in a captured detail answer.
pub fn detail_record(body: &str, aweme_id: &str) -> Result<Aweme, ParseError> {
    aweme::detail_record(body, aweme_id)
}

/// The record the page's HTML carries, if any: `Ok(None)` when the page has none (yet); the
/// captcha page is [`ParseError::Captcha`]; a post Douyin refuses is
/// [`ParseError::Unavailable`]. Other parse failures read as "nothing here": the page's own
/// scripts may still fetch the record.
pub(crate) fn page_record(html: &str, aweme_id: &str) -> Result<Option<Aweme>, ParseError> {
    if aweme::is_captcha_page(html) {
        return Err(ParseError::Captcha);
    }
    if html.contains("_ROUTER_DATA") {
        match aweme::share_page_record(html, aweme_id) {
            Ok(record) => return Ok(Some(record)),
            Err(e @ ParseError::Unavailable { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    let Some(data) = render_data(html) else {
        return Ok(None);
    };
    let Some(detail) = find_detail(&data, aweme_id) else {
        return Ok(None);
    };
    let Some(mut record) = Aweme::from_value(&normalise(detail)) else {
        return Ok(None);
    };
    match record.aweme_id.as_deref() {
        Some(id) if id != aweme_id => {
            return Err(ParseError::IdMismatch {
                wanted: aweme_id.to_string(),
                got: id.to_string(),
            });
        }
        Some(_) => {}
        None => record.aweme_id = Some(aweme_id.to_string()),
    }
    record.unwatermark();
    aweme::check_status(&record)?;
    Ok(Some(record))
}

/// The JSON of `<script id="RENDER_DATA" type="application/json">…</script>`: URL-encoded
/// (as `www.douyin.com` serves it) or plain.
pub(crate) fn render_data(html: &str) -> Option<Value> {
    let at = html
        .find("id=\"RENDER_DATA\"")
        .or_else(|| html.find("id='RENDER_DATA'"))
        .or_else(|| html.find("id=RENDER_DATA"))?;
    let rest = &html[at..];
    let body = &rest[rest.find('>')? + 1..];
    let body = body[..body.find("</script>")?].trim();
    let text = if body.starts_with('{') {
        body.to_string()
    } else {
        percent_decode(body)
    };
    serde_json::from_str(&text).ok()
}

/// `%XX` escapes decoded (as `decodeURIComponent`; `+` stays `+`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The aweme in RENDER_DATA: `app.videoDetail` (2023 on), `*.aweme.detail` (earlier), else
/// any object whose `awemeId`/`aweme_id` is the one asked for and that has a `video`.
fn find_detail<'a>(data: &'a Value, aweme_id: &str) -> Option<&'a Value> {
    fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a Value) -> bool) -> Option<&'a Value> {
        if f(v) {
            return Some(v);
        }
        match v {
            Value::Object(map) => map.values().find_map(|c| walk(c, f)),
            Value::Array(items) => items.iter().find_map(|c| walk(c, f)),
            _ => None,
        }
    }
    let known = walk(data, &mut |v| {
        v.get("videoDetail").is_some_and(Value::is_object)
            || v.pointer("/aweme/detail").is_some_and(Value::is_object)
    });
    if let Some(parent) = known {
        return parent
            .get("videoDetail")
            .filter(|d| d.is_object())
            .or_else(|| parent.pointer("/aweme/detail"));
    }
    walk(data, &mut |v| {
        let id = v.get("awemeId").or_else(|| v.get("aweme_id"));
        let id = id.and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        id.as_deref() == Some(aweme_id) && v.get("video").is_some_and(Value::is_object)
    })
}

/// A camelCase web aweme in the API's snake_case shape: keys renamed (`awemeId` →
/// `aweme_id`, `bitRateList` → `bit_rate`, `playAddrH264` → `play_addr_h264`, ...), play
/// addresses given as `[{src}]` turned into `{url_list}`, covers given as a URL string turned
/// into `{url_list: [URL]}`, and protocol-relative URLs made `https:`. A snake_case record
/// passes unchanged.
pub(crate) fn normalise(web: &Value) -> Value {
    match web {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                let key = snake_key(key);
                let value = match key.as_str() {
                    k if k.starts_with("play_addr") || k == "download_addr" => play_addr(value),
                    "cover" | "origin_cover" | "dynamic_cover" => cover(value),
                    _ => normalise(value),
                };
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::String(s) if s.starts_with("//") => Value::String(format!("https:{s}")),
        other => other.clone(),
    }
}

/// `playAddr: [{src}, ...]` (or a list of URLs) → `{url_list: [...]}`; objects are normalised.
fn play_addr(value: &Value) -> Value {
    let Value::Array(items) = value else {
        return normalise(value);
    };
    let urls: Vec<Value> = items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some(s.as_str()),
            other => other.get("src").and_then(Value::as_str),
        })
        .map(|u| normalise(&Value::String(u.to_string())))
        .collect();
    serde_json::json!({ "url_list": urls })
}

/// `cover: "//p3…"` → `{url_list: ["https://p3…"]}`; objects are normalised.
fn cover(value: &Value) -> Value {
    match value {
        Value::String(_) => serde_json::json!({ "url_list": [normalise(value)] }),
        other => normalise(other),
    }
}

/// `awemeId` → `aweme_id`; a few web names map to the API's own.
fn snake_key(key: &str) -> String {
    match key {
        "bitRateList" => return "bit_rate".into(),
        "playAddr265" | "playAddrH265" => return "play_addr_265".into(),
        "authorInfo" => return "author".into(),
        // Already snake_case (`url_list`, `HDR_type`) or not camelCase (`FPS`).
        _ if key.contains('_') || !key.starts_with(|c: char| c.is_ascii_lowercase()) => {
            return key.into();
        }
        _ => {}
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Cookie header for the downloader: the user's `DOUYIN_COOKIE` first, then the page's
/// cookies (as [`crate::extract::client::Session::cookie_header`] orders them). `None` when
/// both are empty.
pub(crate) fn cookie_header(user: Option<&str>, page: &[(String, String)]) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(user) = user.map(|u| u.trim().trim_end_matches(';').trim())
        && !user.is_empty()
    {
        parts.push(user.to_string());
    }
    parts.extend(
        page.iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, value)| format!("{name}={value}")),
    );
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `a=1; b=2` → `[(a, 1), (b, 2)]` (pairs without `=` or a name are skipped).
pub(crate) fn cookie_pairs(header: &str) -> Vec<(String, String)> {
    header
        .split(';')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Headless Chromium's User-Agent without the `Headless` mark that sites block on.
pub(crate) fn headful_user_agent(ua: &str) -> String {
    ua.replace("HeadlessChrome/", "Chrome/")
}
