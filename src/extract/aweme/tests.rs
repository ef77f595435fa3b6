use serde_json::{Value, json};

use super::*;

const POST_2023: &str =
    include_str!("../../../tests/fixtures/douyin/web_aweme_post_video_2023.json");
const FILTERED_2026: &str = include_str!(
    "../../../tests/fixtures/douyin/app_detail_filtered_copyright_foreign_2026-09.json"
);
const ENCRYPT_MISS: &str =
    include_str!("../../../tests/fixtures/douyin/h5_iteminfo_error_encrypt_data_miss.json");
const CAPTCHA: &str = include_str!("../../../tests/fixtures/douyin/captcha-middle-page.html");
const REFLOW: &str =
    include_str!("../../../tests/fixtures/douyin/share_page_reflow_context_snippet.html");
const CDN_403: &str = include_str!("../../../tests/fixtures/douyin/cdn_403_forbidden_2024-11.json");

const ID_2023: &str = "7188795449468259623";

/// The aweme of the 2023 capture, as JSON.
fn aweme_2023() -> Value {
    let post: Value = serde_json::from_str(POST_2023).unwrap();
    post["aweme_list"][0].clone()
}

/// A share page whose `_ROUTER_DATA` is `router`, with every `/` written `\u002F` as Douyin does.
fn share_page(router: &Value) -> String {
    let escaped = router.to_string().replace('/', "\\u002F");
    format!(
        "<!doctype html><html><head><title>抖音</title></head><body><div id=\"root\"></div>\
         <script>window._ROUTER_DATA = {escaped}</script><script>window.x = 1;</script></body></html>"
    )
}

fn loader(key: &str, video_info_res: Value) -> Value {
    json!({ "loaderData": { "layout": { "x": 1 }, key: { "videoInfoRes": video_info_res } }, "errors": null })
}

fn share_item(id: &str) -> Value {
    json!({
        "aweme_id": id,
        "desc": "分享页",
        "author": { "nickname": "作者", "uid": 12345, "sec_uid": "MS4w" },
        "video": {
            "play_addr": {
                "uri": "v0200fg10000abc",
                "url_list": ["https://aweme.snssdk.com/aweme/v1/playwm/?video_id=v0200fg10000abc&ratio=720p&line=0"]
            },
            "cover": { "url_list": ["https://p3-sign.douyinpic.com/cover.jpeg?x-expires=1700000000"] },
            "width": 720, "height": 1280
        }
    })
}

#[test]
fn fixture_2023_record_reads_every_field() {
    let aweme = Aweme::from_value(&aweme_2023()).unwrap();
    assert_eq!(aweme.aweme_id.as_deref(), Some(ID_2023));
    assert_eq!(aweme.desc.as_deref(), Some("艾特身边最像它的人来看"));
    assert_eq!(aweme.create_time, Some(1673771886));
    assert_eq!(aweme.duration, Some(13095));
    assert_eq!(aweme.aweme_type, Some(0));
    assert!(aweme.images.is_none(), "images: null reads as absent");
    let status = aweme.status.as_ref().unwrap();
    assert_eq!(
        (
            status.is_delete,
            status.is_prohibited,
            status.private_status
        ),
        (Some(false), Some(false), Some(0))
    );
    assert_eq!(aweme.statistics.as_ref().unwrap()["digg_count"], 48559);
    let music = aweme.music.as_ref().unwrap();
    assert_eq!(music.play_url.as_ref().unwrap().url_list.len(), 2);
    let video = aweme.video.as_ref().unwrap();
    assert_eq!(
        (video.width, video.height, video.is_h265),
        (Some(1080), Some(1440), Some(false))
    );
    let gears = video.bit_rate.as_ref().unwrap();
    assert_eq!(gears.len(), 3);
    assert_eq!(gears[0].gear_name.as_deref(), Some("adapt_1080_0"));
    assert_eq!(gears[0].bit_rate, Some(2012897));
    assert_eq!(gears[0].fps, Some(30));
    assert_eq!(gears[2].is_bytevc1, Some(true));
    assert_eq!(gears[2].quality_type, Some(15));
    let addr = gears[0].play_addr.as_ref().unwrap();
    assert_eq!(addr.data_size, Some(3265927));
    assert_eq!((addr.width, addr.height), (Some(1080), Some(1440)));
    assert_eq!(
        addr.file_hash.as_deref(),
        Some("c5403780de2d04ee827e4f0ba8a8f171")
    );
    assert_eq!(addr.url_list.len(), 3);
    assert!(video.play_addr_265.is_some());
    assert!(video.download_addr.is_some());
    check_status(&aweme).unwrap();
}

#[test]
fn fixture_2023_through_every_parser() {
    let item = aweme_2023();
    let detail = json!({ "status_code": 0, "aweme_detail": item }).to_string();
    assert_eq!(
        detail_record(&detail, ID_2023).unwrap().aweme_id.as_deref(),
        Some(ID_2023)
    );
    let iteminfo = json!({ "status_code": 0, "item_list": [item], "filter_list": [] }).to_string();
    assert!(iteminfo_record(&iteminfo, ID_2023).unwrap().video.is_some());
    let slides = json!({ "status_code": 0, "aweme_details": [item] }).to_string();
    assert!(slidesinfo_record(&slides, ID_2023).unwrap().video.is_some());
    let page = share_page(&loader(
        "video_(id)/page",
        json!({ "item_list": [item], "filter_list": [] }),
    ));
    let aweme = share_page_record(&page, ID_2023).unwrap();
    let url = &aweme.video.unwrap().play_addr.unwrap().url_list[0];
    assert!(
        url.starts_with("http://v26-web.douyinvod.com/3f403c347ac78cd11b51c0e5b6e35d26/64134b44/"),
        "{url}"
    );
}

#[test]
fn fixture_filtered_copyright_foreign_is_region_blocked() {
    let err = detail_record(FILTERED_2026, "7683878399252733433").unwrap_err();
    assert_eq!(
        err,
        ParseError::Unavailable {
            reason: "region blocked (copyright_foreign)".into()
        }
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        err.to_string(),
        "unavailable: region blocked (copyright_foreign)"
    );
    // The same answer about another item is not about ours.
    let other = detail_record(FILTERED_2026, "7000000000000000001").unwrap_err();
    assert!(
        matches!(other, ParseError::IdMismatch { ref got, .. } if got == "7683878399252733433"),
        "{other:?}"
    );
    // A detail message is kept.
    let with_msg = FILTERED_2026.replace("\"detail_msg\": \"\"", "\"detail_msg\": \"因版权限制\"");
    let err = detail_record(&with_msg, "7683878399252733433").unwrap_err();
    assert_eq!(
        err,
        ParseError::Unavailable {
            reason: "region blocked (copyright_foreign): 因版权限制".into()
        }
    );
}

#[test]
fn fixture_encrypt_data_miss() {
    for parse in [iteminfo_record, slidesinfo_record, detail_record] {
        let err = parse(ENCRYPT_MISS, ID_2023).unwrap_err();
        assert_eq!(err, ParseError::EncryptDataMiss);
        assert_eq!(err.class(), ErrorClass::Transient);
    }
    assert_eq!(
        iteminfo_record(r#"{"status_code":"11110"}"#, "1").unwrap_err(),
        ParseError::EncryptDataMiss
    );
}

#[test]
fn fixture_captcha_page() {
    assert!(is_captcha_page(CAPTCHA));
    for parse in [
        share_page_record,
        iteminfo_record,
        slidesinfo_record,
        detail_record,
    ] {
        assert_eq!(parse(CAPTCHA, ID_2023).unwrap_err(), ParseError::Captcha);
    }
    // Variants: no title, or another title but the same challenge script.
    let untitled = CAPTCHA.replace("<title>验证码中间页</title>", "<title></title>");
    assert!(is_captcha_page(&untitled));
    assert!(is_captcha_page(
        "<html><body><div class=\"middle_page_loading\"></div></body></html>"
    ));
    assert!(is_captcha_page(
        "<html><script>window.TTGCaptcha.render({})</script></html>"
    ));
    // Not captcha: content, JSON, the reflow page, a page that merely loads the SDK.
    assert!(!is_captcha_page(ENCRYPT_MISS));
    assert!(!is_captcha_page(REFLOW));
    assert!(!is_captcha_page(POST_2023));
    assert!(!is_captcha_page(&share_page(&loader(
        "video_(id)/page",
        json!({})
    ))));
    assert!(!is_captcha_page(
        "<html><script src=\"https://lf-cdn-tos.bytescm.com/obj/static/sec_sdk_build/3.5.2/captcha/index.js\"></script></html>"
    ));
}

#[test]
fn fixture_reflow_tokens() {
    let tokens = reflow_tokens(REFLOW).unwrap();
    assert_eq!(
        tokens,
        ReflowTokens {
            xsstoken: "deployment-owned-token".into(),
            web_id: "7687279813539268146".into(),
            user_cip: Some("192.0.2.1".into()),
        }
    );
    assert_eq!(
        share_page_record(REFLOW, "7687279813539268146").unwrap_err(),
        ParseError::NoRecord
    );
}

#[test]
fn reflow_tokens_tolerate_quoting_order_case_and_decoys() {
    let html = r#"<script>var t = document.getElementById("douyin_reflow_token") && a<b;</script>
        <DIV usercip = "198.51.100.7"   WEBID='123' ID="douyin_reflow_webId" ></DIV>
        <div data-x="a>b" xsstoken = "tok&amp;en" id='douyin_reflow_token'/>"#;
    let tokens = reflow_tokens(html).unwrap();
    assert_eq!(tokens.xsstoken, "tok&en");
    assert_eq!(tokens.web_id, "123");
    assert_eq!(tokens.user_cip.as_deref(), Some("198.51.100.7"));
    // usercip is optional; xsstoken and webId are not.
    let no_cip =
        "<div id=douyin_reflow_token xsstoken=a></div><div id=douyin_reflow_webId webId=b></div>";
    assert_eq!(reflow_tokens(no_cip).unwrap().user_cip, None);
    assert!(reflow_tokens("<div id=douyin_reflow_webId webId=b></div>").is_none());
    assert!(
        reflow_tokens(
            "<div id=douyin_reflow_token xsstoken=></div><div id=douyin_reflow_webId webId=b>"
        )
        .is_none()
    );
    assert!(reflow_tokens(CAPTCHA).is_none());
}

#[test]
fn fixture_cdn_403_is_not_a_record() {
    let err = detail_record(CDN_403, ID_2023).unwrap_err();
    assert!(matches!(err, ParseError::Drift { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Drift);
    // The openresty page itself, as HTML.
    let page = "<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1></center><hr><center>openresty</center></body></html>";
    assert!(matches!(
        detail_record(page, ID_2023).unwrap_err(),
        ParseError::Drift { .. }
    ));
}

#[test]
fn router_data_decodes_escaped_urls_and_stops_at_the_object() {
    let page = share_page(&json!({ "loaderData": { "u": "https://a.example/b/c" } }));
    assert!(page.contains("https:\\u002F\\u002Fa.example"));
    let router = router_data(&page).unwrap();
    assert_eq!(router["loaderData"]["u"], "https://a.example/b/c");
    // Trailing `;`, no spaces, `undefined` from JavaScript, a `</script>` inside a string.
    let js = r#"<script>window._ROUTER_DATA={"a":undefined,"b":"undefined","c":"</script>","d":[undefined]};</script>"#;
    let router = router_data(js).unwrap();
    assert_eq!(
        router,
        json!({ "a": null, "b": "undefined", "c": "</script>", "d": [null] })
    );
    assert!(matches!(
        router_data("<html>nothing</html>").unwrap_err(),
        ParseError::Drift { .. }
    ));
    assert!(matches!(
        router_data("window._ROUTER_DATA = {broken").unwrap_err(),
        ParseError::Drift { .. }
    ));
}

#[test]
fn share_page_video_rewrites_playwm_and_reads_numbers_as_ids() {
    let page = share_page(&loader(
        "video_(id)/page",
        json!({ "item_list": [share_item("7300000000000000001")] }),
    ));
    let aweme = share_page_record(&page, "7300000000000000001").unwrap();
    let url = &aweme
        .video
        .as_ref()
        .unwrap()
        .play_addr
        .as_ref()
        .unwrap()
        .url_list[0];
    assert_eq!(
        url,
        "https://aweme.snssdk.com/aweme/v1/play/?video_id=v0200fg10000abc&ratio=720p&line=0"
    );
    assert_eq!(aweme.author.unwrap().uid.as_deref(), Some("12345"));
    // aweme_id as a number.
    let mut item = share_item("x");
    item["aweme_id"] = json!(7300000000000000001_u64);
    let page = share_page(&loader("video_(id)/page", json!({ "item_list": [item] })));
    assert_eq!(
        share_page_record(&page, "7300000000000000001")
            .unwrap()
            .aweme_id
            .as_deref(),
        Some("7300000000000000001")
    );
}

#[test]
fn share_page_note_and_other_page_keys() {
    let mut note = share_item("7400000000000000002");
    note["aweme_type"] = json!(68);
    note["images"] = json!([{ "url_list": ["https://p3.douyinpic.com/a.webp", "https://p3.douyinpic.com/a.jpeg"] }]);
    let page = share_page(&loader(
        "note_(id)/page",
        json!({ "item_list": [note.clone()] }),
    ));
    let aweme = share_page_record(&page, "7400000000000000002").unwrap();
    assert_eq!(aweme.images.unwrap().len(), 1);
    assert_eq!(aweme.aweme_type, Some(68));
    // A page key Douyin may rename to, still with videoInfoRes.
    let page = share_page(&loader("slides_(id)/page", json!({ "item_list": [note] })));
    assert!(share_page_record(&page, "7400000000000000002").is_ok());
}

#[test]
fn share_page_without_video_info_res_goes_on() {
    let page = share_page(&json!({ "loaderData": { "video_(id)/page": { "isSpider": false } } }));
    assert_eq!(
        share_page_record(&page, "1").unwrap_err(),
        ParseError::NoRecord
    );
    let page = share_page(&loader("video_(id)/page", Value::Null));
    assert_eq!(
        share_page_record(&page, "1").unwrap_err(),
        ParseError::NoRecord
    );
    let page = share_page(&loader("video_(id)/page", json!({ "item_list": [] })));
    assert_eq!(
        share_page_record(&page, "1").unwrap_err(),
        ParseError::NoRecord
    );
    // An unknown router shape is drift; a page with neither router data nor tokens too.
    let page = share_page(&json!({ "routes": [] }));
    assert!(matches!(
        share_page_record(&page, "1").unwrap_err(),
        ParseError::Drift { .. }
    ));
    let err = share_page_record("<html><body>新版页面</body></html>", "1").unwrap_err();
    assert!(
        matches!(err, ParseError::Drift { ref excerpt, .. } if excerpt.contains("新版页面")),
        "{err:?}"
    );
    assert_eq!(
        share_page_record("  \n", "1").unwrap_err(),
        ParseError::Empty
    );
}

#[test]
fn share_page_filter_list_is_unavailable() {
    let res = json!({
        "item_list": [],
        "filter_list": [{ "aweme_id": "7500000000000000003", "filter_reason": "status_deleted", "detail_msg": "作品已删除", "notice": "" }]
    });
    let page = share_page(&loader("video_(id)/page", res.clone()));
    assert_eq!(
        share_page_record(&page, "7500000000000000003").unwrap_err(),
        ParseError::Unavailable {
            reason: "作品已删除 (status_deleted)".into()
        }
    );
    // An entry about another item does not concern this one.
    assert_eq!(
        share_page_record(&page, "7500000000000000004").unwrap_err(),
        ParseError::NoRecord
    );
    // An entry without an id, when nothing came back, does.
    let res =
        json!({ "item_list": null, "filter_list": [{ "filter_reason": "copyright_foreign" }] });
    let page = share_page(&loader("video_(id)/page", res));
    assert_eq!(
        share_page_record(&page, "1").unwrap_err(),
        ParseError::Unavailable {
            reason: "region blocked (copyright_foreign)".into()
        }
    );
}

#[test]
fn iteminfo_success_and_refusals() {
    let ok =
        json!({ "status_code": 0, "item_list": [share_item("7600000000000000005")] }).to_string();
    let aweme = iteminfo_record(&ok, "7600000000000000005").unwrap();
    let url = &aweme.video.unwrap().play_addr.unwrap().url_list[0];
    assert!(url.contains("/aweme/v1/play/?"), "{url}");
    assert_eq!(
        iteminfo_record(&ok, "7600000000000000006").unwrap_err(),
        ParseError::IdMismatch {
            wanted: "7600000000000000006".into(),
            got: "7600000000000000005".into()
        }
    );
    let no_id = json!({ "status_code": 0, "item_list": [{ "desc": "x" }] }).to_string();
    assert!(
        matches!(iteminfo_record(&no_id, "1").unwrap_err(), ParseError::IdMismatch { ref got, .. } if got == "none")
    );
    let empty = json!({ "status_code": 0, "item_list": [] }).to_string();
    assert!(matches!(
        iteminfo_record(&empty, "1").unwrap_err(),
        ParseError::Api { code: 0, .. }
    ));
    let denied = r#"{"status_code": 2053, "status_msg": "访问太频繁"}"#;
    assert_eq!(
        iteminfo_record(denied, "1").unwrap_err(),
        ParseError::Api {
            code: 2053,
            message: "访问太频繁".into()
        }
    );
    assert_eq!(iteminfo_record("", "1").unwrap_err(), ParseError::Empty);
    assert!(matches!(
        iteminfo_record(r#"{"data":{}}"#, "1").unwrap_err(),
        ParseError::Drift { .. }
    ));
    let filtered = json!({ "status_code": 0, "item_list": [], "filter_list": [{ "aweme_id": "9", "filter_reason": "status_self_see" }] });
    assert_eq!(
        iteminfo_record(&filtered.to_string(), "9").unwrap_err(),
        ParseError::Unavailable {
            reason: "status_self_see".into()
        }
    );
}

#[test]
fn slidesinfo_picks_the_asked_item() {
    let body = json!({ "status_code": 0, "aweme_details": [share_item("11"), share_item("12")] })
        .to_string();
    assert_eq!(
        slidesinfo_record(&body, "12").unwrap().aweme_id.as_deref(),
        Some("12")
    );
    assert!(matches!(
        slidesinfo_record(&body, "13").unwrap_err(),
        ParseError::IdMismatch { .. }
    ));
    let empty = json!({ "status_code": 0, "aweme_details": [] }).to_string();
    assert!(matches!(
        slidesinfo_record(&empty, "1").unwrap_err(),
        ParseError::Api { code: 0, .. }
    ));
}

#[test]
fn detail_shapes() {
    let null = r#"{"status_code":0,"aweme_detail":null}"#;
    assert!(matches!(
        detail_record(null, "1").unwrap_err(),
        ParseError::Api { code: 0, .. }
    ));
    let wrapped = json!({ "code": 200, "data": { "aweme_detail": share_item("21") } }).to_string();
    assert_eq!(
        detail_record(&wrapped, "21").unwrap().aweme_id.as_deref(),
        Some("21")
    );
    // A filter entry without an id concerns us only when no record came back.
    let both =
        json!({ "aweme_detail": share_item("22"), "filter_detail": { "filter_reason": "x" } });
    assert!(detail_record(&both.to_string(), "22").is_ok());
    let unknown = r#"{"status_code":0,"something_else":{}}"#;
    assert!(matches!(
        detail_record(unknown, "1").unwrap_err(),
        ParseError::Drift { .. }
    ));
    assert!(matches!(
        detail_record("[1,2]", "1").unwrap_err(),
        ParseError::Drift { .. }
    ));
}

#[test]
fn status_checks_are_permanent() {
    let with_status = |status: Value| {
        let mut item = share_item("31");
        item["status"] = status;
        json!({ "status_code": 0, "aweme_detail": item }).to_string()
    };
    let reason = |status: Value| match detail_record(&with_status(status), "31") {
        Err(ParseError::Unavailable { reason }) => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(json!({ "is_delete": true })), "deleted");
    assert_eq!(
        reason(json!({ "is_delete": 0, "is_prohibited": 1 })),
        "prohibited"
    );
    assert_eq!(reason(json!({ "private_status": "1" })), "private");
    assert_eq!(
        reason(json!({ "private_status": 2, "is_delete": "false" })),
        "private"
    );
    assert!(
        detail_record(
            &with_status(json!({ "private_status": 0, "in_reviewing": true })),
            "31"
        )
        .is_ok()
    );
    assert!(check_status(&Aweme::default()).is_ok());
}

#[test]
fn missing_extra_and_mistyped_fields_are_tolerated() {
    let item = json!({
        "aweme_id": 41,
        "desc": 42,
        "create_time": "1673771886",
        "duration": 13095.0,
        "unknown_new_field": { "nested": [1, 2, 3] },
        "author": "not an object",
        "status": [],
        "video": {
            "play_addr": { "url_list": "https://v.example/only", "data_size": "1234", "width": "720", "height": -1 },
            "bit_rate": [7, null, { "bit_rate": "2000000", "is_h265": "1", "FPS": "30", "play_addr": null }],
            "cover": { "url_list": [null, "", 5, "https://p.example/c.jpeg"] }
        },
        "images": [1, { "url_list": ["https://p.example/i.jpeg"], "width": 1080 }]
    });
    let aweme = Aweme::from_value(&item).unwrap();
    assert_eq!(aweme.aweme_id.as_deref(), Some("41"));
    assert_eq!(aweme.desc.as_deref(), Some("42"));
    assert_eq!(aweme.create_time, Some(1673771886));
    assert_eq!(aweme.duration, Some(13095));
    assert!(aweme.author.is_none() && aweme.status.is_none());
    let video = aweme.video.as_ref().unwrap();
    let addr = video.play_addr.as_ref().unwrap();
    assert_eq!(addr.url_list, ["https://v.example/only"]);
    assert_eq!(
        (addr.data_size, addr.width, addr.height),
        (Some(1234), Some(720), None)
    );
    let gears = video.bit_rate.as_ref().unwrap();
    assert_eq!(gears.len(), 1, "non-objects dropped");
    assert_eq!(
        (gears[0].bit_rate, gears[0].is_h265, gears[0].fps),
        (Some(2_000_000), Some(true), Some(30))
    );
    assert_eq!(
        video.cover.as_ref().unwrap().url_list,
        ["https://p.example/c.jpeg"]
    );
    assert_eq!(aweme.images.as_ref().unwrap().len(), 1);
    assert!(Aweme::from_value(&json!("x")).is_none());
    assert!(Aweme::from_value(&json!({})).is_some());
}

#[test]
fn drift_excerpt_is_short_and_collapsed() {
    let body = format!("<html>\n\n   <body>{}</body></html>", "页".repeat(5000));
    let ParseError::Drift { excerpt, .. } = share_page_record(&body, "1").unwrap_err() else {
        panic!()
    };
    assert_eq!(excerpt.chars().count(), EXCERPT_CHARS);
    assert!(excerpt.starts_with("<html> <body>页"), "{excerpt}");
    assert!(excerpt.ends_with('…'));
    let short = detail_record("{\"weird\":\n true}", "1").unwrap_err();
    assert_eq!(
        short,
        ParseError::Drift {
            what: "detail without aweme_detail or filter_detail".into(),
            excerpt: "{\"weird\": true}".into()
        }
    );
}

#[test]
fn playwm_to_play_touches_only_the_path() {
    assert_eq!(
        playwm_to_play("https://aweme.snssdk.com/aweme/v1/playwm/?video_id=v1"),
        "https://aweme.snssdk.com/aweme/v1/play/?video_id=v1"
    );
    assert_eq!(
        playwm_to_play("https://a.example/aweme/v1/playwm?video_id=v1"),
        "https://a.example/aweme/v1/play?video_id=v1"
    );
    assert_eq!(
        playwm_to_play("https://a.example/x/?tag=playwm/"),
        "https://a.example/x/?tag=playwm/"
    );
}

#[test]
fn a_share_page_with_terminal_escapes_gives_an_excerpt_that_cannot_rewrite_a_terminal() {
    // ESC[2J clears the screen; ESC]0;...BEL sets the window title; U+202E flips text.
    let page =
        "<html><body>\u{1b}[2J\u{1b}]0;owned\u{7}新版页面 \u{202e}txt.exe\u{9b}31m</body></html>";
    let err = share_page_record(page, "1").unwrap_err();
    let ParseError::Drift { excerpt, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        !excerpt
            .chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{excerpt:?}"
    );
    assert!(excerpt.contains("\\u{1b}[2J"), "{excerpt}");
    assert!(excerpt.contains("新版页面"), "{excerpt}");
    assert!(!err.to_string().contains('\u{1b}'));
}
