use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

const POST_2023: &str =
    include_str!("../../../tests/fixtures/douyin/web_aweme_post_video_2023.json");
const CDN_403: &str = include_str!("../../../tests/fixtures/douyin/cdn_403_forbidden_2024-11.json");

fn aweme_2023_json() -> Value {
    let post: Value = serde_json::from_str(POST_2023).unwrap();
    post["aweme_list"][0].clone()
}

fn aweme(value: Value) -> Aweme {
    Aweme::from_value(&value).unwrap()
}

fn addr(url_key: &str, url: &str, width: u32, height: u32, data_size: u64) -> Value {
    json!({ "url_key": url_key, "url_list": [url], "width": width, "height": height, "data_size": data_size })
}

fn sources(candidates: &[Candidate]) -> Vec<&str> {
    candidates.iter().map(|c| c.source.as_str()).collect()
}

#[test]
fn ranking_on_the_2023_fixture() {
    let aweme = aweme(aweme_2023_json());
    let ranked = candidates(&aweme, true);
    assert_eq!(
        sources(&ranked),
        [
            "bit_rate[0] adapt_1080_0",
            "bit_rate[1] normal_1080_0",
            "bit_rate[2] adapt_lowest_720_1",
            "play_addr_265"
        ]
    );
    let best = &ranked[0];
    assert_eq!(best.codec, Codec::H264);
    assert_eq!((best.width, best.height), (Some(1080), Some(1440)));
    assert_eq!(
        (best.bitrate, best.data_size),
        (Some(2012897), Some(3265927))
    );
    assert_eq!(best.urls.len(), 3, "every mirror kept");
    assert!(
        best.urls[0].starts_with("http://v26-web.douyinvod.com/22428bfcf501653e1ba980825a63593a/")
    );
    assert!(
        best.urls[1].starts_with("http://v3-web.douyinvod.com/d617335c5ec2b907aef53d2fadc34de4/")
    );
    assert!(best.urls[2].starts_with(
        "https://www.douyin.com/aweme/v1/play/?video_id=v0300fg10000cf1rmibc77ubs1je374g"
    ));
    // play_addr is the same file as bit_rate[1]: merged, not listed twice.
    assert_eq!(ranked[1].urls.len(), 3);
    assert_eq!(ranked[2].codec, Codec::H265);
    assert_eq!(
        (ranked[3].codec, ranked[3].bitrate, ranked[3].width),
        (Codec::H265, Some(645024), Some(576))
    );
    // Never the watermarked download_addr.
    for c in &ranked {
        for url in &c.urls {
            assert!(
                !url.contains("watermark=1") && !url.contains("54936b94a4f52486ca9b96628892747e"),
                "{url}"
            );
        }
    }
    // Without the H.264 preference the order here is the same (H.264 is also the largest).
    assert_eq!(sources(&candidates(&aweme, false)), sources(&ranked));
    let Choice::Video {
        best: chosen,
        candidates: all,
    } = choose(&aweme, ImagePolicy::Refuse, true).unwrap()
    else {
        panic!("a video")
    };
    assert_eq!(&chosen, best);
    assert_eq!(all, ranked);
}

#[test]
fn h264_preference_is_configurable() {
    let video = json!({ "video": { "bit_rate": [
        { "gear_name": "h265_1080", "play_addr": addr("u_bytevc1_1080p_1500000", "https://v.example/265", 1080, 1920, 900) },
        { "gear_name": "h264_720", "play_addr": addr("u_h264_720p_1800000", "https://v.example/264", 720, 1280, 1000) },
        { "gear_name": "unknown_720", "play_addr": { "url_list": ["https://v.example/unk"], "width": 720, "height": 1280 } },
    ] } });
    let aweme = aweme(video);
    let preferred = candidates(&aweme, true);
    assert_eq!(
        sources(&preferred),
        [
            "bit_rate[1] h264_720",
            "bit_rate[2] unknown_720",
            "bit_rate[0] h265_1080"
        ]
    );
    assert_eq!(preferred[1].codec, Codec::Unknown);
    let by_size = candidates(&aweme, false);
    assert_eq!(
        sources(&by_size),
        [
            "bit_rate[0] h265_1080",
            "bit_rate[1] h264_720",
            "bit_rate[2] unknown_720"
        ]
    );
}

#[test]
fn ties_fall_to_bitrate_then_size() {
    let aweme = aweme(json!({ "video": { "bit_rate": [
        { "gear_name": "a", "bit_rate": 1000, "play_addr": addr("", "https://v.example/a", 720, 1280, 5) },
        { "gear_name": "b", "bit_rate": 2000, "play_addr": addr("", "https://v.example/b", 1280, 720, 1) },
        { "gear_name": "c", "bit_rate": 2000, "play_addr": addr("", "https://v.example/c", 720, 1280, 9) },
    ] } }));
    assert_eq!(
        sources(&candidates(&aweme, true)),
        ["bit_rate[2] c", "bit_rate[1] b", "bit_rate[0] a"]
    );
}

#[test]
fn empty_bit_rate_uses_play_addr() {
    let mut value = aweme_2023_json();
    value["video"]["bit_rate"] = json!([]);
    value["video"]
        .as_object_mut()
        .unwrap()
        .remove("play_addr_265");
    let ranked = candidates(&aweme(value), true);
    assert_eq!(sources(&ranked), ["play_addr"]);
    assert_eq!(ranked[0].codec, Codec::H264);
    assert_eq!(
        (ranked[0].width, ranked[0].bitrate, ranked[0].data_size),
        (Some(1080), Some(1991612), Some(3219940))
    );
}

#[test]
fn h265_only_is_still_chosen() {
    let aweme = aweme(json!({ "video": {
        "bit_rate": [{ "is_h265": 1, "play_addr": { "url_list": ["https://v.example/a"], "width": 1080, "height": 1920 } }],
        "play_addr_265": { "url_list": ["https://v.example/b"], "width": 720, "height": 1280 }
    } }));
    let Choice::Video { best, candidates } = choose(&aweme, ImagePolicy::Refuse, true).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (best.codec, best.source.as_str()),
        (Codec::H265, "bit_rate[0]")
    );
    assert_eq!(candidates.len(), 2);
    assert!(candidates.iter().all(|c| c.codec == Codec::H265));
}

#[test]
fn bytevc2_is_dropped() {
    let value = json!({ "video": { "bit_rate": [
        { "gear_name": "adapt_2160_0", "play_addr": addr("u_bytevc2_2160p_9000000", "https://v.example/vc2", 2160, 3840, 1) },
        { "gear_name": "adapt_720_0", "play_addr": addr("u_h264_720p_1000000", "https://v.example/264", 720, 1280, 1) },
    ] } });
    assert_eq!(
        sources(&candidates(&aweme(value), true)),
        ["bit_rate[1] adapt_720_0"]
    );
    let only = json!({ "video": { "play_addr": addr("u_bytevc2_1080p_1", "https://v.example/vc2", 1080, 1920, 1) } });
    assert_eq!(
        choose(&aweme(only), ImagePolicy::Refuse, true).unwrap_err(),
        ChoiceError::Nothing("only bytevc2 or segmented renditions".into())
    );
}

#[test]
fn nothing_downloadable() {
    let mut value = aweme_2023_json();
    for key in ["bit_rate", "play_addr", "play_addr_265"] {
        value["video"].as_object_mut().unwrap().remove(key);
    }
    assert_eq!(
        choose(&aweme(value), ImagePolicy::Store, true).unwrap_err(),
        ChoiceError::Nothing("only the watermarked download_addr".into())
    );
    let no_urls = json!({ "video": { "play_addr": { "url_list": [] }, "bit_rate": [{ "play_addr": { "uri": "x" } }] } });
    assert!(candidates(&aweme(no_urls.clone()), true).is_empty());
    assert_eq!(
        choose(&aweme(no_urls), ImagePolicy::Refuse, true)
            .unwrap_err()
            .to_string(),
        "nothing downloadable: no play URLs"
    );
    assert!(matches!(
        choose(&Aweme::default(), ImagePolicy::Store, true),
        Err(ChoiceError::Nothing(_))
    ));
}

#[test]
fn share_page_play_urls_become_unwatermarked() {
    // Built directly (not through the share-page parser): candidates rewrite playwm too.
    let aweme = aweme(
        json!({ "video": { "ratio": "720p", "play_addr": { "uri": "v0200",
        "url_list": ["//aweme.snssdk.com/aweme/v1/playwm/?video_id=v0200&ratio=720p&line=0", "not a url"] } } }),
    );
    let ranked = candidates(&aweme, true);
    assert_eq!(
        ranked[0].urls,
        ["https://aweme.snssdk.com/aweme/v1/play/?video_id=v0200&ratio=720p&line=0"]
    );
    assert_eq!(ranked[0].codec, Codec::Unknown);
}

fn image_post() -> Value {
    json!({
        "aweme_id": "7400000000000000002",
        "aweme_type": 68,
        "images": [
            { "url_list": ["https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images:q75.webp?x-expires=1", "https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images:q75.jpeg?x-expires=1"],
              "download_url_list": ["https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images-water-v2:q75.jpeg"], "width": 1080, "height": 1440 },
            { "url_list": ["https://p3.douyinpic.com/tos/b.image?format=webp", "https://p9.douyinpic.com/tos/b.png"] },
            { "url_list": [] }
        ],
        "music": { "title": "原声", "owner_nickname": "作者", "play_url": { "uri": "https://m.example/a.mp3", "url_list": [] } },
        "video": { "play_addr": { "url_list": ["https://v.example/slideshow"] } }
    })
}

#[test]
fn image_post_refused_by_default() {
    let aweme = aweme(image_post());
    let err = choose(&aweme, ImagePolicy::default(), true).unwrap_err();
    assert_eq!(err, ChoiceError::ImagePost(3));
    assert_eq!(err.to_string(), "image post (3 images)");
}

#[test]
fn image_post_stored_prefers_non_webp() {
    let aweme = aweme(image_post());
    let Choice::Images { images, music_url } = choose(&aweme, ImagePolicy::Store, true).unwrap()
    else {
        panic!()
    };
    assert_eq!(images.len(), 2, "the picture without URLs is left out");
    assert_eq!(
        images[0].urls,
        [
            "https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images:q75.jpeg?x-expires=1",
            "https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images:q75.webp?x-expires=1"
        ]
    );
    assert!(
        !images[0].urls.iter().any(|u| u.contains("water")),
        "never the watermarked download_url_list"
    );
    assert_eq!(
        (
            images[0].width,
            images[0].height,
            images[0].live_video.as_ref()
        ),
        (Some(1080), Some(1440), None)
    );
    assert_eq!(images[1].urls[0], "https://p9.douyinpic.com/tos/b.png");
    assert_eq!(music_url.as_deref(), Some("https://m.example/a.mp3"));
    let serialized =
        serde_json::to_value(choose(&aweme, ImagePolicy::Store, true).unwrap()).unwrap();
    assert_eq!(serialized["kind"], "images");
}

#[test]
fn live_photo_keeps_its_motion() {
    let mut value = image_post();
    value["images"][1]["video"] = json!({
        "play_addr": addr("lp_h264_1080p_900000", "https://v.example/live.mp4", 1080, 1440, 800),
        "play_addr_265": addr("lp_bytevc1_1080p_600000", "https://v.example/live265.mp4", 1080, 1440, 500)
    });
    value["images"][2]["video"] =
        json!({ "play_addr": { "url_list": ["https://v.example/only-motion.mp4"] } });
    let Choice::Images { images, .. } = choose(&aweme(value), ImagePolicy::Store, true).unwrap()
    else {
        panic!()
    };
    assert_eq!(images.len(), 3, "a live photo with motion only is kept");
    let live = images[1].live_video.as_ref().unwrap();
    assert_eq!(
        (live.codec, live.urls[0].as_str()),
        (Codec::H264, "https://v.example/live.mp4")
    );
    assert!(images[2].urls.is_empty() && images[2].live_video.is_some());
}

#[test]
fn url_expiry_on_fixture_urls() {
    let aweme = aweme(aweme_2023_json());
    let url = &aweme
        .video
        .as_ref()
        .unwrap()
        .play_addr
        .as_ref()
        .unwrap()
        .url_list[0];
    let expected = Utc.with_ymd_and_hms(2023, 3, 16, 17, 0, 52).unwrap();
    assert_eq!(url_expiry(url), Some(expected));
    assert_eq!(expected.timestamp(), 0x64134b44);
    // The CDN-refusal capture: expiry 0x67348246, later than the request time it carries.
    let cdn: Value = serde_json::from_str(CDN_403).unwrap();
    let url = cdn["request_url_example"].as_str().unwrap();
    let expiry = url_expiry(url).unwrap();
    assert_eq!(
        expiry,
        Utc.with_ymd_and_hms(2024, 11, 13, 10, 41, 10).unwrap()
    );
    assert!(
        expiry.timestamp() > 1731483635,
        "after dy_q, the request time"
    );
    // No expiry on /aweme/v1/play/ URLs; x-expires as a query parameter.
    assert_eq!(
        url_expiry("https://www.douyin.com/aweme/v1/play/?video_id=v0300&line=0"),
        None
    );
    assert_eq!(
        url_expiry("https://p3.douyinpic.com/img.jpeg?x-expires=1700000000&x-signature=a"),
        Utc.timestamp_opt(1700000000, 0).single()
    );
    assert_eq!(
        url_expiry(
            "https://v3-dy-o.zjcdn.com/0123456789abcdef0123456789ABCDEF/6a000000/video/tos/"
        ),
        Utc.timestamp_opt(0x6a000000, 0).single()
    );
    assert_eq!(url_expiry("not a url"), None);
}

#[test]
fn still_valid_needs_a_margin() {
    let url = "http://v26-web.douyinvod.com/22428bfcf501653e1ba980825a63593a/64134b44/video/tos/cn/x/?a=6383";
    let expiry = Utc.timestamp_opt(0x64134b44, 0).unwrap();
    let ten_minutes = Duration::from_secs(600);
    assert!(still_valid(
        url,
        expiry - chrono::Duration::minutes(11),
        ten_minutes
    ));
    assert!(!still_valid(
        url,
        expiry - chrono::Duration::minutes(9),
        ten_minutes
    ));
    assert!(!still_valid(
        url,
        expiry + chrono::Duration::minutes(1),
        Duration::ZERO
    ));
    assert!(!still_valid(
        "https://www.douyin.com/aweme/v1/play/?video_id=x",
        expiry,
        Duration::ZERO
    ));
    assert!(!still_valid(
        url,
        expiry - chrono::Duration::days(1),
        Duration::MAX
    ));
}

#[test]
fn metadata_of_the_2023_fixture() {
    let mut value = aweme_2023_json();
    value["author"] =
        json!({ "nickname": "作者", "uid": 100, "sec_uid": "MS4wLjAB", "unique_id": "" });
    value["video"]["cover"] = json!({ "url_list": ["https://p3.douyinpic.com/c.webp", "https://p3.douyinpic.com/c.jpeg"] });
    let aweme = aweme(value);
    let ranked = candidates(&aweme, true);
    let meta = metadata(&aweme, ranked.first());
    assert_eq!(meta["aweme_id"], "7188795449468259623");
    assert_eq!(meta["desc"], "艾特身边最像它的人来看");
    assert_eq!(
        meta["author"],
        json!({ "nickname": "作者", "uid": "100", "sec_uid": "MS4wLjAB", "unique_id": "" })
    );
    assert_eq!(
        (meta["create_time"].as_i64(), meta["duration"].as_i64()),
        (Some(1673771886), Some(13095))
    );
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(1080), Some(1440))
    );
    assert_eq!(meta["codec"], "h264");
    assert_eq!(
        (meta["bitrate"].as_u64(), meta["data_size"].as_u64()),
        (Some(2012897), Some(3265927))
    );
    assert_eq!(meta["source"], "bit_rate[0] adapt_1080_0");
    assert_eq!(meta["cover_url"], "https://p3.douyinpic.com/c.jpeg");
    assert_eq!(meta["music"]["title"], "@静萱🧚创作的原声");
    assert_eq!(
        meta["music"]["url"],
        "https://sf86-cdn-tos.douyinstatic.com/obj/ies-music/217f28b3b542c259a23ab23e3f8e1948.mp3"
    );
    assert_eq!(meta["statistics"]["share_count"], 41916);
    assert!(meta["image_count"].is_null());
    // Without a chosen candidate, the video's own size; everything unknown is null.
    let meta = metadata(&aweme, None);
    assert_eq!(
        (meta["width"].as_u64(), meta["codec"].clone()),
        (Some(1080), Value::Null)
    );
    let empty = metadata(&Aweme::default(), None);
    assert!(
        empty.as_object().unwrap().values().all(Value::is_null),
        "{empty}"
    );
}

#[test]
fn cover_url_falls_back() {
    let origin = aweme(
        json!({ "video": { "cover": { "url_list": [] }, "origin_cover": { "url_list": ["https://p.example/o.jpeg"] } } }),
    );
    assert_eq!(
        cover_url(&origin).as_deref(),
        Some("https://p.example/o.jpeg")
    );
    let webp_only =
        aweme(json!({ "video": { "cover": { "url_list": ["https://p.example/c.webp"] } } }));
    assert_eq!(
        cover_url(&webp_only).as_deref(),
        Some("https://p.example/c.webp")
    );
    let post = aweme(image_post());
    assert_eq!(
        cover_url(&post).as_deref(),
        Some("https://p3.douyinpic.com/tos/a~tplv-dy-aweme-images:q75.jpeg?x-expires=1")
    );
    assert_eq!(metadata(&post, None)["image_count"], 3);
    assert_eq!(cover_url(&Aweme::default()), None);
}

#[test]
fn the_stored_cover_is_the_original_before_the_cropped_one_and_jpeg_or_png_before_webp() {
    let both = aweme(json!({ "video": {
        "cover": { "url_list": ["https://p.example/c.webp", "//p.example/c.png"] },
        "origin_cover": { "url_list": ["https://p.example/o.webp", "https://p.example/o.jpeg", "https://p.example/o.webp"] },
        "dynamic_cover": { "url_list": ["https://p.example/d.gif"] },
    } }));
    assert_eq!(
        cover_urls(&both),
        [
            "https://p.example/o.jpeg",
            "https://p.example/c.png",
            "https://p.example/o.webp",
            "https://p.example/c.webp",
        ]
    );
    // An image post has no static cover: its first picture is stored as the post itself.
    assert!(cover_urls(&aweme(image_post())).is_empty());
    assert!(cover_urls(&Aweme::default()).is_empty());
}

#[test]
fn candidates_serialize_for_video_url_meta() {
    let aweme = aweme(aweme_2023_json());
    let choice = choose(&aweme, ImagePolicy::Refuse, true).unwrap();
    let value = serde_json::to_value(&choice).unwrap();
    assert_eq!(value["kind"], "video");
    assert_eq!(value["best"]["codec"], "h264");
    assert_eq!(value["candidates"][2]["codec"], "h265");
    assert_eq!(serde_json::to_value(Codec::Bytevc2).unwrap(), "bytevc2");
}

#[test]
fn resolution_hints_rank_when_sizes_are_missing() {
    let aweme = aweme(json!({ "video": { "bit_rate": [
        { "gear_name": "normal_540_0", "play_addr": { "url_list": ["https://v.example/540"] } },
        { "gear_name": "normal_1080_0", "play_addr": { "url_list": ["https://v.example/1080"] } },
        { "play_addr": { "url_key": "u_h264_720p_1", "url_list": ["https://v.example/720"] } },
        { "format": "dash", "play_addr": addr("u_h264_2160p_1", "https://v.example/dash", 2160, 3840, 1) },
    ] } }));
    assert_eq!(
        sources(&candidates(&aweme, false)),
        [
            "bit_rate[1] normal_1080_0",
            "bit_rate[2]",
            "bit_rate[0] normal_540_0"
        ]
    );
}

#[test]
fn a_serialized_record_reads_back_the_same() {
    let original = aweme(aweme_2023_json());
    let again = aweme(serde_json::to_value(&original).unwrap());
    assert_eq!(candidates(&again, true), candidates(&original, true));
    assert_eq!(metadata(&again, None), metadata(&original, None));
}
