//! Tests of the Storage emulator itself: each rule of the contract it follows.

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

fn auth(rb: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
    rb.header("apikey", key)
        .header("authorization", format!("Bearer {key}"))
}

/// The project's legacy anon key (a JWT signed with the project's secret).
fn anon_jwt() -> String {
    crate::postgrest::jwt("anon")
}

/// Only the `apikey` header: what passes the gateway but carries no `Authorization`.
fn apikey_only(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.header("apikey", SERVICE_KEY)
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

fn b64(s: &str) -> String {
    STANDARD.encode(s.as_bytes())
}

async fn text(r: reqwest::Response) -> (u16, String) {
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

/// `GET /object/info/{path}` with the service key, as JSON.
async fn object_info(c: &reqwest::Client, st: &str, path: &str) -> Value {
    auth(c.get(format!("{st}/object/info/{path}")), SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn hdr(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

const KEY_EXISTS: &str = r#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"KeyAlreadyExists"}"#;
const NO_SUCH_KEY: &str =
    r#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#;
const NO_SUCH_BUCKET: &str = r#"{"statusCode":"404","error":"Bucket not found","message":"Bucket not found","code":"NoSuchBucket"}"#;
const RLS: &str = r#"{"statusCode":"403","error":"Unauthorized","message":"new row violates row-level security policy","code":"AccessDenied"}"#;

#[tokio::test]
async fn buckets_are_created_once_and_read_back() {
    let s = StorageApi::start_with_keys(&["sb_secret_abc"]).await;
    let st = s.storage_url();
    let c = client();
    let r = auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
        .json(&json!({"id":"videos","name":"videos","public":false,
            "file_size_limit":1048576,"allowed_mime_types":["video/mp4","video/webm"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "content-type").unwrap(), JSON_UTF8);
    assert_eq!(text(r).await, (200, r#"{"name":"videos"}"#.into()));
    let r = auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
        .json(&json!({"id":"videos","name":"videos","public":false}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"BucketAlreadyExists"}"#.into()
        )
    );
    let r = auth(c.post(format!("{st}/bucket")), "sb_secret_abc")
        .json(&json!({"id":"raw","name":"raw","public":false,"file_size_limit":"500MB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (200, r#"{"name":"raw"}"#.into()));

    let r = auth(c.get(format!("{st}/bucket/videos")), SERVICE_KEY)
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with(r#"{"id":"videos","name":"videos","owner":"","public":false,"file_size_limit":1048576,"allowed_mime_types":["video/mp4","video/webm"],"created_at":""#),
        "{body}"
    );
    let v: Value = serde_json::from_str(
        &auth(c.get(format!("{st}/bucket/raw")), SERVICE_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["file_size_limit"], 500_000_000);
    assert_eq!(v["allowed_mime_types"], Value::Null);

    let r = auth(c.get(format!("{st}/bucket/nope")), SERVICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_BUCKET.into()));
    // Auth failures (past the gateway: the apikey is the project's).
    let r = apikey_only(c.get(format!("{st}/bucket/videos")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"400","error":"Error","message":"headers must have required property 'authorization'","code":"InvalidRequest"}"#.into()
        )
    );
    let r = apikey_only(c.get(format!("{st}/bucket/videos")))
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"403","error":"Unauthorized","message":"signature verification failed","code":"AccessDenied"}"#.into()
        )
    );
}

/// Contract §10: a bucket limit above the global upload limit is refused with
/// `EntityTooLarge`; a bucket without a limit of its own gets the global one, which
/// `OPTIONS` answers as `tus-max-size` (§7).
#[tokio::test]
async fn a_bucket_limit_above_the_global_upload_limit_is_refused() {
    let s = StorageApi::start().await;
    let st = s.storage_url();
    let c = client();
    let r = c
        .request(Method::OPTIONS, format!("{st}/upload/resumable"))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "tus-max-size").as_deref(), Some("524288000"));
    s.set_upload_size_limit(Some(FREE_PLAN_UPLOAD_SIZE_LIMIT));
    let create = |body: Value| {
        let c = c.clone();
        let st = st.clone();
        async move {
            text(
                auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let refused = (
        400,
        r#"{"statusCode":"413","error":"Payload too large","message":"The object exceeded the maximum allowed size","code":"EntityTooLarge"}"#.to_string(),
    );
    for limit in [json!(2_147_483_648u64), json!("500MB"), json!(52_428_801)] {
        assert_eq!(
            create(json!({"name":"videos","file_size_limit":limit})).await,
            refused,
            "{limit}"
        );
    }
    let r = c
        .request(Method::OPTIONS, format!("{st}/upload/resumable"))
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "tus-max-size").as_deref(), Some("52428800"));
    // At the limit, or with none of its own (the global one then applies).
    assert_eq!(
        create(json!({"name":"small","file_size_limit":52_428_800})).await,
        (200, r#"{"name":"small"}"#.into())
    );
    assert_eq!(
        create(json!({"name":"videos","file_size_limit":null})).await,
        (200, r#"{"name":"videos"}"#.into())
    );
    assert_eq!(s.bucket("videos").unwrap()["file_size_limit"], Value::Null);
    assert_eq!(s.bucket("small").unwrap()["file_size_limit"], 52_428_800);
    let up = |n: usize| {
        let c = c.clone();
        let st = st.clone();
        async move {
            auth(c.post(format!("{st}/object/videos/a.mp4")), SERVICE_KEY)
                .header("content-type", "video/mp4")
                .body(vec![0u8; n])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    s.set_upload_size_limit(Some(1000));
    assert!(up(1001).await.contains("EntityTooLarge"));
    assert!(up(1000).await.contains("videos/a.mp4"));
}

#[tokio::test]
async fn standard_upload_info_head_upsert_and_metadata() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    let st = s.storage_url();
    let c = client();
    let bytes = data(1_000_000, 1);
    let url = format!("{st}/object/raw/meta/clip.mp4");
    let r = auth(c.post(&url), SERVICE_KEY)
        .header("content-type", "video/mp4")
        .header("cache-control", "max-age=3600")
        .header("x-metadata", "eyJqb2JfaWQiOiI0MiIsInNvdXJjZSI6Inl0In0=")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body.starts_with(r#"{"Key":"raw/meta/clip.mp4","Id":""#),
        "{body}"
    );
    let id = v["Id"].as_str().unwrap().to_string();
    Uuid::parse_str(&id).unwrap();

    // info
    let r = auth(
        c.get(format!("{st}/object/info/raw/meta/clip.mp4")),
        SERVICE_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let etag = hdr(&r, "etag").unwrap();
    assert_eq!(hdr(&r, "cache-control").unwrap(), "max-age=3600");
    assert!(hdr(&r, "last-modified").unwrap().ends_with(" GMT"));
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["name"], "meta/clip.mp4");
    assert_eq!(info["bucket_id"], "raw");
    assert_eq!(info["size"], 1_000_000);
    assert_eq!(info["content_type"], "video/mp4");
    assert_eq!(info["cache_control"], "max-age=3600");
    assert_eq!(info["etag"], etag.as_str());
    assert_eq!(info["metadata"], json!({"job_id":"42","source":"yt"}));
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
    let first_version = info["version"].as_str().unwrap().to_string();

    // HEAD
    let r = auth(c.head(&url), SERVICE_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-type").unwrap(), "video/mp4");
    assert_eq!(hdr(&r, "content-length").unwrap(), "1000000");
    assert_eq!(hdr(&r, "etag").unwrap(), etag);
    assert_eq!(hdr(&r, "cache-control").unwrap(), "max-age=3600");
    assert_eq!(hdr(&r, "accept-ranges").unwrap(), "bytes");
    let r = auth(
        c.head(format!("{st}/object/authenticated/raw/meta/clip.mp4")),
        SERVICE_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = auth(
        c.head(format!("{st}/object/raw/meta/missing.mp4")),
        SERVICE_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(hdr(&r, "content-type").unwrap(), JSON_UTF8);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    let r = auth(
        c.get(format!("{st}/object/info/raw/meta/missing.mp4")),
        SERVICE_KEY,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));

    // GET (with and without Range)
    let r = auth(c.get(&url), SERVICE_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let r = auth(c.get(&url), SERVICE_KEY)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(hdr(&r, "content-range").unwrap(), "bytes 10-19/1000000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);

    // duplicate without upsert, then upsert, then PUT: same Id, new version
    let r = auth(c.post(&url), SERVICE_KEY)
        .header("content-type", "video/mp4")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (400, KEY_EXISTS.into()));
    let r = auth(c.post(&url), SERVICE_KEY)
        .header("content-type", "video/mp4")
        .header("x-upsert", "false")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (400, KEY_EXISTS.into()));
    let other = data(1000, 2);
    let r = auth(c.post(&url), SERVICE_KEY)
        .header("content-type", "video/mp4")
        .header("x-upsert", "true")
        .header("x-metadata", "not base64 !!")
        .body(other.clone())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&text(r).await.1).unwrap();
    assert_eq!(v["Id"], id.as_str());
    let (bytes_now, ct, cc, meta) = s.object("raw", "meta/clip.mp4").unwrap();
    assert_eq!(bytes_now, other);
    assert_eq!(ct, "video/mp4");
    assert_eq!(cc, "no-cache");
    assert_eq!(meta, Value::Null);
    let r = auth(c.put(&url), SERVICE_KEY)
        .header("content-type", "video/webm")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&text(r).await.1).unwrap();
    assert_eq!(v["Id"], id.as_str());
    let info = object_info(&c, &st, "raw/meta/clip.mp4").await;
    assert_ne!(info["version"], first_version.as_str());
    assert_eq!(info["content_type"], "video/webm");
    assert_eq!(info["etag"], etag.as_str(), "same bytes, same etag");

    // list, delete, delete many
    auth(
        c.post(format!("{st}/object/raw/meta/sub/x.mp4")),
        SERVICE_KEY,
    )
    .header("content-type", "video/mp4")
    .body("x")
    .send()
    .await
    .unwrap();
    let list: Value = auth(c.post(format!("{st}/object/list/raw")), SERVICE_KEY)
        .json(&json!({"prefix":"meta","limit":100,"offset":0,"sortBy":{"column":"name","order":"asc"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "clip.mp4");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["metadata"]["size"], 1_000_000);
    assert_eq!(list[0]["metadata"]["mimetype"], "video/webm");
    assert_eq!(list[1]["name"], "sub");
    assert_eq!(list[1]["id"], Value::Null);
    assert_eq!(s.object_count("raw"), 2);
    let r = auth(c.delete(&url), SERVICE_KEY).send().await.unwrap();
    assert_eq!(
        text(r).await,
        (200, r#"{"message":"Successfully deleted"}"#.into())
    );
    let r = auth(c.delete(&url), SERVICE_KEY).send().await.unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
    let rows: Value = auth(c.delete(format!("{st}/object/raw")), SERVICE_KEY)
        .json(&json!({"prefixes":["meta/sub/x.mp4","meta/missing.mp4"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["name"], "meta/sub/x.mp4");
    assert_eq!(s.object_count("raw"), 0);
}

#[tokio::test]
async fn limits_and_missing_buckets_are_wrapped_in_400() {
    let s = StorageApi::start().await;
    s.create_bucket(
        "videos",
        false,
        Some(1_048_576),
        Some(vec!["video/mp4".into(), "image/*".into()]),
    );
    let st = s.storage_url();
    let c = client();
    let up = |path: &str, ct: Option<&str>, n: usize| {
        let mut rb = auth(c.post(format!("{st}/object/{path}")), SERVICE_KEY).body(data(n, 3));
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        rb.send()
    };
    let r = up("videos/big.mp4", Some("video/mp4"), 2_000_000)
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"413","error":"Payload too large","message":"The object exceeded the maximum allowed size","code":"EntityTooLarge"}"#.into()
        )
    );
    let r = up("videos/notvideo.txt", Some("text/plain"), 10)
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"415","error":"invalid_mime_type","message":"mime type text/plain is not supported","code":"InvalidMimeType"}"#.into()
        )
    );
    let r = up("videos/noct.mp4", None, 10).await.unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"415","error":"invalid_mime_type","message":"mime type application/x-www-form-urlencoded is not supported","code":"InvalidMimeType"}"#.into()
        )
    );
    let r = up("videos/cover.webp", Some("image/webp"), 10)
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "type/* wildcard");
    let r = up("videos/ok.mp4", Some("video/mp4"), 1_048_576)
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "exactly the limit");
    let r = up("nosuchbucket/a.mp4", Some("video/mp4"), 10)
        .await
        .unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_BUCKET.into()));
    // The global limit applies too.
    s.set_upload_size_limit(Some(100));
    let r = up("videos/small.mp4", Some("video/mp4"), 101)
        .await
        .unwrap();
    assert!(text(r).await.1.contains("EntityTooLarge"));
    assert_eq!(s.object_count("videos"), 2);
}

#[tokio::test]
async fn anon_and_publishable_keys_are_refused_uploads() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    s.put_object("raw", "a.mp4", b"abc", "video/mp4");
    let st = s.storage_url();
    let c = client();
    for key in [anon_jwt(), crate::postgrest::PUBLISHABLE_KEY.to_string()] {
        let r = auth(c.post(format!("{st}/object/raw/x.mp4")), &key)
            .header("content-type", "video/mp4")
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, RLS.into()));
        let r = auth(c.post(format!("{st}/bucket")), &key)
            .json(&json!({"name":"mine"}))
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, RLS.into()));
        // Reads see nothing.
        let r = auth(c.get(format!("{st}/object/info/raw/a.mp4")), &key)
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
        // TUS: real status, text body.
        let r = auth(c.post(format!("{st}/upload/resumable")), &key)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "3")
            .header(
                "upload-metadata",
                format!("bucketName {},objectName {}", b64("raw"), b64("t.mp4")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (403, "new row violates row-level security policy".into())
        );
    }
    assert_eq!(s.object_count("raw"), 1);
    // A service_role JWT that is not the project's (past the gateway with the project's
    // apikey): signature verification failed.
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
    let p = URL_SAFE_NO_PAD.encode(br#"{"role":"service_role"}"#);
    let r = apikey_only(c.get(format!("{st}/object/info/raw/a.mp4")))
        .bearer_auth(format!("{h}.{p}.x"))
        .send()
        .await
        .unwrap();
    assert!(text(r).await.1.contains("signature verification failed"));
}

#[tokio::test]
async fn signed_urls_download_without_auth_and_expire() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    let bytes = data(5000, 4);
    s.put_object("raw", "meta/clip.mp4", &bytes, "video/mp4");
    let st = s.storage_url();
    let c = client();
    let sign = |path: &str, secs: u64| {
        auth(c.post(format!("{st}/object/sign/raw/{path}")), SERVICE_KEY)
            .json(&json!({"expiresIn": secs}))
            .send()
    };
    let v: Value = sign("meta/clip.mp4", 3600)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let signed = v["signedURL"].as_str().unwrap().to_string();
    assert!(
        signed.starts_with("/object/sign/raw/meta/clip.mp4?token="),
        "{signed}"
    );
    let r = c.get(format!("{st}{signed}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-type").unwrap(), "video/mp4");
    assert!(hdr(&r, "expires").is_some());
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let r = c
        .get(format!("{st}{signed}"))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(hdr(&r, "content-range").unwrap(), "bytes 0-99/5000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..100]);
    let r = c
        .get(format!("{st}{signed}&download=myname.mp4"))
        .send()
        .await
        .unwrap();
    assert!(
        hdr(&r, "content-disposition")
            .unwrap()
            .starts_with("attachment; filename=myname.mp4")
    );

    let r = sign("meta/missing.mp4", 60).await.unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
    let r = c
        .get(format!("{st}/object/sign/raw/meta/clip.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"400","error":"Error","message":"querystring must have required property 'token'","code":"InvalidRequest"}"#.into()
        )
    );
    let r = c
        .get(format!("{st}/object/sign/raw/meta/clip.mp4?token=garbage"))
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""code":"InvalidJWT""#), "{body}");

    // expiresIn 1: expired a second later.
    let v: Value = sign("meta/clip.mp4", 1)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short = v["signedURL"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c.get(format!("{st}{short}")).send().await.unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"400","error":"InvalidJWT","message":"\"exp\" claim timestamp check failed","code":"InvalidJWT"}"#.into()
        )
    );
    s.expire_signed_urls();
    let r = c.get(format!("{st}{signed}")).send().await.unwrap();
    assert!(text(r).await.1.contains("claim timestamp check failed"));
}

async fn tus_create(
    c: &reqwest::Client,
    st: &str,
    len: u64,
    meta: &str,
    upsert: bool,
) -> reqwest::Response {
    let mut rb = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", len.to_string())
        .header("upload-metadata", meta);
    if upsert {
        rb = rb.header("x-upsert", "true");
    }
    rb.send().await.unwrap()
}

fn patch(
    c: &reqwest::Client,
    loc: &str,
    offset: u64,
    body: Vec<u8>,
    upsert: bool,
) -> reqwest::RequestBuilder {
    let mut rb = auth(c.patch(loc), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", OFFSET_OCTET)
        .body(body);
    if upsert {
        rb = rb.header("x-upsert", "true");
    }
    rb
}

async fn tus_head_offset(c: &reqwest::Client, loc: &str) -> reqwest::Response {
    auth(c.head(loc), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn tus_upload_survives_an_interrupted_patch() {
    let s = StorageApi::start().await;
    let st = s.storage_url();
    let c = client();
    auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
        .json(&json!({"id":"raw","name":"raw","public":false,"file_size_limit":"500MB"}))
        .send()
        .await
        .unwrap();
    let total = 13_631_488u64;
    let file = data(total as usize, 5);
    let meta = "bucketName cmF3,objectName dHVzL3ZpZGVvLm1wNA==,contentType dmlkZW8vbXA0,cacheControl MzYwMA==,metadata eyJqb2JfaWQiOiI3In0=";
    let r = tus_create(&c, &st, total, meta, true).await;
    assert_eq!(r.status(), 201);
    assert_eq!(hdr(&r, "tus-resumable").unwrap(), "1.0.0");
    let loc = hdr(&r, "location").unwrap();
    assert!(loc.starts_with(&format!("{st}/upload/resumable/")), "{loc}");
    let id = loc.rsplit('/').next().unwrap();
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(id).unwrap()).unwrap();
    assert!(decoded.starts_with("raw/tus/video.mp4/"), "{decoded}");

    // Chunk 1.
    let chunk = TUS_CHUNK as usize;
    let r = patch(&c, &loc, 0, file[..chunk].to_vec(), true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "6291456");
    assert!(hdr(&r, "tus-complete").is_none());
    let r = tus_head_offset(&c, &loc).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "6291456");
    assert_eq!(hdr(&r, "upload-length").unwrap(), "13631488");
    assert_eq!(hdr(&r, "cache-control").unwrap(), "no-store");
    assert_eq!(
        hdr(&r, "upload-metadata").unwrap(),
        "bucketName cmF3,objectName dHVzL3ZpZGVvLm1wNA==,contentType dmlkZW8vbXA0,cacheControl bWF4LWFnZT0zNjAw,metadata eyJqb2JfaWQiOiI3In0="
    );

    // Wrong offset.
    let r = patch(&c, &loc, 0, file[chunk..2 * chunk].to_vec(), true)
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "content-type").unwrap(), TEXT_UTF8);
    assert_eq!(text(r).await, (409, "Upload-Offset conflict\n".into()));

    // Chunk 2, interrupted after 1.5 MiB: the client sees a connection error.
    s.interrupt_next_patch(1_572_864);
    let e = patch(&c, &loc, 6_291_456, file[chunk..2 * chunk].to_vec(), true)
        .send()
        .await;
    let e = e.expect_err("the interrupted PATCH must fail");
    assert!(e.is_request() && e.status().is_none(), "{e:?}");
    let r = tus_head_offset(&c, &loc).await;
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "7864320");
    assert!(s.object("raw", "tus/video.mp4").is_none());

    // Resume from the server's offset with the rest (the final chunk).
    let r = patch(&c, &loc, 7_864_320, file[7_864_320..].to_vec(), true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "13631488");
    let info = object_info(&c, &st, "raw/tus/video.mp4").await;
    assert_eq!(info["size"], total);
    assert_eq!(info["content_type"], "video/mp4");
    assert_eq!(info["cache_control"], "max-age=3600");
    assert_eq!(info["metadata"], json!({"job_id":"7"}));
    let got = auth(c.get(format!("{st}/object/raw/tus/video.mp4")), SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == file.as_slice(), "TUS roundtrip identical");
    assert_eq!(s.object("raw", "tus/video.mp4").unwrap().0, file);

    // PATCH after completion; DELETE of a finished upload.
    let r = patch(&c, &loc, total, vec![0; 10], true)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (413, "upload's size exceeded\n".into()));
    let r = auth(c.delete(&loc), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.open_uploads(), 0);
    // The object exists now: creating without x-upsert is refused.
    let r = tus_create(&c, &st, 100, meta, false).await;
    assert_eq!(text(r).await, (409, "The resource already exists".into()));
}

#[tokio::test]
async fn tus_errors_follow_the_contract() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    s.create_bucket(
        "videos",
        false,
        Some(1_048_576),
        Some(vec!["video/mp4".into(), "video/webm".into()]),
    );
    let st = s.storage_url();
    let c = client();
    let meta = |b: &str, o: &str, ct: &str| {
        format!(
            "bucketName {},objectName {},contentType {}",
            b64(b),
            b64(o),
            b64(ct)
        )
    };
    let r = tus_create(&c, &st, 100, &meta("nosuch", "a.mp4", "video/mp4"), false).await;
    assert_eq!(text(r).await, (404, "Bucket not found".into()));
    let r = tus_create(
        &c,
        &st,
        2_000_000,
        &meta("videos", "big.mp4", "video/mp4"),
        false,
    )
    .await;
    assert_eq!(text(r).await, (413, "Maximum size exceeded\n".into()));
    let r = tus_create(&c, &st, 100, &meta("videos", "a.txt", "text/plain"), false).await;
    assert_eq!(
        text(r).await,
        (415, "mime type text/plain is not supported".into())
    );
    let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100")
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (400, "Metadata header is required".into()));
    let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
        .header("upload-length", "100")
        .header("upload-metadata", meta("raw", "n.mp4", "video/mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (412, "Tus-Resumable Required\n".into()));
    let r = apikey_only(c.post(format!("{st}/upload/resumable")))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "100")
        .header("upload-metadata", meta("raw", "n.mp4", "video/mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text(r).await,
        (
            400,
            r#"{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"Invalid Compact JWS"}"#.into()
        )
    );

    // Non-numeric cacheControl → no-cache; a 1 MiB non-final chunk is refused (hosted rule).
    let m = format!(
        "{},cacheControl {}",
        meta("raw", "c.mp4", "video/mp4"),
        b64("max-age=60")
    );
    let total = TUS_CHUNK + 10;
    let r = tus_create(&c, &st, total, &m, false).await;
    let loc = hdr(&r, "location").unwrap();
    let r = patch(&c, &loc, 0, vec![1; 1_048_576], false)
        .send()
        .await
        .unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, 400);
    assert!(body.contains("6 MiB"), "{body}");
    let r = tus_head_offset(&c, &loc).await;
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "0");
    let r = patch(&c, &loc, 0, vec![1; TUS_CHUNK as usize], false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = patch(&c, &loc, TUS_CHUNK, vec![2; 10], false)
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
    let (_, _, cc, meta_json) = s.object("raw", "c.mp4").unwrap();
    assert_eq!(cc, "no-cache");
    assert_eq!(meta_json, Value::Null);
    // The file backend's behaviour: any chunk size.
    s.set_hosted_chunk_rule(false);
    let r = tus_create(
        &c,
        &st,
        2_097_152,
        &meta("raw", "small.mp4", "video/mp4"),
        false,
    )
    .await;
    let loc = hdr(&r, "location").unwrap();
    let r = patch(&c, &loc, 0, vec![1; 1_048_576], false)
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "1048576");
    s.set_hosted_chunk_rule(true);

    // Created with x-upsert for an existing object; a PATCH without it → 409.
    s.put_object("raw", "exists.mp4", b"old", "video/mp4");
    let r = tus_create(&c, &st, 3, &meta("raw", "exists.mp4", "video/mp4"), true).await;
    assert_eq!(r.status(), 201);
    let loc = hdr(&r, "location").unwrap();
    let r = patch(&c, &loc, 0, b"new".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (409, "The resource already exists".into()));
    let r = patch(&c, &loc, 0, b"new".to_vec(), true)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.object("raw", "exists.mp4").unwrap().0, b"new");

    // Termination.
    let r = tus_create(&c, &st, 100, &meta("raw", "gone.mp4", "video/mp4"), false).await;
    let loc = hdr(&r, "location").unwrap();
    let r = auth(c.delete(&loc), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = tus_head_offset(&c, &loc).await;
    assert_eq!(r.status(), 404);
    assert_eq!(hdr(&r, "content-length").unwrap(), "36");

    // Creation-with-upload.
    let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "5")
        .header("upload-metadata", meta("raw", "one-shot.mp4", "video/mp4"))
        .header("content-type", OFFSET_OCTET)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "5");
    assert_eq!(s.object("raw", "one-shot.mp4").unwrap().0, b"hello");
}

#[tokio::test]
async fn injected_faults_and_request_log() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    let st = s.storage_url();
    let c = client();
    let url = format!("{st}/object/raw/f.mp4");
    let up = || {
        auth(c.post(&url), SERVICE_KEY)
            .header("content-type", "video/mp4")
            .header("x-upsert", "true")
            .body("abc")
            .send()
    };
    s.fail_next("/object/raw/f.mp4", 500, 2);
    for _ in 0..2 {
        let r = up().await.unwrap();
        assert_eq!(
            text(r).await,
            (
                500,
                r#"{"statusCode":"500","error":"internal","message":"Internal Server Error","code":"InternalError"}"#.into()
            )
        );
    }
    assert_eq!(s.object_count("raw"), 0);
    s.fail_next("f.mp4", 429, 1);
    let r = up().await.unwrap();
    let (status, body) = text(r).await;
    assert_eq!(status, 429);
    assert!(body.contains(r#""statusCode":"429""#) && body.contains("SlowDown"));
    s.fail_next("f.mp4", 404, 1);
    let r = up().await.unwrap();
    assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
    let r = up().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.object_count("raw"), 1);

    // TUS: a real status with a text body; the failed PATCH stores nothing.
    let meta = format!("bucketName {},objectName {}", b64("raw"), b64("t.mp4"));
    let r = tus_create(&c, &st, 3, &meta, false).await;
    let loc = hdr(&r, "location").unwrap();
    s.fail_next("/upload/resumable/", 503, 1);
    let r = patch(&c, &loc, 0, b"xyz".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "tus-resumable").unwrap(), "1.0.0");
    assert_eq!(text(r).await, (503, "emulated fault 503\n".into()));
    let r = tus_head_offset(&c, &loc).await;
    assert_eq!(hdr(&r, "upload-offset").unwrap(), "0");
    let r = patch(&c, &loc, 0, b"xyz".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let reqs = s.requests();
    assert_eq!(
        reqs[0],
        (
            "POST".to_string(),
            "/storage/v1/object/raw/f.mp4".to_string()
        )
    );
    assert_eq!(reqs.last().unwrap().0, "PATCH");
    let h = s.last_headers("/object/raw/f.mp4").unwrap();
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("apikey"), Some(SERVICE_KEY));
    assert_eq!(get("x-upsert"), Some("true"));
    assert_eq!(get("content-type"), Some("video/mp4"));
}

#[tokio::test]
async fn public_downloads_need_no_key_and_only_a_public_bucket_answers_them() {
    let s = StorageApi::start().await;
    s.create_bucket("open", true, None, None);
    s.create_bucket("closed", false, None, None);
    let st = s.storage_url();
    let c = client();
    for bucket in ["open", "closed"] {
        let r = auth(c.post(format!("{st}/object/{bucket}/a/c.jpg")), SERVICE_KEY)
            .header("content-type", "image/jpeg")
            .header("cache-control", "max-age=60")
            .body(data(100, 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c
        .get(format!("{st}/object/public/open/a/c.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(hdr(&r, "cache-control").as_deref(), Some("max-age=60"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), data(100, 1));
    let get = |path: &str| c.get(format!("{st}/object/public/{path}")).send();
    assert_eq!(
        text(get("closed/a/c.jpg").await.unwrap()).await,
        (400, NO_SUCH_BUCKET.into())
    );
    assert_eq!(
        text(get("none/a/c.jpg").await.unwrap()).await,
        (400, NO_SUCH_BUCKET.into())
    );
    assert_eq!(
        text(get("open/a/missing.jpg").await.unwrap()).await,
        (400, NO_SUCH_KEY.into())
    );
    // No HEAD route (`exposeHeadRoute: false`).
    let r = c
        .head(format!("{st}/object/public/open/a/c.jpg"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

mod strict;
