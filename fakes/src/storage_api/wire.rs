//! Small helpers of the Storage emulator: encodings and the error answers of the contract.

use super::*;

// ---------------------------------------------------------------------------------------------
// Small helpers

pub(super) fn js<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("serialisable")
}

/// A JSON object with keys in the given order (values already serialised).
pub(super) fn obj(fields: &[(&str, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&js(k));
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    s
}

pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The emulator's ETag (see the module documentation): quoted, MD5-shaped, not a content hash
/// any client computes.
pub(super) fn etag_of(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"storage-api-emulator-etag\0");
    h.update(data);
    format!("\"{}\"", &hex(&h.finalize())[..32])
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

pub(super) fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `bucket/key…` → (bucket, key), both percent-decoded; the key may be empty.
pub(super) fn split_object_path(p: &str) -> (String, String) {
    match p.split_once('/') {
        Some((b, k)) => (percent_decode(b), percent_decode(k)),
        None => (percent_decode(p), String::new()),
    }
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn upsert(headers: &HeaderMap) -> bool {
    header(headers, "x-upsert") == Some("true")
}

pub(super) fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    for (k, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    r
}

pub(super) fn json_resp(status: u16, body: String) -> Response {
    respond(status, &[("content-type", JSON_UTF8.into())], body)
}

pub(super) fn ok_json(body: String) -> Response {
    json_resp(200, body)
}

/// A REST error: HTTP 400 with the real status as a string in the body (500 and 429 keep
/// their status, as in the contract's table).
pub(super) fn rest_error(status_code: &str, error: &str, message: &str, code: &str) -> Response {
    let http = match status_code {
        "500" => 500,
        "429" => 429,
        _ => 400,
    };
    json_resp(
        http,
        obj(&[
            ("statusCode", js(status_code)),
            ("error", js(error)),
            ("message", js(message)),
            ("code", js(code)),
        ]),
    )
}

pub(super) fn no_such_bucket() -> Response {
    rest_error(
        "404",
        "Bucket not found",
        "Bucket not found",
        "NoSuchBucket",
    )
}

pub(super) fn no_such_key() -> Response {
    rest_error("404", "not_found", "Object not found", "NoSuchKey")
}

pub(super) fn key_exists() -> Response {
    rest_error(
        "409",
        "Duplicate",
        "The resource already exists",
        "KeyAlreadyExists",
    )
}

pub(super) fn bucket_exists() -> Response {
    rest_error(
        "409",
        "Duplicate",
        "The resource already exists",
        "BucketAlreadyExists",
    )
}

pub(super) fn entity_too_large() -> Response {
    rest_error(
        "413",
        "Payload too large",
        "The object exceeded the maximum allowed size",
        "EntityTooLarge",
    )
}

pub(super) fn invalid_mime(content_type: &str) -> Response {
    rest_error(
        "415",
        "invalid_mime_type",
        &format!("mime type {content_type} is not supported"),
        "InvalidMimeType",
    )
}

pub(super) fn rls_denied() -> Response {
    rest_error(
        "403",
        "Unauthorized",
        "new row violates row-level security policy",
        "AccessDenied",
    )
}

pub(super) fn bad_signature() -> Response {
    rest_error(
        "403",
        "Unauthorized",
        "signature verification failed",
        "AccessDenied",
    )
}

pub(super) fn missing_auth() -> Response {
    invalid_request("headers must have required property 'authorization'")
}

pub(super) fn invalid_request(message: &str) -> Response {
    rest_error("400", "Error", message, "InvalidRequest")
}

pub(super) fn invalid_jwt(message: &str) -> Response {
    rest_error("400", "InvalidJWT", message, "InvalidJWT")
}

pub(super) fn route_not_found(method: &Method, path: &str) -> Response {
    json_resp(
        404,
        obj(&[
            ("statusCode", js(&404)),
            ("error", js("Not Found")),
            ("message", js(&format!("Route {method}:{path} not found"))),
        ]),
    )
}

/// The answer of an injected fault on a REST route.
pub(super) fn rest_fault(status: u16) -> Response {
    let sc = status.to_string();
    let (error, message, code) = match status {
        400 => ("Error", "emulated fault", "InvalidRequest"),
        403 => ("Unauthorized", "emulated fault", "AccessDenied"),
        404 => ("not_found", "Object not found", "NoSuchKey"),
        409 => (
            "Duplicate",
            "The resource already exists",
            "KeyAlreadyExists",
        ),
        413 => (
            "Payload too large",
            "The object exceeded the maximum allowed size",
            "EntityTooLarge",
        ),
        415 => ("invalid_mime_type", "emulated fault", "InvalidMimeType"),
        423 => ("resource_locked", "emulated fault", "ResourceLocked"),
        429 => (
            "too_many_connections",
            "Too many connections issued to the database",
            "SlowDown",
        ),
        s if s >= 500 => ("internal", "Internal Server Error", "InternalError"),
        _ => ("Error", "emulated fault", "InvalidRequest"),
    };
    let http = if status == 429 || status >= 500 {
        status
    } else {
        400
    };
    json_resp(
        http,
        obj(&[
            ("statusCode", js(&sc)),
            ("error", js(error)),
            ("message", js(message)),
            ("code", js(code)),
        ]),
    )
}

pub(super) fn tus_text(status: u16, body: &str) -> Response {
    respond(
        status,
        &[
            ("content-type", TEXT_UTF8.into()),
            ("tus-resumable", "1.0.0".into()),
        ],
        body.to_string(),
    )
}

pub(super) async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// The whole body, or what arrived before it broke off.
pub(super) async fn read_all(body: Body) -> Result<Bytes, Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(b) => buf.extend_from_slice(&b),
            Err(_) => return Err(buf),
        }
    }
    Ok(Bytes::from(buf))
}

pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn parse_size(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(|n| Some(n).filter(|n| *n > 0))
            .ok_or_else(|| "file_size_limit must be a positive integer".to_string()),
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let split = lower
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(lower.len());
            let (num, unit) = lower.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("invalid file size limit {s}"))?;
            let mult = match unit.trim() {
                "b" | "" => 1.0,
                "kb" => 1e3,
                "mb" => 1e6,
                "gb" => 1e9,
                _ => return Err(format!("invalid file size limit {s}")),
            };
            Ok(Some((num * mult).round() as u64).filter(|n| *n > 0))
        }
        _ => Err("file_size_limit must be an integer or a string".to_string()),
    }
}

/// A single `Range: bytes=…` → `Some(Ok((start, end_inclusive)))`, `Some(Err(()))` when it
/// starts past the end, `None` when absent or ignored.
pub(super) fn parse_range(value: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    if start >= len {
        return Some(Err(()));
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        b.parse::<u64>().ok()?.min(len - 1)
    };
    if end < start {
        return None;
    }
    Some(Ok((start, end)))
}

/// A download (GET or HEAD) of `o`, honouring a single `Range`.
pub(super) fn serve_object(
    o: &Obj,
    req_headers: &HeaderMap,
    head: bool,
    extra: Vec<(&'static str, String)>,
) -> Response {
    let len = o.data.len() as u64;
    let mut headers: Vec<(&str, String)> = vec![
        ("accept-ranges", "bytes".into()),
        ("content-type", o.content_type.clone()),
        ("etag", o.etag.clone()),
        ("x-robots-tag", "none".into()),
        ("last-modified", http_date(o.updated_at)),
    ];
    let range = if head {
        None
    } else {
        parse_range(header(req_headers, "range"), len)
    };
    let (status, body) = match range {
        Some(Ok((start, end))) => {
            headers.push(("content-length", (end - start + 1).to_string()));
            headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
            (206, o.data.slice(start as usize..=end as usize))
        }
        Some(Err(())) => {
            headers.retain(|(k, _)| *k != "content-type");
            headers.push(("content-range", format!("bytes */{len}")));
            return respond(416, &headers, Body::empty());
        }
        None => {
            headers.push(("content-length", len.to_string()));
            (200, if head { Bytes::new() } else { o.data.clone() })
        }
    };
    headers.extend(extra);
    respond(status, &headers, body)
}
