//! Extraction end to end: every link form through the strategies against the loopback
//! Douyin fixture server (reached through the `DOUYIN_UPSTREAM` rewrite).

use douyin_worker::error::ErrorClass;
use douyin_worker::extract::client::ClientOptions;
use douyin_worker::extract::media::Choice;
use douyin_worker::extract::{DouyinExtractor, ExtractError, ExtractOptions};
use douyin_worker::net::upstream::Upstream;

use fakes::douyin::{Behaviour, DouyinServer, image_post, video_post};

const ID: &str = "7412345678901234567";

fn extractor(server: &DouyinServer) -> DouyinExtractor {
    DouyinExtractor::new(ExtractOptions {
        client: ClientOptions {
            upstream: Upstream::rewrite_to(server.url.parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

fn best_url(choice: &Choice) -> &str {
    match choice {
        Choice::Video { best, .. } => &best.urls[0],
        other => panic!("not a video: {other:?}"),
    }
}

#[tokio::test]
async fn every_link_form_reaches_the_record() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::OldSharePage)]).await;
    server.add_short_link(
        "iRNBho6u",
        &format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN&mid=1"),
    );
    server.add_short_link(
        "Ab_c-9",
        &format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN"),
    );
    let x = extractor(&server);
    for input in [
        "7.43 复制打开抖音，看看【作者的作品】旅行 # 日常 https://v.douyin.com/iRNBho6u/ 12/25 x@A.Gv vSy:/"
            .to_string(),
        "https://v.douyin.com/iRNBho6u/".to_string(),
        "https://jx.douyin.com/Ab_c-9/".to_string(),
        format!("https://www.douyin.com/video/{ID}"),
        format!("https://www.douyin.com/note/{ID}"),
        format!("https://www.douyin.com/discover?modal_id={ID}"),
        format!("https://www.douyin.com/user/MS4wLjABAAAA?modal_id={ID}&vid={ID}"),
        format!("https://m.douyin.com/share/video/{ID}/"),
        format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN"),
        format!("https://www.iesdouyin.com/share/slides/{ID}/"),
        format!("https://jingxuan.douyin.com/m/video/{ID}"),
        ID.to_string(),
    ] {
        let got = x
            .extract(&input)
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(got.aweme_id, ID, "{input}");
        assert!(!best_url(&got.choice).contains("watermark=1"), "{input}");
        assert!(!best_url(&got.choice).contains("playwm"), "{input}");
    }
}

#[tokio::test]
async fn the_new_share_page_goes_through_item_info_with_its_tokens_and_cookies() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let x = extractor(&server);
    let got = x.extract(ID).await.unwrap();
    assert_eq!(got.strategy, "h5_iteminfo");
    assert_eq!(got.attempts[0].strategy, "share_page");
    let headers = server.last_headers("/web/api/v2/aweme/iteminfo/").unwrap();
    assert!(headers["cookie"].to_str().unwrap().contains("ttwid="));
    assert!(
        headers["referer"]
            .to_str()
            .unwrap()
            .contains(&format!("/share/video/{ID}/"))
    );
    assert!(headers["user-agent"].to_str().unwrap().contains("iPhone"));
    // The cookies travel on to the downloader.
    assert!(got.cookie.unwrap().contains("ttwid="));
}

#[tokio::test]
async fn encrypt_data_miss_fetches_the_page_again_once_then_goes_on() {
    let server = DouyinServer::start(vec![
        video_post(ID, Behaviour::EncryptDataMiss(1)),
        video_post("7412345678901234568", Behaviour::SlidesOnly),
    ])
    .await;
    let x = extractor(&server);
    let got = x.extract(ID).await.unwrap();
    assert_eq!(got.strategy, "h5_iteminfo");
    let pages = server
        .requests()
        .iter()
        .filter(|r| r.contains(&format!("/share/video/{ID}/")))
        .count();
    assert_eq!(pages, 2, "{:?}", server.requests());
    let got = x.extract("7412345678901234568").await.unwrap();
    assert_eq!(got.strategy, "slidesinfo");
}

#[tokio::test]
async fn region_blocked_posts_fail_permanently_with_douyins_reason() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::RegionBlocked)]).await;
    let e = extractor(&server).extract(ID).await.unwrap_err();
    assert!(matches!(e, ExtractError::Unavailable(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(e.code(), "region-blocked");
    assert!(e.to_string().contains("copyright_foreign"), "{e}");
}

#[tokio::test]
async fn the_captcha_page_is_transient_and_named() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::Captcha)]).await;
    let e = extractor(&server).extract(ID).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    assert!(e.to_string().contains("captcha"), "{e}");
}

#[tokio::test]
async fn unknown_links_are_permanent_and_say_what_was_wrong() {
    let server = DouyinServer::start(vec![]).await;
    let x = extractor(&server);
    for input in [
        "https://example.com/video/1",
        "hello",
        "https://v.douyin.com/unknown/",
    ] {
        let e = x.extract(input).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent, "{input}: {e}");
        assert!(
            e.to_string().starts_with("unsupported link:"),
            "{input}: {e}"
        );
    }
}

#[tokio::test]
async fn image_posts_are_refused_by_default_with_their_count() {
    let server = DouyinServer::start(vec![image_post(ID, Behaviour::OldSharePage)]).await;
    let e = extractor(&server).extract(ID).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("image post (3 images)"), "{e}");
}

#[tokio::test]
async fn a_page_in_an_unknown_shape_is_drift() {
    // The server answers unknown posts with a page that has neither record nor tokens.
    let server = DouyinServer::start(vec![]).await;
    let e = extractor(&server).extract(ID).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Drift, "{e}");
    assert_eq!(e.code(), "extract-drift");
}

/// Runs `douyin-worker extract LINK ARGS...` against the fixture server, with `env`.
async fn run_extract(
    server: &DouyinServer,
    link: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    cmd.args(["extract", link])
        .args(args)
        .env("DOUYIN_UPSTREAM", &server.url)
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_URL")
        .env_remove("SUPABASE_SERVICE_ROLE_KEY")
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        cmd.current_dir(dir.path()).output().unwrap()
    })
    .await
    .unwrap()
}

/// Runs `douyin-worker extract` against the fixture server.
async fn extract_cli(server: &DouyinServer, link: &str) -> (Option<i32>, serde_json::Value) {
    let out = run_extract(server, link, &[], &[]).await;
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

#[tokio::test]
async fn the_extract_command_prints_the_choice_and_exit_codes_tell_failures_apart() {
    let blocked = "7412345678901234568";
    let captcha = "7412345678901234569";
    let server = DouyinServer::start(vec![
        video_post(ID, Behaviour::NewSharePage),
        video_post(blocked, Behaviour::RegionBlocked),
        video_post(captcha, Behaviour::Captcha),
    ])
    .await;
    let (code, json) = extract_cli(&server, &format!("https://www.douyin.com/video/{ID}")).await;
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["aweme_id"], ID);
    assert_eq!(json["strategy"], "h5_iteminfo");
    assert_eq!(json["choice"]["kind"], "video");
    let best = &json["choice"]["best"];
    assert!(!best["urls"].as_array().unwrap().is_empty(), "{json}");
    assert!(best["codec"].is_string());
    assert!(!json["choice"]["candidates"].as_array().unwrap().is_empty());
    assert!(json["attempts"].as_array().unwrap().len() >= 2);
    assert!(json["total_ms"].is_number());
    assert!(json.get("cookie").is_none(), "cookies are never printed");

    let (code, json) = extract_cli(&server, blocked).await;
    assert_eq!(code, Some(3), "{json}");
    assert_eq!(json["error"]["class"], "permanent");
    assert_eq!(json["error"]["code"], "region-blocked");
    let (code, json) = extract_cli(&server, captcha).await;
    assert_eq!(code, Some(4), "{json}");
    assert_eq!(json["error"]["class"], "transient");
    let (code, json) = extract_cli(&server, "7412345678901234560").await;
    assert_eq!(code, Some(5), "{json}");
    assert_eq!(json["error"]["class"], "drift");
    let (code, json) = extract_cli(&server, "https://example.com/x").await;
    assert_eq!(code, Some(2), "{json}");
    assert_eq!(json["error"]["code"], "unsupported-link");
}

fn job(
    payload: Option<serde_json::Value>,
    video: douyin_worker::queue::VideoRow,
) -> douyin_worker::queue::ClaimedJob {
    use douyin_worker::queue::{ClaimedJob, Lease};
    ClaimedJob {
        lease: Lease {
            job_id: uuid::Uuid::new_v4(),
            lease_id: uuid::Uuid::new_v4(),
        },
        video_id: uuid::Uuid::new_v4(),
        lease_expires_at: chrono::Utc::now(),
        attempts: 1,
        max_attempts: 5,
        priority: 0,
        payload,
        scheduled_at: chrono::Utc::now(),
        created_at: chrono::Utc::now(),
        video,
    }
}

#[tokio::test]
async fn as_a_pipeline_stage_it_reads_the_jobs_link_and_reuses_a_valid_cached_url() {
    use douyin_worker::queue::VideoRow;
    use douyin_worker::stage::{Extractor, JobContext, ProgressBoard, StageJob};
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let x = extractor(&server);
    let tmp = tempfile::tempdir().unwrap();
    let ctx_for = |j: &douyin_worker::queue::ClaimedJob| {
        JobContext::new(
            j.lease,
            std::sync::Arc::from("w"),
            tokio_util::sync::CancellationToken::new(),
            tmp.path(),
            std::sync::Arc::new(ProgressBoard::default()),
        )
    };

    // The payload's link wins over the row's.
    let j = job(
        Some(serde_json::json!({"url": format!("https://www.douyin.com/video/{ID}")})),
        VideoRow {
            video_url: Some("https://www.douyin.com/video/1111111111111111111".into()),
            ..Default::default()
        },
    );
    let source = Extractor::extract(&x, &StageJob::from(&j), &ctx_for(&j))
        .await
        .unwrap();
    assert_eq!(source.douyin_id, ID);
    assert_eq!(source.strategy, "h5_iteminfo");
    assert!(
        source.urls[0].contains("douyinvod.com"),
        "{:?}",
        source.urls
    );
    assert!(
        source
            .headers
            .iter()
            .any(|(k, v)| k == "Cookie" && v.contains("ttwid="))
    );
    assert!(
        source
            .headers
            .iter()
            .any(|(k, v)| k == "Referer" && v == "https://www.douyin.com/")
    );
    assert_eq!(source.video.douyin_id.as_deref(), Some(ID));
    assert!(source.video.title.is_some());
    let cached_url = source.video.video_url_direct.clone().unwrap();
    let meta = source.video.video_url_meta.clone().unwrap();
    assert!(meta["expires_at"].is_string(), "{meta}");

    // The cache the completion writes is reused while valid: no request to Douyin.
    let before = server.requests().len();
    let j = job(
        None,
        VideoRow {
            douyin_id: Some(ID.into()),
            video_url_direct: Some(cached_url.clone()),
            video_url_meta: Some(meta.clone()),
            ..Default::default()
        },
    );
    let source = Extractor::extract(&x, &StageJob::from(&j), &ctx_for(&j))
        .await
        .unwrap();
    assert_eq!(source.strategy, "cache");
    assert_eq!(source.urls[0], cached_url);
    assert_eq!(server.requests().len(), before);

    // An expired cache (the fixture's 2023 URL) is extracted again.
    let j = job(
        None,
        VideoRow {
            douyin_id: Some(ID.into()),
            video_url_direct: Some("https://v26-web.douyinvod.com/22428bfcf501653e1ba980825a63593a/64134b44/video/tos/cn/x/".into()),
            ..Default::default()
        },
    );
    let source = Extractor::extract(&x, &StageJob::from(&j), &ctx_for(&j))
        .await
        .unwrap();
    assert_eq!(source.strategy, "h5_iteminfo");
}

#[tokio::test]
async fn get_saves_a_validated_file_and_exit_codes_tell_failures_apart() {
    use sha2::Digest;
    let blocked = "7412345678901234568";
    let server = DouyinServer::start(vec![
        video_post(ID, Behaviour::NewSharePage),
        video_post(blocked, Behaviour::RegionBlocked),
    ])
    .await;
    let out = tempfile::tempdir().unwrap();
    let run = |link: String| {
        let upstream = server.url.clone();
        let dir = out.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
                .args(["get", &link, "-o"])
                .arg(&dir)
                .current_dir(&dir)
                .env("DOUYIN_UPSTREAM", upstream)
                .env_remove("DATABASE_URL")
                .env_remove("SUPABASE_URL")
                .env_remove("SUPABASE_SERVICE_ROLE_KEY")
                .output()
                .unwrap()
        })
    };
    let o = run(format!("https://www.douyin.com/video/{ID}"))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = out.path().join(format!("{ID}.mp4"));
    assert_eq!(summary["path"].as_str(), Some(path.to_str().unwrap()));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(summary["size"], bytes.len());
    assert_eq!(
        summary["sha256"],
        format!("{:x}", sha2::Sha256::digest(&bytes))
    );
    assert_eq!(summary["mime_type"], "video/mp4");
    assert!(!String::from_utf8_lossy(&bytes).contains("watermark=1"));
    assert!(
        err.contains("downloaded"),
        "plain progress lines off a terminal: {err}"
    );
    // Only the file: no partial download left beside it.
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let o = run(blocked.to_string()).await.unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run("https://example.com/nope".to_string()).await.unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
}

/// A server counting its requests and answering `body`; returns its address and the count.
async fn counting_server(
    body: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            body
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// A "Douyin" that redirects every request to `location`.
async fn redirecting_douyin(location: String) -> String {
    let app = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_douyin_page_redirecting_to_a_private_address_is_refused_before_it_is_asked() {
    use std::sync::atomic::Ordering;
    const INTERNAL: &str = "INTERNAL-ADMIN-PAGE root:x:0:0";
    let (internal, hits) = counting_server(INTERNAL).await;
    for location in [
        format!("http://{internal}/admin"),
        format!("http://localhost:{}/admin", internal.port()),
        format!("http://[::ffff:127.0.0.1]:{}/admin", internal.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let douyin = redirecting_douyin(location.clone()).await;
        let x = DouyinExtractor::new(ExtractOptions {
            client: ClientOptions {
                upstream: Upstream::rewrite_to(douyin.parse().unwrap()),
                timeout: std::time::Duration::from_secs(3),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let e = x
            .extract(&format!("https://www.douyin.com/video/{ID}"))
            .await
            .expect_err("nothing to extract");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("INTERNAL-ADMIN-PAGE"), "{location}: {text}");
        assert!(
            text.contains("private, loopback or link-local"),
            "{location}: the refusal is named: {text}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the internal server was asked"
    );

    // The same redirect is followed when the guard is lifted (tests only): the check above
    // is what stops it.
    let douyin = redirecting_douyin(format!("http://{internal}/admin")).await;
    let x = DouyinExtractor::new(ExtractOptions {
        client: ClientOptions {
            upstream: Upstream::rewrite_to(douyin.parse().unwrap()),
            allow_private_networks: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let _ = x
        .extract(&format!("https://www.douyin.com/video/{ID}"))
        .await;
    assert!(hits.load(Ordering::SeqCst) > 0);
}

/// The kept answers in `dir`, parsed.
fn kept(dir: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            (text, json)
        })
        .collect()
}

#[tokio::test]
async fn an_answer_in_an_unknown_shape_is_kept_once_per_strategy_without_cookies() {
    // Unknown posts get a page with neither record nor tokens, and Douyin's cookies.
    let server = DouyinServer::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let drift_dir = dir.path().join("drift");
    let user_cookie = "sessionid=user-s3ss10n-2f7c; lang=zh";
    douyin_worker::redact::register_cookie(user_cookie);
    let x = DouyinExtractor::new(ExtractOptions {
        client: ClientOptions {
            upstream: Upstream::rewrite_to(server.url.parse().unwrap()),
            cookie: Some(douyin_worker::config::Secret::new(user_cookie)),
            ..Default::default()
        },
        drift_dir: Some(drift_dir.clone()),
        ..Default::default()
    })
    .unwrap();
    let first = x.extract(ID).await.unwrap_err();
    assert_eq!(first.class(), ErrorClass::Drift, "{first}");
    let after_one = kept(&drift_dir);
    assert!(!after_one.is_empty(), "nothing kept");
    // Three more in the same hour: nothing more.
    for _ in 0..3 {
        assert_eq!(x.extract(ID).await.unwrap_err().class(), ErrorClass::Drift);
    }
    let files = kept(&drift_dir);
    assert_eq!(files.len(), after_one.len(), "one per strategy per hour");
    let mut strategies: Vec<_> = files
        .iter()
        .map(|(_, j)| j["strategy"].as_str().unwrap().to_string())
        .collect();
    strategies.dedup();
    assert_eq!(strategies.len(), files.len(), "{strategies:?}");
    for (text, json) in &files {
        assert!(
            !text.contains("user-s3ss10n-2f7c"),
            "the user's cookie: {text}"
        );
        assert!(
            !text.contains(&format!("test-ttwid-{ID}")),
            "a cookie Douyin set: {text}"
        );
        assert_eq!(json["aweme_id"], ID);
        assert!(!json["what"].as_str().unwrap().is_empty(), "{json}");
        assert_eq!(json["request"]["method"], "GET");
        assert!(json["request"]["url"].as_str().unwrap().contains("douyin"));
        assert_eq!(json["response"]["status"], 200);
        assert!(json["body"].as_str().unwrap().contains("<html"), "{json}");
    }
    let share_page = files
        .iter()
        .find(|(_, j)| j["request"]["url"].as_str().unwrap().contains("/share/"))
        .expect("the share page was kept");
    let headers = share_page.1["response"]["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!([
            "set-cookie",
            "ttwid=<cookie>; Path=/; HttpOnly"
        ])),
        "{headers:?}"
    );
}

#[tokio::test]
async fn extract_save_writes_every_strategys_answer() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let save = tempfile::tempdir().unwrap();
    let folder = save.path().join("answers");
    let out = run_extract(
        &server,
        ID,
        &["--save", folder.to_str().unwrap()],
        &[("DOUYIN_COOKIE", "sessionid=cli-s3ss10n-8e1d")],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = kept(&folder);
    // The share page (no record since August 2026), then the item-info answer that had it.
    let strategies: Vec<_> = files
        .iter()
        .map(|(_, j)| j["strategy"].as_str().unwrap().to_string())
        .collect();
    assert!(strategies.len() >= 2, "{strategies:?}");
    assert!(
        strategies.iter().any(|s| s == "h5_iteminfo"),
        "{strategies:?}"
    );
    for (text, _) in &files {
        assert!(!text.contains("cli-s3ss10n-8e1d"), "{text}");
        assert!(!text.contains(&format!("test-ttwid-{ID}")), "{text}");
    }
}
