//! Scraping helpers for HTML pages: the attributes of a tag found by its id, and a
//! JavaScript object literal read as JSON.

use serde_json::Value;

/// The first JSON value at the start of `text`, tolerating a JavaScript `undefined`.
pub(super) fn js_object(text: &str) -> Option<Value> {
    let first = |t: &str| {
        serde_json::Deserializer::from_str(t)
            .into_iter::<Value>()
            .next()
    };
    if let Some(Ok(value)) = first(text) {
        return Some(value);
    }
    // Only the first value is read, so what follows it may be rewritten harmlessly.
    first(&undefined_to_null(text))?.ok()
}

/// Replaces bare `undefined` tokens outside strings with `null`.
fn undefined_to_null(js: &str) -> String {
    let mut out = String::with_capacity(js.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = js;
    while let Some(c) = rest.chars().next() {
        if in_string {
            (escaped, in_string) = match c {
                _ if escaped => (false, true),
                '\\' => (true, true),
                '"' => (false, false),
                _ => (false, true),
            };
        } else if c == '"' {
            in_string = true;
        } else if rest.starts_with("undefined")
            && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_' || p == '$')
            && !rest[9..].starts_with(|n: char| n.is_alphanumeric() || n == '_' || n == '$')
        {
            out.push_str("null");
            rest = &rest[9..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The attributes (names lowercased) of the first tag whose `id` is `id` (any case).
pub(super) fn element_attributes(html: &str, id: &str) -> Vec<(String, String)> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let wanted = id.to_ascii_lowercase();
    for (pos, _) in lower.match_indices(&wanted) {
        let Some(start) = html[..pos].rfind('<') else {
            continue;
        };
        let Some(inner) = tag_inner(&html[start + 1..]) else {
            continue;
        };
        if start + 1 + inner.len() < pos {
            continue; // the id is not inside this tag
        }
        let attrs = parse_attributes(inner);
        if attrs
            .iter()
            .any(|(k, v)| k == "id" && v.eq_ignore_ascii_case(id))
        {
            return attrs;
        }
    }
    Vec::new()
}

/// The text of a tag up to its closing `>`, skipping `>` inside quoted attribute values.
fn tag_inner(from: &str) -> Option<&str> {
    let mut quote: Option<char> = None;
    let mut after_equals = false;
    for (i, c) in from.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '>' => return Some(&from[..i]),
            None if (c == '"' || c == '\'') && after_equals => quote = Some(c),
            None => {}
        }
        if !c.is_whitespace() {
            after_equals = c == '=';
        }
    }
    None
}

/// `tag a=1 b="2" c='3' d` → `[(a,1), (b,2), (c,3), (d,"")]`, names lowercased.
fn parse_attributes(tag: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = tag.chars().collect();
    let mut i = chars
        .iter()
        .position(|c| c.is_whitespace() || *c == '/')
        .unwrap_or(chars.len());
    let mut attrs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == '/') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let name_start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '=' | '/') {
            i += 1;
        }
        let name: String = chars[name_start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        let mut value = String::new();
        if j < chars.len() && chars[j] == '=' {
            i = j + 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| *c == q)
                    .map_or(chars.len(), |p| i + 1 + p);
                value = chars[i + 1..end].iter().collect();
                i = (end + 1).min(chars.len());
            } else {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    i += 1;
                }
                value = chars[start..i].iter().collect();
            }
        }
        if !name.is_empty() {
            attrs.push((name, decode_entities(&value)));
        }
    }
    attrs
}

fn decode_entities(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
