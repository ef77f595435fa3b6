//! Self-tests of the emulator's stricter rules and of its size fault: what the real server
//! (and the gateway in front of it) refuses, the emulator refuses too.

use super::*;

#[tokio::test]
async fn a_misreported_size_changes_info_and_head_only_as_often_as_asked() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    s.put_object("raw", "a/f.mp4", &data(1000, 1), "video/mp4");
    s.put_object("raw", "other.mp4", &data(10, 2), "video/mp4");
    let st = s.storage_url();
    let c = client();
    let head = |path: &str| auth(c.head(format!("{st}/object/{path}")), SERVICE_KEY).send();
    s.misreport_size("/raw/a/f.mp4", -1, 2);
    assert_eq!(object_info(&c, &st, "raw/a/f.mp4").await["size"], 999);
    // Another object is not touched.
    assert_eq!(object_info(&c, &st, "raw/other.mp4").await["size"], 10);
    let r = head("raw/a/f.mp4").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-length").as_deref(), Some("999"));
    // Both taken: the truth again, and a download is always whole.
    assert_eq!(object_info(&c, &st, "raw/a/f.mp4").await["size"], 1000);
    let r = head("raw/a/f.mp4").await.unwrap();
    assert_eq!(hdr(&r, "content-length").as_deref(), Some("1000"));
    s.misreport_size("f.mp4", 5, 1);
    let r = auth(c.get(format!("{st}/object/raw/a/f.mp4")), SERVICE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), data(1000, 1));
    assert_eq!(object_info(&c, &st, "raw/a/f.mp4").await["size"], 1005);
    // Never below zero; cleared with the other faults.
    s.misreport_size("f.mp4", -5000, 9);
    assert_eq!(object_info(&c, &st, "raw/a/f.mp4").await["size"], 0);
    s.clear_faults();
    assert_eq!(object_info(&c, &st, "raw/a/f.mp4").await["size"], 1000);
}

/// The gateway's refusal body, as JSON.
async fn refusal(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Contract §0: "`apikey` is consumed by the hosted API gateway, which rejects requests
/// without a valid `apikey`", and `sb_secret_…` keys "are only accepted through the hosted
/// gateway": a key the project never issued is refused like a missing one, before storage
/// sees the request; an issued opaque key takes its role only as the request's own apikey.
#[tokio::test]
async fn the_gateway_requires_a_key_of_the_project() {
    let s =
        StorageApi::start_with_keys(&["sb_secret_issued_0123", "sb_publishable_issued_0123"]).await;
    s.create_bucket("raw", false, None, None);
    s.put_object("raw", "a.mp4", b"abc", "video/mp4");
    let st = s.storage_url();
    let c = client();
    // No apikey, whatever the bearer token: refused, nothing created.
    for rb in [
        c.post(format!("{st}/bucket")).json(&json!({"name": "new"})),
        c.post(format!("{st}/upload/resumable"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "3")
            .header(
                "upload-metadata",
                format!("bucketName {},objectName {}", b64("raw"), b64("t")),
            ),
    ] {
        let (status, body) = refusal(rb.bearer_auth(SERVICE_KEY).send().await.unwrap()).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], "No API key found in request", "{body}");
    }
    assert!(s.bucket("new").is_none());
    assert_eq!(s.open_uploads(), 0);
    // Keys the project never issued, one of another project, an expired one: refused.
    let now = chrono::Utc::now().timestamp();
    let expired = crate::postgrest::sign_jwt(
        &json!({"role": "service_role", "iat": now - 20, "exp": now - 10}),
    );
    let foreign = {
        let key = crate::postgrest::jwt("service_role");
        let (unsigned, _) = key.rsplit_once('.').unwrap();
        format!("{unsigned}.c2lnbmVkLWJ5LWFub3RoZXItcHJvamVjdA")
    };
    for key in [
        "sb_secret_never_issued_0123",
        "sb_publishable_never_issued",
        "service-key-for-tests",
        &expired,
        &foreign,
    ] {
        let (status, body) = refusal(
            auth(c.get(format!("{st}/bucket/raw")), key)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("Invalid API key")),
            "{key}"
        );
    }
    // Issued keys: the secret one is service_role, the publishable one anon.
    let r = auth(c.post(format!("{st}/bucket")), "sb_secret_issued_0123")
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, (200, r#"{"name":"mine"}"#.into()));
    let r = auth(
        c.get(format!("{st}/object/info/raw/a.mp4")),
        "sb_publishable_issued_0123",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        text(r).await,
        (400, NO_SUCH_KEY.into()),
        "anon sees nothing"
    );
    // An opaque bearer that is not the request's apikey is not swapped: a bad token.
    let r = c
        .get(format!("{st}/object/info/raw/a.mp4"))
        .header("apikey", crate::postgrest::PUBLISHABLE_KEY)
        .bearer_auth(SERVICE_KEY)
        .send()
        .await
        .unwrap();
    assert!(text(r).await.1.contains("signature verification failed"));
    // What a browser opens without a key: a signed download, TUS capabilities.
    let signed: Value = auth(c.post(format!("{st}/object/sign/raw/a.mp4")), SERVICE_KEY)
        .json(&json!({"expiresIn": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .get(format!("{st}{}", signed["signedURL"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"abc");
    let r = c
        .request(reqwest::Method::OPTIONS, format!("{st}/upload/resumable"))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// When the upload's URL expires, per `Upload-Expires` (`RFC 7231` date).
fn expires_at(r: &reqwest::Response) -> chrono::DateTime<chrono::FixedOffset> {
    let v = hdr(r, "upload-expires").expect("an Upload-Expires header");
    chrono::DateTime::parse_from_rfc2822(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Contract §7: "Upload URLs expire after `TUS_URL_EXPIRY_MS` (default 1 h)". The create and
/// every PATCH of an unfinished upload say when (`Upload-Expires`, creation plus the
/// lifetime); past it, `HEAD` and `PATCH` answer 410 (`@tus/server`'s
/// `FILE_NO_LONGER_EXISTS`), the upload is no longer open, and `DELETE` still removes it.
#[tokio::test]
async fn tus_upload_urls_expire_after_their_lifetime() {
    let s = StorageApi::start().await;
    s.create_bucket("raw", false, None, None);
    s.set_hosted_chunk_rule(false);
    let st = s.storage_url();
    let c = client();
    let meta = format!("bucketName {},objectName {}", b64("raw"), b64("t.mp4"));
    let r = tus_create(&c, &st, 6, &meta, false).await;
    assert_eq!(r.status(), 201);
    let expires = expires_at(&r);
    let in_an_hour = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert!(
        (expires.timestamp() - in_an_hour.timestamp()).abs() <= 60,
        "{expires} is an hour after the creation"
    );
    let loc = hdr(&r, "location").unwrap();
    let r = patch(&c, &loc, 0, b"abc".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        expires_at(&r),
        expires,
        "the creation's expiry, not the PATCH's"
    );
    assert_eq!(s.open_uploads(), 1);

    s.expire_tus_uploads();
    let gone = (410, "The file for this url no longer exists\n".to_string());
    assert_eq!(
        tus_head_offset(&c, &loc).await.status(),
        410,
        "HEAD: no body"
    );
    let r = patch(&c, &loc, 3, b"def".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(text(r).await, gone);
    assert_eq!(s.open_uploads(), 0, "an expired upload is not open");
    assert!(s.object("raw", "t.mp4").is_none());
    let r = auth(c.delete(&loc), SERVICE_KEY)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // The lifetime is the server's setting: two hours now.
    s.set_tus_url_lifetime(Duration::from_secs(7200));
    let r = tus_create(&c, &st, 6, &meta, false).await;
    let in_two_hours = chrono::Utc::now() + chrono::Duration::seconds(7200);
    assert!((expires_at(&r).timestamp() - in_two_hours.timestamp()).abs() <= 60);
    // A finished upload has no expiry to announce.
    let loc = hdr(&r, "location").unwrap();
    let r = patch(&c, &loc, 0, b"abcdef".to_vec(), false)
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&r, "tus-complete").as_deref(), Some("1"));
    assert_eq!(hdr(&r, "upload-expires"), None);
}
