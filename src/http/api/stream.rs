//! The stored file through the API: whole, one range, or only its headers, with a guard
//! against a store that stalls mid-body.

use super::*;

/// The stored file itself: whole (200), one range of it (206), or only its headers (HEAD).
pub(super) async fn stream_object(
    state: &HttpState,
    v: &VideoState,
    head_only: bool,
    range: Option<&str>,
) -> Response {
    let key = match key_in_our_bucket(state, v) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let fail = |e: crate::storage::StorageError| {
        tracing::error!(video_id = %v.id, key, error = %e, "download API: cannot read the object");
        unavailable()
    };
    // The size first when it decides the answer: HEAD, or a Range.
    let size = if head_only || range.is_some() {
        match state.storage.head(key).await {
            Ok(Some(info)) => Some(info.size),
            Ok(None) => return missing(v, key, StatusCode::NOT_FOUND),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    if head_only {
        let mut r = file_response(v, key, Body::empty(), size, None);
        *r.status_mut() = StatusCode::OK;
        return r;
    }
    let part = match (size, range) {
        (Some(size), Some(range)) => match range::resolve(Some(range), size) {
            Ranged::Whole => None,
            Ranged::Unsatisfiable => {
                let mut r = answer(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    json!({"status": "invalid", "error": "the range is outside the file"}),
                );
                if let Ok(cr) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, cr);
                }
                return r;
            }
            Ranged::Part { start, end } => Some((start, end, size)),
        },
        _ => None,
    };
    let opened = match part {
        Some((start, end, _)) => match state.storage.open_range(key, start, end).await {
            // A store that cannot read a part: the whole file (200 is a valid answer).
            Err(e) if e.code == "unsupported" => state.storage.open(key).await.map(|o| (o, None)),
            other => other.map(|o| (o, part)),
        },
        None => state.storage.open(key).await.map(|o| (o, None)),
    };
    let (object, part) = match opened {
        Ok((Some(o), part)) => (o, part),
        Ok((None, _)) => return missing(v, key, StatusCode::NOT_FOUND),
        Err(e) => return fail(e),
    };
    let stall = state
        .api
        .as_ref()
        .map_or(Duration::from_secs(30), |o| o.request_timeout);
    let body = Body::from_stream(stall_guard(object.body, stall, v.id));
    let content_type = object.content_type.clone();
    let mut r = file_response(v, key, body, object.size, content_type);
    if let Some((start, end, size)) = part {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(cr) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, cr);
        }
    }
    r
}

/// A file answer's headers: type, length, ranges accepted, the name to save it under.
fn file_response(
    v: &VideoState,
    key: &str,
    body: Body,
    size: Option<u64>,
    content_type: Option<String>,
) -> Response {
    let content_type = content_type
        .or_else(|| v.mime_type.clone())
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Keys hold only letters, digits, `.`, `_`, `-` and `/`: the name needs no escaping.
    if let Ok(cd) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", filename(key))) {
        headers.insert(header::CONTENT_DISPOSITION, cd);
    }
    response
}

/// Ends a proxied body whose store sends nothing for `stall` (the connection is then closed
/// short of its length, which the client sees as an error, not as a whole file).
fn stall_guard(
    body: futures::stream::BoxStream<'static, Result<bytes::Bytes, crate::storage::StorageError>>,
    stall: Duration,
    video: Uuid,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(stall, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                tracing::error!(video_id = %video, error = %e, "download API: reading the object failed mid-way");
                Some((Err(std::io::Error::other("the store failed")), None))
            }
            Err(_) => {
                tracing::error!(video_id = %video, ?stall, "download API: the store sent nothing for too long; answer cut");
                Some((Err(std::io::Error::other("the store stalled")), None))
            }
        }
    })
}
