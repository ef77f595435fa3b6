//! The Storage emulator's TUS resumable uploads.

use super::*;

// ---------------------------------------------------------------------------------------------
// TUS

pub(super) fn tus_json_auth_error(message: &str) -> Response {
    json_resp(
        400,
        obj(&[
            ("statusCode", js("403")),
            ("code", js("AccessDenied")),
            ("error", js("Unauthorized")),
            ("message", js(message)),
        ]),
    )
}

pub(super) async fn tus(
    emu: &Arc<Emu>,
    conn: &Conn,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
    body: Body,
) -> Response {
    if *method == Method::OPTIONS {
        drain(body).await;
        // In the contract transcript's order (§7).
        let mut h = vec![(
            "tus-extension",
            "creation,creation-with-upload,creation-defer-length,termination,expiration"
                .to_string(),
        )];
        if let Some(l) = emu.st().global_limit {
            h.push(("tus-max-size", l.to_string()));
        }
        h.push(("tus-resumable", "1.0.0".into()));
        h.push(("tus-version", "1.0.0".into()));
        return respond(204, &h, Body::empty());
    }
    let early = match emu.authenticate(headers) {
        Err(AuthError::Missing) => Some(tus_json_auth_error("Invalid Compact JWS")),
        Err(AuthError::Invalid) => Some(tus_json_auth_error("signature verification failed")),
        Ok(role) => match header(headers, "tus-resumable") {
            None => Some(tus_text(412, "Tus-Resumable Required\n")),
            Some(v) if v != "1.0.0" => {
                let mut r = tus_text(412, "Unsupported version\n");
                r.headers_mut()
                    .insert("tus-version", HeaderValue::from_static("1.0.0"));
                Some(r)
            }
            Some(_) if role == Role::Anon => {
                Some(tus_text(403, "new row violates row-level security policy"))
            }
            Some(_) => None,
        },
    };
    if let Some(r) = early {
        drain(body).await;
        return r;
    }
    match (method.clone(), id.is_empty()) {
        (Method::POST, true) => tus_create(emu, conn, headers, body).await,
        (Method::HEAD, false) => {
            drain(body).await;
            tus_head(emu, id)
        }
        (Method::PATCH, false) => tus_patch(emu, conn, headers, id, body).await,
        (Method::DELETE, false) => {
            drain(body).await;
            tus_delete(emu, id)
        }
        _ => {
            drain(body).await;
            tus_text(405, "Method not allowed\n")
        }
    }
}

/// `Upload-Metadata` → ordered (key, decoded value) pairs.
pub(super) fn parse_upload_metadata(v: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for pair in v.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let mut it = pair.splitn(2, ' ');
        let key = it.next()?.to_string();
        let value = match it.next() {
            None => None,
            Some(b64) => {
                let b64 = b64.trim();
                let raw = STANDARD
                    .decode(b64)
                    .or_else(|_| STANDARD_NO_PAD.decode(b64))
                    .ok()?;
                Some(String::from_utf8(raw).ok()?)
            }
        };
        out.push((key, value));
    }
    Some(out)
}

pub(super) fn normalise_cache_control(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            format!("max-age={s}")
        }
        _ => "no-cache".to_string(),
    }
}

pub(super) fn location(emu: &Emu, headers: &HeaderMap, id: &str) -> String {
    let host = header(headers, "host")
        .map(str::to_string)
        .unwrap_or_else(|| emu.addr.to_string());
    let proto = header(headers, "x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}{PREFIX}{TUS_ROOT}/{id}")
}

pub(super) async fn tus_create(
    emu: &Arc<Emu>,
    conn: &Conn,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let created = (|| -> Result<(String, u64), Response> {
        let length = match header(headers, "upload-length") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| tus_text(400, "Invalid Upload-Length\n"))?,
            None if headers.contains_key("upload-defer-length") => {
                return Err(tus_text(
                    400,
                    "Upload-Defer-Length is not supported by the emulator\n",
                ));
            }
            None => {
                return Err(tus_text(
                    400,
                    "Upload-Length or Upload-Defer-Length header required\n",
                ));
            }
        };
        let Some(raw) = header(headers, "upload-metadata") else {
            return Err(tus_text(400, "Metadata header is required"));
        };
        let pairs = parse_upload_metadata(raw)
            .ok_or_else(|| tus_text(400, "Upload-Metadata is invalid\n"))?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.clone())
        };
        let (Some(bucket), Some(object)) = (get("bucketName"), get("objectName")) else {
            return Err(tus_text(400, "Metadata header is required"));
        };
        let content_type = get("contentType").unwrap_or_else(|| "application/octet-stream".into());
        let cache_control = normalise_cache_control(get("cacheControl").as_deref());
        let user_metadata = get("metadata")
            .and_then(|m| serde_json::from_str::<Value>(&m).ok())
            .unwrap_or(Value::Null);
        let echo: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let v = if k == "cacheControl" {
                    Some(cache_control.clone())
                } else {
                    v.clone()
                };
                match v {
                    Some(v) => format!("{k} {}", STANDARD.encode(v.as_bytes())),
                    None => k.clone(),
                }
            })
            .collect();
        let mut st = emu.st();
        let Some(b) = st.buckets.get(&bucket) else {
            return Err(tus_text(404, "Bucket not found"));
        };
        if st.limit_for(b).is_some_and(|l| length > l) {
            return Err(tus_text(413, "Maximum size exceeded\n"));
        }
        if !b.allows(&content_type) {
            return Err(tus_text(
                415,
                &format!("mime type {content_type} is not supported"),
            ));
        }
        if st.objects.contains_key(&(bucket.clone(), object.clone())) && !upsert(headers) {
            return Err(tus_text(409, "The resource already exists"));
        }
        let version = Uuid::new_v4();
        let id = URL_SAFE_NO_PAD.encode(format!("{bucket}/{object}/{version}"));
        let mut upload = TusUpload {
            bucket,
            object,
            version,
            length,
            data: Vec::new(),
            content_type,
            cache_control,
            user_metadata,
            metadata_echo: echo.join(","),
            completed: false,
            busy: false,
            expires: SystemTime::now() + st.tus_url_lifetime,
        };
        if length == 0 {
            finish(&mut st, &mut upload);
        }
        st.uploads.insert(id.clone(), upload);
        Ok((id, length))
    })();
    let (id, length) = match created {
        Ok(c) => c,
        Err(r) => {
            drain(body).await;
            return r;
        }
    };
    let loc = location(emu, headers, &id);
    let with_body = header(headers, "content-type") == Some(OFFSET_OCTET);
    if !with_body || length == 0 {
        drain(body).await;
        let mut h = vec![
            ("content-type", TEXT_UTF8.to_string()),
            ("location", loc),
            ("tus-resumable", "1.0.0".into()),
        ];
        h.extend(upload_expires(emu, &id));
        return respond(201, &h, Body::empty());
    }
    // Creation-with-upload: the body is a PATCH at offset 0.
    match tus_write(emu, conn, headers, &id, 0, body, false).await {
        Written::Ok { offset, complete } => {
            let mut h = vec![("content-type", TEXT_UTF8.to_string()), ("location", loc)];
            if complete {
                h.push(("tus-complete", "1".into()));
            }
            h.push(("tus-resumable", "1.0.0".into()));
            h.push(("upload-offset", offset.to_string()));
            h.extend(upload_expires(emu, &id));
            respond(201, &h, Body::empty())
        }
        Written::Refused(r) => r,
    }
}

/// `Upload-Expires` of an unfinished upload (`@tus/server` sends it on the create and on
/// every PATCH answer while the upload is incomplete): its creation plus the URL lifetime.
pub(super) fn upload_expires(emu: &Emu, id: &str) -> Option<(&'static str, String)> {
    let st = emu.st();
    let u = st.uploads.get(id).filter(|u| !u.completed)?;
    Some(("upload-expires", http_date(u.expires.into())))
}

/// The answer to a request on an upload whose URL has expired (`@tus/server`'s
/// `FILE_NO_LONGER_EXISTS`).
pub(super) fn expired_upload() -> Response {
    tus_text(410, "The file for this url no longer exists\n")
}

pub(super) fn tus_head(emu: &Emu, id: &str) -> Response {
    let st = emu.st();
    let Some(u) = st.uploads.get(id) else {
        return tus_text(404, "The file for this url was not found\n");
    };
    if st.expired(u) {
        return expired_upload();
    }
    respond(
        200,
        &[
            ("cache-control", "no-store".into()),
            ("content-type", TEXT_UTF8.into()),
            ("tus-resumable", "1.0.0".into()),
            ("upload-length", u.length.to_string()),
            ("upload-metadata", u.metadata_echo.clone()),
            ("upload-offset", u.data.len().to_string()),
        ],
        Body::empty(),
    )
}

pub(super) fn tus_delete(emu: &Emu, id: &str) -> Response {
    let mut st = emu.st();
    match st.uploads.get(id) {
        None => tus_text(404, "The file for this url was not found\n"),
        Some(u) if u.completed => tus_text(400, "Cannot terminate an already completed upload\n"),
        Some(_) => {
            st.uploads.remove(id);
            respond(204, &[("tus-resumable", "1.0.0".into())], Body::empty())
        }
    }
}

pub(super) async fn tus_patch(
    emu: &Arc<Emu>,
    conn: &Conn,
    headers: &HeaderMap,
    id: &str,
    body: Body,
) -> Response {
    let Some(offset) = header(headers, "upload-offset").and_then(|v| v.trim().parse::<u64>().ok())
    else {
        drain(body).await;
        return tus_text(403, "Upload-Offset header required\n");
    };
    if header(headers, "content-type") != Some(OFFSET_OCTET) {
        drain(body).await;
        return tus_text(403, "Content-Type header required\n");
    }
    match tus_write(emu, conn, headers, id, offset, body, true).await {
        Written::Ok { offset, complete } => {
            let mut h = Vec::new();
            if complete {
                h.push(("tus-complete", "1".to_string()));
            }
            h.push(("tus-resumable", "1.0.0".into()));
            h.push(("upload-offset", offset.to_string()));
            h.extend(upload_expires(emu, id));
            respond(204, &h, Body::empty())
        }
        Written::Refused(r) => r,
    }
}

pub(super) enum Written {
    Ok { offset: u64, complete: bool },
    Refused(Response),
}

/// Clears an upload's in-flight flag however the request ends (the handler future is dropped
/// when the client disconnects mid-body).
pub(super) struct BusyGuard {
    emu: Arc<Emu>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(u) = self.emu.st().uploads.get_mut(&self.id) {
            u.busy = false;
        }
    }
}

/// Writes the upload's object once every byte is there.
pub(super) fn finish(st: &mut St, u: &mut TusUpload) {
    u.completed = true;
    st.store_object(
        &u.bucket,
        &u.object,
        Bytes::from(u.data.clone()),
        u.content_type.clone(),
        u.cache_control.clone(),
        u.user_metadata.clone(),
        u.version,
    );
}

/// Appends `bytes` to upload `id` (completing it when full); returns (offset, complete).
pub(super) fn append(emu: &Emu, id: &str, bytes: &[u8]) -> (u64, bool) {
    let mut st = emu.st();
    let Some(mut u) = st.uploads.remove(id) else {
        return (0, false);
    };
    u.data.extend_from_slice(bytes);
    if !u.completed && u.data.len() as u64 == u.length {
        finish(&mut st, &mut u);
    }
    let r = (u.data.len() as u64, u.completed);
    st.uploads.insert(id.to_string(), u);
    r
}

/// The body of a PATCH (or of a creation-with-upload POST) at `offset`: checks, then bytes
/// appended as they arrive.
pub(super) async fn tus_write(
    emu: &Arc<Emu>,
    conn: &Conn,
    headers: &HeaderMap,
    id: &str,
    offset: u64,
    body: Body,
    interruptible: bool,
) -> Written {
    let declared = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let checked = (|| -> Result<(u64, bool, Option<u64>), Response> {
        let mut st = emu.st();
        let hosted = st.hosted_chunk_rule;
        let Some(u) = st.uploads.get(id) else {
            return Err(tus_text(404, "The file for this url was not found\n"));
        };
        if st.expired(u) {
            return Err(expired_upload());
        }
        if st
            .objects
            .contains_key(&(u.bucket.clone(), u.object.clone()))
            && !upsert(headers)
        {
            return Err(tus_text(409, "The resource already exists"));
        }
        if u.busy {
            return Err(tus_text(503, "acquiring lock timeout"));
        }
        let current = u.data.len() as u64;
        if offset != current {
            return Err(tus_text(409, "Upload-Offset conflict\n"));
        }
        let remaining = u.length - current;
        if declared.is_some_and(|d| d > remaining) {
            return Err(tus_text(413, "upload's size exceeded\n"));
        }
        if hosted
            && let Some(d) = declared
            && d < remaining
            && d != TUS_CHUNK
        {
            return Err(chunk_rule_refusal());
        }
        if let Some(u) = st.uploads.get_mut(id) {
            u.busy = true;
        }
        let interrupt = if interruptible {
            st.interrupt.take()
        } else {
            None
        };
        Ok((remaining, hosted, interrupt))
    })();
    let (remaining, hosted, interrupt) = match checked {
        Ok(c) => c,
        Err(r) => {
            drain(body).await;
            return Written::Refused(r);
        }
    };
    let _guard = BusyGuard {
        emu: emu.clone(),
        id: id.to_string(),
    };
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let mut broke_off = false;
    let mut exceeded = false;
    while let Some(frame) = stream.next().await {
        let Ok(mut bytes) = frame else {
            broke_off = true;
            break;
        };
        let mut stop = false;
        if received + bytes.len() as u64 > remaining {
            bytes.truncate((remaining - received) as usize);
            exceeded = true;
            stop = true;
        }
        if let Some(after) = interrupt
            && received + bytes.len() as u64 >= after
        {
            bytes.truncate((after - received) as usize);
            stop = true;
        }
        received += bytes.len() as u64;
        append(emu, id, &bytes);
        if stop {
            break;
        }
    }
    if interrupt.is_some() {
        // Kill the connection: hyper fails to write this answer and closes the socket.
        conn.kill();
        return Written::Refused(tus_text(500, "connection killed\n"));
    }
    if broke_off {
        return Written::Refused(tus_text(400, "request body interrupted\n"));
    }
    if exceeded {
        return Written::Refused(tus_text(413, "upload's size exceeded\n"));
    }
    if hosted && declared.is_none() && received < remaining && received != TUS_CHUNK {
        // A chunked PATCH that broke the hosted rule: take its bytes back.
        let mut st = emu.st();
        if let Some(u) = st.uploads.get_mut(id) {
            u.data.truncate(offset as usize);
        }
        return Written::Refused(chunk_rule_refusal());
    }
    let st = emu.st();
    match st.uploads.get(id) {
        Some(u) => Written::Ok {
            offset: u.data.len() as u64,
            complete: u.completed,
        },
        None => Written::Refused(tus_text(404, "The file for this url was not found\n")),
    }
}

pub(super) fn chunk_rule_refusal() -> Response {
    tus_text(
        400,
        &format!(
            "chunk size must be exactly 6 MiB ({TUS_CHUNK} bytes) except for the last chunk \
             (hosted Supabase Storage)\n"
        ),
    )
}
