//! The pure parts of the browser strategy, on the recorded fixtures.

use std::path::Path;

use serde_json::{Value, json};

use super::capture::{
    cookie_header, cookie_pairs, detail_record, headful_user_agent, is_detail_url, normalise,
    page_record, render_data,
};
use super::launch::find_executable;
use super::{BrowserError, page_url};
use crate::error::ErrorClass;
use crate::extract::aweme::ParseError;
use crate::extract::link::PostKind;
use crate::extract::strategy::{StrategyError, Target};

const WEB_AWEME_2023: &str =
    include_str!("../../../tests/fixtures/douyin/web_aweme_post_video_2023.json");
const FILTERED_2026: &str = include_str!(
    "../../../tests/fixtures/douyin/app_detail_filtered_copyright_foreign_2026-09.json"
);
const CAPTCHA: &str = include_str!("../../../tests/fixtures/douyin/captcha-middle-page.html");
const REFLOW_SNIPPET: &str =
    include_str!("../../../tests/fixtures/douyin/share_page_reflow_context_snippet.html");

const ID: &str = "7188795449468259623";

fn recorded_aweme() -> Value {
    let fixture: Value = serde_json::from_str(WEB_AWEME_2023).unwrap();
    fixture["aweme_list"][0].clone()
}

/// The recorded aweme as the detail API wraps it.
fn detail_body() -> String {
    json!({"status_code": 0, "aweme_detail": recorded_aweme()}).to_string()
}

/// snake_case → camelCase keys, and play addresses as `[{src}]` with protocol-relative URLs,
/// the shape `www.douyin.com` puts in RENDER_DATA.
fn web_shape(v: &Value) -> Value {
    fn camel(key: &str) -> String {
        match key {
            "bit_rate" => "bitRateList".into(),
            "play_addr_265" => "playAddr265".into(),
            _ => {
                let mut out = String::new();
                let mut upper = false;
                for c in key.chars() {
                    match c {
                        '_' => upper = true,
                        c if upper => {
                            out.push(c.to_ascii_uppercase());
                            upper = false;
                        }
                        c => out.push(c),
                    }
                }
                out
            }
        }
    }
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let value = match (k.starts_with("play_addr"), v.get("url_list")) {
                        (true, Some(Value::Array(urls))) => Value::Array(
                            urls.iter()
                                .filter_map(Value::as_str)
                                .map(|u| json!({"src": u.split_once(':').map_or(u, |(_, rest)| rest)}))
                                .collect(),
                        ),
                        _ => web_shape(v),
                    };
                    (camel(k), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(web_shape).collect()),
        other => other.clone(),
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[test]
fn detail_urls_are_recognised_also_through_the_rewrite() {
    assert!(is_detail_url(
        "https://www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id=1&aid=6383"
    ));
    assert!(is_detail_url(
        "http://127.0.0.1:9000/www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id=1"
    ));
    assert!(!is_detail_url(
        "https://www.douyin.com/aweme/v1/web/aweme/post/?x=/aweme/v1/web/aweme/detail/"
    ));
    assert!(!is_detail_url("https://www.douyin.com/video/1"));
}

#[test]
fn the_captured_detail_answer_gives_the_record() {
    let record = detail_record(&detail_body(), ID).unwrap();
    assert_eq!(record.aweme_id.as_deref(), Some(ID));
    let play = record.video.unwrap().play_addr.unwrap();
    assert_eq!(play.url_list.len(), 3);
}

#[test]
fn a_filtered_detail_answer_is_unavailable_and_a_captcha_is_transient() {
    let fixture: Value = serde_json::from_str(FILTERED_2026).unwrap();
    let id = fixture["filter_detail"]["aweme_id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = detail_record(FILTERED_2026, &id).unwrap_err();
    assert!(matches!(err, ParseError::Unavailable { .. }), "{err:?}");
    assert_eq!(detail_record(CAPTCHA, ID).unwrap_err(), ParseError::Captcha);
    assert_eq!(page_record(CAPTCHA, ID).unwrap_err(), ParseError::Captcha);
    let strategy: StrategyError = BrowserError::from(ParseError::Captcha).into();
    assert_eq!(strategy, StrategyError::Parse(ParseError::Captcha));
}

#[test]
fn a_page_without_data_has_no_record_yet() {
    assert!(page_record(REFLOW_SNIPPET, ID).unwrap().is_none());
    assert!(
        page_record("<html><body><div id=root></div></body></html>", ID)
            .unwrap()
            .is_none()
    );
}

#[test]
fn router_data_in_the_page_gives_the_record() {
    let data = json!({"loaderData": {"video_(id)/page": {"videoInfoRes": {
        "status_code": 0, "item_list": [recorded_aweme()], "filter_list": []}}}});
    let html = format!(
        "<html><body><script>window._ROUTER_DATA = {};</script></body></html>",
        data.to_string().replace('/', "\\u002F")
    );
    let record = page_record(&html, ID).unwrap().unwrap();
    assert_eq!(record.aweme_id.as_deref(), Some(ID));
}

#[test]
fn render_data_of_the_web_page_gives_the_same_record_as_the_api() {
    let web = web_shape(&recorded_aweme());
    assert!(
        web["video"]["bitRateList"][0]["playAddr"][0]["src"]
            .as_str()
            .unwrap()
            .starts_with("//")
    );
    let data = json!({"app": {"videoDetail": web}, "1": {"ua": "x"}});
    let html = format!(
        "<html><head></head><body><script id=\"RENDER_DATA\" type=\"application/json\">{}</script></body></html>",
        encode(&data.to_string())
    );
    assert_eq!(render_data(&html).unwrap(), data);
    let from_page = page_record(&html, ID).unwrap().unwrap();
    let from_api = detail_record(&detail_body(), ID).unwrap();
    let (page_video, api_video) = (from_page.video.unwrap(), from_api.video.unwrap());
    // Protocol-relative URLs come back as https.
    let schemeless = |urls: &[String]| -> Vec<String> {
        urls.iter()
            .map(|u| {
                u.split_once(':')
                    .map_or(u.clone(), |(_, rest)| rest.to_string())
            })
            .collect()
    };
    let page_play = page_video.play_addr.unwrap().url_list;
    assert!(
        page_play.iter().all(|u| u.starts_with("https://")),
        "{page_play:?}"
    );
    assert_eq!(
        schemeless(&page_play),
        schemeless(&api_video.play_addr.unwrap().url_list)
    );
    let (page_rates, api_rates) = (page_video.bit_rate.unwrap(), api_video.bit_rate.unwrap());
    assert_eq!(page_rates.len(), api_rates.len());
    for (p, a) in page_rates.iter().zip(&api_rates) {
        assert_eq!(p.gear_name, a.gear_name);
        assert_eq!(p.bit_rate, a.bit_rate);
        assert_eq!(p.is_h265, a.is_h265);
        assert_eq!(
            schemeless(&p.play_addr.as_ref().unwrap().url_list),
            schemeless(&a.play_addr.as_ref().unwrap().url_list)
        );
    }
    // The older shape (`aweme.detail`) and a record for another post.
    let older = json!({"41": {"aweme": {"detail": web_shape(&recorded_aweme())}}});
    let html = format!(
        "<script id=\"RENDER_DATA\" type=\"application/json\">{}</script>",
        encode(&older.to_string())
    );
    assert!(page_record(&html, ID).unwrap().is_some());
    assert!(matches!(
        page_record(&html, "7000000000000000000"),
        Err(ParseError::IdMismatch { .. })
    ));
}

#[test]
fn normalising_leaves_the_api_shape_alone() {
    let api = recorded_aweme();
    assert_eq!(normalise(&api), api);
    assert_eq!(
        normalise(&json!({"video": {"cover": "//p3.douyinpic.com/c.jpeg"}})),
        json!({"video": {"cover": {"url_list": ["https://p3.douyinpic.com/c.jpeg"]}}})
    );
}

#[test]
fn cookies_are_merged_user_first() {
    let page = vec![
        ("ttwid".to_string(), "abc".to_string()),
        ("s_v_web_id".to_string(), "verify_x".to_string()),
    ];
    assert_eq!(
        cookie_header(Some(" sessionid=1; "), &page).as_deref(),
        Some("sessionid=1; ttwid=abc; s_v_web_id=verify_x")
    );
    assert_eq!(cookie_header(None, &[]), None);
    assert_eq!(cookie_header(Some(""), &[]), None);
    assert_eq!(
        cookie_pairs("a=1; b = 2;; =x; c"),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
}

#[test]
fn the_headless_mark_is_removed_from_the_user_agent() {
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
    assert_eq!(
        headful_user_agent(ua),
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
    );
}

#[test]
fn page_urls_follow_the_kind() {
    let mut target = Target {
        aweme_id: "7412345678901234567".into(),
        kind: None,
    };
    assert_eq!(
        page_url(&target).as_str(),
        "https://www.douyin.com/video/7412345678901234567"
    );
    target.kind = Some(PostKind::Note);
    assert_eq!(
        page_url(&target).as_str(),
        "https://www.douyin.com/note/7412345678901234567"
    );
}

#[test]
fn the_executable_is_chromium_path_or_the_first_one_on_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let make = |path: &Path, mode: u32| {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    make(&a.join("chromium"), 0o644); // not executable: skipped
    make(&b.join("chromium"), 0o755);
    make(&a.join("google-chrome"), 0o755);
    let path = std::env::join_paths([&a, &b]).unwrap();
    assert_eq!(
        find_executable(None, Some(&path)).unwrap(),
        b.join("chromium")
    );
    let explicit = a.join("google-chrome");
    assert_eq!(
        find_executable(Some(&explicit), Some(&path)).unwrap(),
        explicit
    );
    let missing = find_executable(Some(&a.join("nope")), Some(&path)).unwrap_err();
    assert!(missing.contains("CHROMIUM_PATH"), "{missing}");
    let empty = std::env::join_paths([dir.path()]).unwrap();
    assert!(find_executable(None, Some(&empty)).is_err());
    assert!(find_executable(None, None).is_err());
    assert_eq!(
        BrowserError::NotFound("x".into()).class(),
        ErrorClass::Permanent
    );
    assert!(matches!(
        StrategyError::from(BrowserError::NotFound("x".into())),
        StrategyError::Skipped(_)
    ));
}
