//! The Storage emulator's REST routes: buckets, objects, listing, signed URLs.

use super::*;

// ---------------------------------------------------------------------------------------------
// Dispatch

pub(super) async fn handle(
    State(emu): State<Arc<Emu>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let fault = {
        let mut st = emu.st();
        st.log.push(Logged {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
        (st.take_hang(&path), st.take_fault(&path))
    };
    let (hang, fault) = fault;
    if let Some(stall) = hang {
        // Neither the body nor the connection is touched meanwhile: a client sending a body
        // bigger than the socket buffers blocks, a smaller one waits for the answer.
        tokio::time::sleep(stall).await;
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        drain(body).await;
        return route_not_found(&parts.method, &path);
    };
    let is_tus = rest == TUS_ROOT || rest.starts_with("/upload/resumable/");
    // What a browser opens without a key: signed downloads, public-bucket downloads (the
    // public URL an <img> tag loads), TUS capabilities.
    let keyless = (is_tus && parts.method == Method::OPTIONS)
        || ((parts.method == Method::GET || parts.method == Method::HEAD)
            && (rest.starts_with("/object/sign/") || rest.starts_with("/object/public/")));
    if !keyless && let Some(refusal) = emu.gateway(&parts.headers) {
        drain(body).await;
        return refusal;
    }
    if let Some(status) = fault {
        drain(body).await;
        return if is_tus {
            tus_text(status, &format!("emulated fault {status}\n"))
        } else {
            rest_fault(status)
        };
    }
    if is_tus {
        let id = rest[TUS_ROOT.len()..].trim_start_matches('/').to_string();
        return tus(&emu, &conn, &parts.method, &parts.headers, &id, body).await;
    }
    let body = match read_all(body).await {
        Ok(b) => b,
        // The client is gone; nothing is stored for an incomplete standard upload.
        Err(_) => return invalid_request("request body interrupted"),
    };
    rest_route(&emu, &parts.method, &parts.uri, rest, &parts.headers, body)
}

pub(super) fn rest_route(
    emu: &Emu,
    method: &Method,
    uri: &Uri,
    rest: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let head = *method == Method::HEAD;
    if (*method == Method::GET || head)
        && let Some(p) = rest.strip_prefix("/object/sign/")
    {
        return signed_download(emu, uri, p, headers, head);
    }
    if *method == Method::GET
        && let Some(p) = rest.strip_prefix("/object/public/")
    {
        return public_download(emu, p, headers);
    }
    let role = match emu.authenticate(headers) {
        Ok(r) => r,
        Err(AuthError::Missing) => return missing_auth(),
        Err(AuthError::Invalid) => return bad_signature(),
    };
    let mut st = emu.st();
    let st = &mut *st;
    let not_found = || route_not_found(method, &format!("{PREFIX}{rest}"));
    if rest == "/bucket" {
        return match *method {
            Method::POST => create_bucket(st, role, &body),
            Method::GET => {
                let rows: Vec<String> = if role == Role::Anon {
                    vec![]
                } else {
                    st.buckets.values().map(Bucket::row).collect()
                };
                ok_json(format!("[{}]", rows.join(",")))
            }
            _ => not_found(),
        };
    }
    if let Some(id) = rest.strip_prefix("/bucket/") {
        return match (*method == Method::GET, st.buckets.get(&percent_decode(id))) {
            (true, Some(b)) if role == Role::Service => ok_json(b.row()),
            (true, _) => no_such_bucket(),
            _ => not_found(),
        };
    }
    if let Some(b) = rest.strip_prefix("/object/list/") {
        if *method != Method::POST {
            return not_found();
        }
        return list_objects(st, role, &percent_decode(b), &body);
    }
    if let Some(p) = rest.strip_prefix("/object/info/") {
        if *method != Method::GET {
            return not_found();
        }
        let p = p
            .strip_prefix("authenticated/")
            .or_else(|| p.strip_prefix("public/"))
            .unwrap_or(p);
        let (bucket, key) = split_object_path(p);
        let delta = st.take_misreport(&format!("{PREFIX}{rest}"));
        return info(st, role, &bucket, &key, delta.unwrap_or(0));
    }
    if let Some(p) = rest.strip_prefix("/object/sign/") {
        if *method != Method::POST {
            return not_found();
        }
        let (bucket, key) = split_object_path(p);
        return sign(st, role, &bucket, &key, &body);
    }
    if let Some(p) = rest.strip_prefix("/object/authenticated/") {
        if *method != Method::GET && !head {
            return not_found();
        }
        let (bucket, key) = split_object_path(p);
        return head_or_download(st, role, rest, &bucket, &key, headers, head);
    }
    if let Some(p) = rest.strip_prefix("/object/") {
        let (bucket, key) = split_object_path(p);
        if key.is_empty() {
            return match *method {
                Method::DELETE => delete_many(st, role, &bucket, &body),
                _ => not_found(),
            };
        }
        return match *method {
            Method::POST | Method::PUT => upload(st, role, method, &bucket, &key, headers, body),
            Method::GET | Method::HEAD => {
                head_or_download(st, role, rest, &bucket, &key, headers, head)
            }
            Method::DELETE => delete_one(st, role, &bucket, &key),
            _ => not_found(),
        };
    }
    not_found()
}

// ---------------------------------------------------------------------------------------------
// REST handlers

pub(super) fn parse_json_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| invalid_request(&format!("invalid JSON body: {e}")))
}

pub(super) fn create_bucket(st: &mut St, role: Role, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return invalid_request("body must have required property 'name'");
    };
    let id = v.get("id").and_then(Value::as_str).unwrap_or(name);
    let limit = match parse_size(v.get("file_size_limit").unwrap_or(&Value::Null)) {
        Ok(l) => l,
        Err(m) => return invalid_request(&m),
    };
    let types = match v.get("allowed_mime_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for t in a {
                match t.as_str() {
                    Some(t) => out.push(t.to_string()),
                    None => {
                        return invalid_request("body/allowed_mime_types/0 must be string");
                    }
                }
            }
            Some(out)
        }
        Some(_) => return invalid_request("body/allowed_mime_types must be array"),
    };
    // Contract §10: "Creating or updating a bucket whose `file_size_limit` is above [the
    // global upload limit] is refused: `POST /bucket` → HTTP 400 `{"statusCode":"413",
    // "error":"Payload too large","message":"The object exceeded the maximum allowed size",
    // "code":"EntityTooLarge"}`", and "a bucket with `file_size_limit: null` inherits the
    // global limit". The contract does not say where this check falls among the others; the
    // emulator makes it first (storage-api parses the limit before it touches the database,
    // where the RLS and duplicate checks happen).
    if let (Some(l), Some(global)) = (limit, st.global_limit)
        && l > global
    {
        return entity_too_large();
    }
    if role == Role::Anon {
        return rls_denied();
    }
    if st.buckets.contains_key(id) {
        return bucket_exists();
    }
    st.buckets.insert(
        id.to_string(),
        Bucket {
            id: id.to_string(),
            name: name.to_string(),
            public: v.get("public").and_then(Value::as_bool).unwrap_or(false),
            file_size_limit: limit,
            allowed_mime_types: types,
            created_at: Utc::now(),
        },
    );
    ok_json(obj(&[("name", js(id))]))
}

pub(super) fn upload(
    st: &mut St,
    role: Role,
    method: &Method,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(b) = st.buckets.get(bucket) else {
        return no_such_bucket();
    };
    let content_type = header(headers, "content-type")
        .unwrap_or("application/x-www-form-urlencoded")
        .to_string();
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return invalid_request("multipart/form-data uploads are not emulated");
    }
    if !b.allows(&content_type) {
        return invalid_mime(&content_type);
    }
    if let Some(limit) = st.limit_for(b) {
        let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > limit) || body.len() as u64 > limit {
            return entity_too_large();
        }
    }
    if role == Role::Anon {
        return rls_denied();
    }
    let exists = st
        .objects
        .contains_key(&(bucket.to_string(), key.to_string()));
    if exists && *method == Method::POST && !upsert(headers) {
        return key_exists();
    }
    let cache_control = header(headers, "cache-control")
        .unwrap_or("no-cache")
        .to_string();
    let user_metadata = header(headers, "x-metadata")
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .filter(Value::is_object)
        .unwrap_or(Value::Null);
    let id = st.store_object(
        bucket,
        key,
        body,
        content_type,
        cache_control,
        user_metadata,
        Uuid::new_v4(),
    );
    ok_json(obj(&[
        ("Key", js(&format!("{bucket}/{key}"))),
        ("Id", js(&id)),
    ]))
}

pub(super) fn visible<'a>(st: &'a St, role: Role, bucket: &str, key: &str) -> Option<&'a Obj> {
    if role == Role::Anon {
        return None;
    }
    st.objects.get(&(bucket.to_string(), key.to_string()))
}

/// A size off by `delta` (at least 0): what [`StorageApi::misreport_size`] makes the store say.
fn misreported(size: usize, delta: i64) -> u64 {
    (size as i64).saturating_add(delta).max(0) as u64
}

pub(super) fn info(st: &St, role: Role, bucket: &str, key: &str, delta: i64) -> Response {
    let Some(o) = visible(st, role, bucket, key) else {
        return no_such_key();
    };
    let body = obj(&[
        ("id", js(&o.id)),
        ("name", js(key)),
        ("version", js(&o.version)),
        ("bucket_id", js(bucket)),
        ("size", js(&misreported(o.data.len(), delta))),
        ("content_type", js(&o.content_type)),
        ("cache_control", js(&o.cache_control)),
        ("etag", js(&o.etag)),
        ("metadata", js(&o.user_metadata)),
        ("last_modified", js(&iso(o.updated_at))),
        ("created_at", js(&iso(o.created_at))),
    ]);
    respond(
        200,
        &[
            ("content-type", JSON_UTF8.into()),
            ("etag", o.etag.clone()),
            ("last-modified", http_date(o.updated_at)),
            ("cache-control", o.cache_control.clone()),
        ],
        body,
    )
}

/// `HEAD` or `GET` of an object; a `HEAD` takes a pending misreported size (the body of a
/// `GET` always matches its length).
fn head_or_download(
    st: &mut St,
    role: Role,
    rest: &str,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let delta = if head {
        st.take_misreport(&format!("{PREFIX}{rest}"))
    } else {
        None
    };
    let mut r = download(st, role, bucket, key, headers, head);
    if let (Some(delta), StatusCode::OK) = (delta, r.status()) {
        let len = visible(st, role, bucket, key).map_or(0, |o| o.data.len());
        r.headers_mut()
            .insert("content-length", HeaderValue::from(misreported(len, delta)));
    }
    r
}

pub(super) fn download(
    st: &St,
    role: Role,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let Some(o) = visible(st, role, bucket, key) else {
        return no_such_key();
    };
    serve_object(
        o,
        headers,
        head,
        vec![("cache-control", o.cache_control.clone())],
    )
}

pub(super) fn delete_one(st: &mut St, role: Role, bucket: &str, key: &str) -> Response {
    if visible(st, role, bucket, key).is_none() {
        return no_such_key();
    }
    st.objects.remove(&(bucket.to_string(), key.to_string()));
    ok_json(obj(&[("message", js("Successfully deleted"))]))
}

pub(super) fn delete_many(st: &mut St, role: Role, bucket: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(prefixes) = v.get("prefixes").and_then(Value::as_array) else {
        return invalid_request("body must have required property 'prefixes'");
    };
    if !st.buckets.contains_key(bucket) {
        return no_such_bucket();
    }
    let mut rows = Vec::new();
    for p in prefixes.iter().filter_map(Value::as_str) {
        if visible(st, role, bucket, p).is_none() {
            continue;
        }
        if let Some(o) = st.objects.remove(&(bucket.to_string(), p.to_string())) {
            rows.push(o.full_row(bucket, p));
        }
    }
    ok_json(format!("[{}]", rows.join(",")))
}

pub(super) fn list_objects(st: &St, role: Role, bucket: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !st.buckets.contains_key(bucket) {
        return no_such_bucket();
    }
    if role == Role::Anon {
        return ok_json("[]".into());
    }
    let folder = v
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_matches('/');
    let base = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let limit = v.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let offset = v.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let search = v
        .get("search")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let desc = v.pointer("/sortBy/order").and_then(Value::as_str) == Some("desc");
    let mut entries: BTreeMap<String, Option<&Obj>> = BTreeMap::new();
    for ((b, k), o) in &st.objects {
        if b != bucket {
            continue;
        }
        let Some(rest) = k.strip_prefix(&base) else {
            continue;
        };
        match rest.split_once('/') {
            Some((dir, _)) => {
                entries.entry(dir.to_string()).or_insert(None);
            }
            None => {
                entries.insert(rest.to_string(), Some(o));
            }
        }
    }
    let mut names: Vec<(String, Option<&Obj>)> = entries
        .into_iter()
        .filter(|(n, _)| n.to_lowercase().starts_with(&search))
        .collect();
    if desc {
        names.reverse();
    }
    let rows: Vec<String> = names
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(name, o)| match o {
            Some(o) => obj(&[
                ("name", js(&name)),
                ("id", js(&o.id)),
                ("updated_at", js(&iso(o.updated_at))),
                ("created_at", js(&iso(o.created_at))),
                ("last_accessed_at", js(&iso(o.updated_at))),
                ("metadata", o.system_metadata()),
            ]),
            None => obj(&[
                ("name", js(&name)),
                ("id", "null".into()),
                ("updated_at", "null".into()),
                ("created_at", "null".into()),
                ("last_accessed_at", "null".into()),
                ("metadata", "null".into()),
            ]),
        })
        .collect();
    ok_json(format!("[{}]", rows.join(",")))
}

pub(super) fn expires_in(v: &Value) -> Result<u64, Response> {
    match v.get("expiresIn") {
        None => Err(invalid_request(
            "body must have required property 'expiresIn'",
        )),
        Some(n) => match n.as_f64() {
            Some(n) if n >= 1.0 => Ok(n as u64),
            _ => Err(invalid_request("body/expiresIn must be >= 1")),
        },
    }
}

pub(super) fn issue_token(st: &mut St, bucket: &str, key: &str, secs: u64) -> String {
    let now = SystemTime::now();
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        obj(&[
            ("url", js(&format!("{bucket}/{key}"))),
            ("scope", js("download")),
            ("iat", js(&iat)),
            ("exp", js(&(iat + secs))),
        ])
        .as_bytes(),
    );
    let sig = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let token = format!("{header}.{payload}.{sig}");
    st.tokens.insert(
        token.clone(),
        SignedToken {
            bucket: bucket.to_string(),
            key: key.to_string(),
            expires: now + Duration::from_secs(secs),
        },
    );
    token
}

pub(super) fn signed_url(bucket: &str, key: &str, token: &str) -> String {
    format!(
        "/object/sign/{}/{}?token={token}",
        percent_encode_path(bucket),
        percent_encode_path(key)
    )
}

pub(super) fn sign(st: &mut St, role: Role, bucket: &str, key: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let secs = match expires_in(&v) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !key.is_empty() {
        if visible(st, role, bucket, key).is_none() {
            return no_such_key();
        }
        let token = issue_token(st, bucket, key, secs);
        return ok_json(obj(&[("signedURL", js(&signed_url(bucket, key, &token)))]));
    }
    // Batch: `{"expiresIn","paths":[…]}`.
    let Some(paths) = v.get("paths").and_then(Value::as_array) else {
        return invalid_request("body must have required property 'paths'");
    };
    let mut rows = Vec::new();
    for p in paths.iter().filter_map(Value::as_str) {
        if visible(st, role, bucket, p).is_some() {
            let token = issue_token(st, bucket, p, secs);
            rows.push(obj(&[
                ("error", "null".into()),
                ("path", js(p)),
                ("signedURL", js(&signed_url(bucket, p, &token))),
            ]));
        } else {
            rows.push(obj(&[
                (
                    "error",
                    js("Either the object does not exist or you do not have access to it"),
                ),
                ("path", js(p)),
                ("signedURL", "null".into()),
            ]));
        }
    }
    ok_json(format!("[{}]", rows.join(",")))
}

pub(super) fn signed_download(
    emu: &Emu,
    uri: &Uri,
    p: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let (bucket, key) = split_object_path(p);
    let Some(token) = query_param(uri, "token") else {
        return invalid_request("querystring must have required property 'token'");
    };
    let st = emu.st();
    let Some(t) = st.tokens.get(&token) else {
        return invalid_jwt(if token.split('.').count() == 3 {
            "signature verification failed"
        } else {
            "Invalid Compact JWS"
        });
    };
    if SystemTime::now() >= t.expires {
        return invalid_jwt("\"exp\" claim timestamp check failed");
    }
    if t.bucket != bucket || t.key != key {
        return rest_error(
            "400",
            "InvalidSignature",
            "The url do not match the signature",
            "InvalidSignature",
        );
    }
    let Some(o) = st.objects.get(&(bucket.clone(), key.clone())) else {
        return no_such_key();
    };
    let mut extra = vec![("expires", http_date(DateTime::<Utc>::from(t.expires)))];
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "download" {
                let name = if v.is_empty() {
                    key.rsplit('/').next().unwrap_or(&key).to_string()
                } else {
                    v.into_owned()
                };
                extra.push((
                    "content-disposition",
                    format!(
                        "attachment; filename={name}; filename*=UTF-8''{}",
                        percent_encode_path(&name).replace('/', "%2F")
                    ),
                ));
            }
        }
    }
    serve_object(o, headers, head, extra)
}

/// `GET /object/public/{bucket}/{path}`, which needs no auth: the object of a public bucket.
/// Not in the verified contract; built from the server's route
/// (supabase/storage `src/http/routes/object/getPublicObject.ts`): it looks the bucket up with
/// `findBucket(bucketName, 'id,public', { isPublic: true })`, so a bucket that is missing or
/// not public answers as missing (`NoSuchBucket`, contract §1's table: HTTP 400,
/// `statusCode` "404"), then the object (`NoSuchKey` when missing), and renders it like the
/// authenticated download (contract §4: `content-type`, `content-length`, `etag`,
/// `cache-control`, `Range`). The route has `exposeHeadRoute: false`: no HEAD.
pub(super) fn public_download(emu: &Emu, p: &str, headers: &HeaderMap) -> Response {
    let (bucket, key) = split_object_path(p);
    let st = emu.st();
    if !st.buckets.get(&bucket).is_some_and(|b| b.public) {
        return no_such_bucket();
    }
    let Some(o) = st.objects.get(&(bucket, key)) else {
        return no_such_key();
    };
    serve_object(
        o,
        headers,
        false,
        vec![("cache-control", o.cache_control.clone())],
    )
}
