//! `GET /api/videos/{id}/thumbnail`: the cover stored with the video, the lasting thumbnail
//! (`videos.thumbnail_url`) where the store has no public URL. A redirect to the cover's
//! public URL or to a signed link (valid `SIGNED_URL_TTL`, and cached by the browser for at
//! most half of that), or, from the local folder, which signs nothing, the file itself.
//! `404` for an unknown video, one without a stored cover or whose cover is gone from the
//! store, `410` for one marked for deletion.

use super::*;

pub(super) async fn thumbnail(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let cover = match state.queue.video_cover(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return no_cover("no video has this id"),
        Err(e) => {
            tracing::error!(video_id = %id, error = %e, "download API: cannot read the video's cover");
            return unavailable();
        }
    };
    if cover.marked_for_deletion {
        return gone();
    }
    let Some(key) = cover.cover_key.clone() else {
        return no_cover("the video has no stored cover");
    };
    // The object as the proxy serves it: the cover's key in the video's bucket.
    let object = VideoState {
        id: cover.id,
        bucket: cover.bucket.clone(),
        object_key: Some(key.clone()),
        ..Default::default()
    };
    if let Err(r) = key_in_our_bucket(&state, &object) {
        return r;
    }
    // A link to an object that is gone would only fail later, in the browser: say so now.
    match state.storage.head(&key).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::error!(video_id = %cover.id, key, "download API: the video's cover is recorded but missing from the store");
            return no_cover("the stored cover is missing");
        }
        Err(e) => {
            tracing::error!(video_id = %cover.id, key, error = %e, "download API: cannot check the cover");
            return unavailable();
        }
    }
    let ttl = state
        .api
        .as_ref()
        .map_or(Duration::from_secs(3600), |o| o.signed_url_ttl);
    let url = match state.storage.public_url(&key).await {
        Ok(Some(url)) => Ok(url),
        Ok(None) => state.storage.signed_url(&key, ttl).await,
        Err(e) => Err(e),
    };
    match url {
        Ok(url) => redirect(&url, ttl / 2),
        // The local folder signs nothing: the file itself.
        Err(e) if e.code == "no-signed-urls" => {
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            stream_object(&state, &object, method == Method::HEAD, range).await
        }
        Err(e) => {
            tracing::error!(video_id = %cover.id, key, error = %e, "download API: cannot link the cover");
            unavailable()
        }
    }
}

/// `302` to `url`, which the browser may reuse for `max_age` (a thumbnail is shown often).
fn redirect(url: &str, max_age: Duration) -> Response {
    let Ok(location) = HeaderValue::from_str(url) else {
        return unavailable();
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    r.headers_mut().insert(header::LOCATION, location);
    if let Ok(cc) = HeaderValue::from_str(&format!("private, max-age={}", max_age.as_secs())) {
        r.headers_mut().insert(header::CACHE_CONTROL, cc);
    }
    r
}

fn no_cover(why: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        json!({"status": "not_found", "error": why}),
    )
}
