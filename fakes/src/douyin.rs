//! A loopback stand-in for Douyin, reached through `DOUYIN_UPSTREAM`.
//!
//! The worker rewrites `https://{host}{path}?{query}` on a Douyin-family host to
//! `{DOUYIN_UPSTREAM}/{host}{path}?{query}`; this server answers those requests with the shapes
//! of the real pages and APIs (built from the captured fixtures in `tests/fixtures/douyin/`).
//! One fallback handler splits the path into `/{host}/{rest}` and dispatches on host + path:
//!
//! - `v.douyin.com/{code}/`, `jx.douyin.com/{code}/`: 302 to the `Location` registered with
//!   [`DouyinServer::add_short_link`]; an unknown code answers 404.
//! - `www.iesdouyin.com/share/{video|note|slides}/{id}/` (and `m.douyin.com/share/...`): the
//!   share page (HTML, 200) with the cookies `ttwid=test-ttwid-{id}` and `s_v_web_id`.
//!   Every known post's page carries the reflow tokens (`div#douyin_reflow_token xsstoken=`,
//!   `div#douyin_reflow_webId webId= usercip=`, values from [`xsstoken`], [`web_id`] and
//!   [`USER_CIP`]) and a `window._ROUTER_DATA = {...}` whose page key
//!   (`video_(id)/page`, or `note_(id)/page` for note and slides paths) holds `videoInfoRes`
//!   only for [`Behaviour::OldSharePage`] and [`Behaviour::RegionBlocked`]. The JSON escapes
//!   `/` as `\u002F` like real pages. An unknown id answers a page with neither (drift-like).
//! - `www.iesdouyin.com/web/api/v2/aweme/iteminfo/`: the record when `web_id == device_id`
//!   == the page's webId, `reflow_id` decrypts (with `web_id`) to the page's xsstoken and the
//!   Cookie header has a `ttwid` this server issued; else 11110 `encrypt_data_miss`.
//! - `www.iesdouyin.com/web/api/v2/aweme/slidesinfo/?aweme_ids=[{id}]`: `aweme_details`
//!   (non-empty only for [`Behaviour::OldSharePage`] and [`Behaviour::SlidesOnly`]).
//! - `www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id={id}`: `aweme_detail`, or the
//!   `filter_detail` fixture shape for [`Behaviour::RegionBlocked`]; after a delay for
//!   [`Behaviour::SlowDetail`].
//! - `www.douyin.com/video/{id}` and `/note/{id}` (the web page the browser strategy opens):
//!   a small page with the cookies `ttwid=test-ttwid-{id}` and `__ac_nonce`, whose script
//!   fetches `../aweme/v1/web/aweme/detail/?aweme_id={id}` (relative, so it stays under the
//!   `DOUYIN_UPSTREAM` prefix) and writes the first play URL into `a#media[data-src]`: the
//!   media URL exists only once the page has run. The captcha page for
//!   [`Behaviour::Captcha`]; never an answer for [`Behaviour::PageHangs`]; 404 for an
//!   unknown id.
//! - `/aweme/v1/play/?video_id=...` on any non-CDN host (`aweme.snssdk.com`, `www.douyin.com`,
//!   ...): 302 to the CDN URL of that rendition (`sign` = `file_hash` picks one, else the
//!   post's `video.play_addr`); `/aweme/v1/playwm/` answers 302 to a URL with `watermark=1`.
//! - CDN hosts (`*.douyinvod.com`, `*.zjcdn.com`: a fake MP4; `*.douyinpic.com`: a fake
//!   WebP or JPEG, or for a cover (`sc=cover`) the real image of `tests/fixtures/covers/` its
//!   extension names, or its [`CoverFault`]; `*.douyinstatic.com`: a fake MP3): 200 with `Content-Length`, single
//!   `Range` requests answer 206; a URL whose expiry (the 8-hex path segment after the hash, or
//!   `x-expires`) has passed answers 403 with the openresty page of the CDN fixture.
//! - [`Behaviour::Captcha`]: every page and API of that post answers the captcha middle page.
//! - Anything else: 404 with a small JSON body naming the path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const WEB_AWEME_2023: &str =
    include_str!("../../tests/fixtures/douyin/web_aweme_post_video_2023.json");
const CAPTCHA_PAGE: &str = include_str!("../../tests/fixtures/douyin/captcha-middle-page.html");
const ENCRYPT_DATA_MISS: &str =
    include_str!("../../tests/fixtures/douyin/h5_iteminfo_error_encrypt_data_miss.json");
const FILTER_DETAIL: &str =
    include_str!("../../tests/fixtures/douyin/app_detail_filtered_copyright_foreign_2026-09.json");
const CDN_403: &str = include_str!("../../tests/fixtures/douyin/cdn_403_forbidden_2024-11.json");
const REFLOW_SNIPPET: &str =
    include_str!("../../tests/fixtures/douyin/share_page_reflow_context_snippet.html");

/// The cover pictures the CDN serves for `sc=cover` URLs, by extension (real images made by
/// ffmpeg, see `tests/fixtures/README.md`).
pub const COVER_JPEG: &[u8] = include_bytes!("../../tests/fixtures/covers/cover.jpeg");
/// See [`COVER_JPEG`].
pub const COVER_PNG: &[u8] = include_bytes!("../../tests/fixtures/covers/cover.png");
/// See [`COVER_JPEG`].
pub const COVER_WEBP: &[u8] = include_bytes!("../../tests/fixtures/covers/cover.webp");

/// The `aweme_id` of the fixture's aweme (replaced by the post's id).
const FIXTURE_AWEME_ID: &str = "7188795449468259623";
/// The fixture's video `uri` (replaced by a per-post one, see [`video_uri`]).
const FIXTURE_VIDEO_URI: &str = "v0300fg10000cf1rmibc77ubs1je374g";
/// Values of the reflow snippet fixture (replaced per post).
const SNIPPET_XSSTOKEN: &str = "deployment-owned-token";
const SNIPPET_WEB_ID: &str = "7687279813539268146";
const SNIPPET_USER_CIP: &str = "192.0.2.1";

/// The `usercip` every share page carries.
pub const USER_CIP: &str = "192.0.2.1";
/// `filter_reason` of a [`Behaviour::RegionBlocked`] post.
pub const REGION_BLOCKED_REASON: &str = "copyright_foreign";
/// `detail_msg` of a [`Behaviour::RegionBlocked`] post (share page and iteminfo).
pub const REGION_BLOCKED_MSG: &str = "因版权方要求，该内容在当前地区暂不可用";
/// The cookie prefix this server issues (`ttwid=test-ttwid-{id}`).
const TTWID_PREFIX: &str = "test-ttwid-";

// ---------------------------------------------------------------------------------------------
// Posts

/// One fake Douyin post the server knows.
#[derive(Clone, Debug)]
pub struct Post {
    /// The post's id (the key the server looks it up by).
    pub aweme_id: String,
    /// The aweme record as the APIs return it (aweme_id, desc, video{play_addr, bit_rate[...],
    /// ...}, author, music, statistics, status, images...).
    pub aweme: Value,
    /// How the server's pages and APIs answer for this post.
    pub behaviour: Behaviour,
}

/// How the server answers for one post.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Share page has `videoInfoRes` (the pre-August-2026 page); iteminfo and slidesinfo also
    /// answer.
    #[default]
    OldSharePage,
    /// Share page has only the reflow tokens (no `videoInfoRes`); iteminfo answers when
    /// `reflow_id` decrypts to the page's xsstoken.
    NewSharePage,
    /// Like `NewSharePage`, but iteminfo answers 11110 `encrypt_data_miss` the first `n` times
    /// (then succeeds), counted per post.
    EncryptDataMiss(u32),
    /// Share page without record and iteminfo always 11110: only slidesinfo answers.
    SlidesOnly,
    /// Every page and API answers the captcha middle page (HTML, 200).
    Captcha,
    /// Region-blocked: share page `videoInfoRes` has an empty `item_list` and `filter_list`
    /// `[{aweme_id, filter_reason: "copyright_foreign", detail_msg}]`; iteminfo answers
    /// `status_code` 0 with an empty `item_list` and the same `filter_list`; the web detail
    /// answers the `filter_detail` fixture shape.
    RegionBlocked,
    /// Only the web detail API (`aweme_detail`) answers; the other endpoints answer as
    /// `NewSharePage` without a working iteminfo.
    DetailOnly,
    /// Like `DetailOnly`, but the web detail API answers after this many milliseconds.
    SlowDetail(u64),
    /// Like `DetailOnly`, but the web page (`www.douyin.com/video/{id}`) never answers.
    PageHangs,
}

/// FNV-1a over the parts, then mixed (stable across runs and Rust versions).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // splitmix64's finalizer, so that close seeds give unrelated values.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// 32 hex digits derived from `seed`.
fn hex32(seed: &str) -> String {
    format!("{:016x}{:016x}", fnv(&[seed, "0"]), fnv(&[seed, "1"]))
}

/// `n` characters of `[a-z0-9]` derived from `seed`.
fn alnum(seed: &str, n: usize) -> String {
    const ABC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|i| {
            let h = fnv(&[seed, &i.to_string()]);
            ABC[(h % ABC.len() as u64) as usize] as char
        })
        .collect()
}

/// The share page's `xsstoken` for a post (no spaces or quotes: the page writes it unquoted).
pub fn xsstoken(aweme_id: &str) -> String {
    format!("xss{:016x}", fnv(&[aweme_id, "xsstoken"]))
}

/// The share page's `webId` for a post: 19 digits.
pub fn web_id(aweme_id: &str) -> String {
    format!(
        "7{:018}",
        fnv(&[aweme_id, "webId"]) % 1_000_000_000_000_000_000
    )
}

/// The per-post video `uri` (`video_id` of the play URLs), same shape as the fixture's.
pub fn video_uri(aweme_id: &str) -> String {
    format!("v0300fg10000{}", alnum(&format!("{aweme_id}/video"), 20))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A CDN expiry one hour from now, as the 8-hex path segment.
fn expiry_hex() -> String {
    format!("{:08x}", now_secs() + 3600)
}

fn is_video_cdn(host: &str) -> bool {
    host.ends_with("douyinvod.com") || host.ends_with("zjcdn.com")
}

/// `https://{cdn host}/{new hash}/{expiry}/{rest}?{query}` for a fixture CDN URL, else None.
fn rewrite_cdn_url(s: &str, salt: &str, expiry: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let host = url.host_str()?.to_string();
    if !is_video_cdn(&host) {
        return None;
    }
    let segs: Vec<&str> = url.path_segments()?.collect();
    if segs.len() < 3 || segs[0].len() != 32 || segs[1].len() != 8 {
        return None;
    }
    let hash = hex32(&format!("{salt}/{}", segs[0]));
    let rest = segs[2..].join("/");
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("https://{host}/{hash}/{expiry}/{rest}{query}"))
}

fn rewrite_cdn_urls(v: &mut Value, salt: &str, expiry: &str) {
    match v {
        Value::String(s) => {
            if let Some(new) = rewrite_cdn_url(s, salt, expiry) {
                *s = new;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| rewrite_cdn_urls(i, salt, expiry)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|i| rewrite_cdn_urls(i, salt, expiry)),
        _ => {}
    }
}

/// A made-up but real-looking CDN URL for a video object.
fn synth_cdn_url(seed: &str, expiry: &str, extra_query: &str) -> String {
    format!(
        "https://v26-web.douyinvod.com/{}/{expiry}/video/tos/cn/tos-cn-ve-15/o{}/?a=6383&ch=10010&cr=3&dr=0&lr=all&cd=0%7C0%7C0%7C3&cv=1&br=1944&bt=1944&cs=0&ds=4&mime_type=video_mp4&qs=0&rc={}&l=20230317000040E64A9BC92C5D4748215F&btag=8000{extra_query}",
        hex32(seed),
        alnum(&format!("{seed}/object"), 29),
        alnum(&format!("{seed}/rc"), 40),
    )
}

/// A signed-looking image URL on `douyinpic.com` (`ext` = `webp` or `jpeg`).
fn image_url(host: &str, object: &str, template: &str, ext: &str) -> String {
    format!(
        "https://{host}/tos-cn-i-0813c001/{object}~{template}:q75.{ext}?lk3s=138a59ce&x-expires={}&x-signature={}%3D&from=327834062&s=PackSourceEnum_AWEME_DETAIL&se=false&sc=image&biz_tag=aweme_images&l=20230317000040E64A9BC92C5D4748215F",
        now_secs() + 3600,
        alnum(&format!("{object}/{ext}/sig"), 27),
    )
}

/// The fixture's aweme for post `id`: ids, video uri and CDN URLs replaced, plus the author and
/// cover the trimmed fixture lacks; `download_addr` CDN URLs carry `watermark=1`.
fn base_aweme(id: &str) -> Value {
    let fixture: Value = serde_json::from_str(WEB_AWEME_2023).expect("web aweme fixture is JSON");
    let aweme = &fixture["aweme_list"][0];
    let text = serde_json::to_string(aweme)
        .expect("serialize aweme")
        .replace(FIXTURE_AWEME_ID, id)
        .replace(FIXTURE_VIDEO_URI, &video_uri(id));
    let mut aweme: Value = serde_json::from_str(&text).expect("aweme stays JSON");
    let expiry = expiry_hex();
    rewrite_cdn_urls(&mut aweme, id, &expiry);
    if let Some(urls) = aweme
        .pointer_mut("/video/download_addr/url_list")
        .and_then(Value::as_array_mut)
    {
        for u in urls {
            if let Some(s) = u.as_str()
                && s.contains("douyinvod.com")
                && !s.contains("watermark=1")
            {
                *u = Value::String(format!("{s}&watermark=1"));
            }
        }
    }
    let cover_object = format!("o{}", alnum(&format!("{id}/cover"), 31));
    let cover_url = |template: &str, ext: &str| {
        format!(
            "https://p3-pc-sign.douyinpic.com/tos-cn-p-0015/{cover_object}~{template}.{ext}?lk3s=138a59ce&x-expires={}&x-signature={}%3D&from=327834062&s=PackSourceEnum_AWEME_DETAIL&se=false&sc=cover&biz_tag=aweme_video&l=20230317000040E64A9BC92C5D4748215F",
            now_secs() + 3600,
            alnum(&format!("{id}/cover/{template}/sig"), 27),
        )
    };
    // The cropped cover as a PNG; the original-size one as WebP and JPEG (served from
    // `tests/fixtures/covers/`, see `COVER_*`).
    let cover = json!({
        "uri": format!("tos-cn-p-0015/{cover_object}"),
        "url_list": [cover_url("tplv-dy-cropcenter:323:430", "png")],
        "width": 323,
        "height": 430,
    });
    let origin_cover = json!({
        "uri": format!("tos-cn-p-0015/{cover_object}"),
        "url_list": [cover_url("tplv-dy-360p", "webp"), cover_url("tplv-dy-360p", "jpeg")],
        "width": 720,
        "height": 960,
    });
    if let Some(video) = aweme.get_mut("video").and_then(Value::as_object_mut) {
        video.insert("cover".into(), cover);
        video.insert("origin_cover".into(), origin_cover);
    }
    if let Some(obj) = aweme.as_object_mut() {
        obj.insert(
            "author".into(),
            json!({
                "uid": format!("{}", 10_000_000_000u64 + fnv(&[id, "uid"]) % 90_000_000_000),
                "sec_uid": format!("MS4wLjABAAAA{}", alnum(&format!("{id}/sec_uid"), 43)),
                "unique_id": "",
                "short_id": "0",
                "nickname": "静萱🧚",
            }),
        );
        if let Some(music) = obj.get_mut("music").and_then(Value::as_object_mut) {
            music.insert("id".into(), json!(6828761557481065230u64));
            music.insert("id_str".into(), json!("6828761557481065230"));
            music.insert("author".into(), json!("静萱🧚"));
            music.insert("duration".into(), json!(13));
        }
    }
    aweme
}

/// A realistic video post built from the 2023 web fixture's aweme with its ids replaced by
/// `id`, its video `uri` by [`video_uri`]`(id)`, and CDN URLs pointing at this server's CDN
/// route with an expiry one hour from now.
pub fn video_post(id: &str, behaviour: Behaviour) -> Post {
    let mut aweme = base_aweme(id);
    // The CDN serves the small fixture video: every rendition announces its real size.
    set_data_sizes(&mut aweme, fake_mp4("").len() as u64);
    Post {
        aweme_id: id.to_string(),
        aweme,
        behaviour,
    }
}

/// Like [`video_post`], but every playable rendition's URL list is `[media_url]` (e.g. a file
/// on the raw loopback CDN of `cdn.rs`, which can throttle, stall or drop connections) and
/// every `data_size` is `size`. Needs `ALLOW_PRIVATE_NETWORKS=true` in the worker.
pub fn video_post_from(id: &str, behaviour: Behaviour, media_url: &str, size: u64) -> Post {
    fn point(v: &mut Value, url: &str) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k.starts_with("play_addr") || k == "download_addr" {
                        if let Some(list) = child.get_mut("url_list") {
                            *list = json!([url]);
                        }
                    } else {
                        point(child, url);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| point(i, url)),
            _ => {}
        }
    }
    let mut post = video_post(id, behaviour);
    if let Some(video) = post.aweme.get_mut("video") {
        point(video, media_url);
    }
    set_data_sizes(&mut post.aweme, size);
    post
}

fn set_data_sizes(v: &mut Value, size: u64) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "data_size" && child.is_number() {
                    *child = json!(size);
                } else {
                    set_data_sizes(child, size);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| set_data_sizes(c, size)),
        _ => {}
    }
}

/// An image post (`aweme_type` 68, `images`: 3 entries with `url_list` [webp, jpeg] and a
/// watermarked `download_url_list`; the second one is a live photo with a `video`) built from
/// the same fixture.
pub fn image_post(id: &str, behaviour: Behaviour) -> Post {
    let mut aweme = base_aweme(id);
    let expiry = expiry_hex();
    let images: Vec<Value> = (0..3)
        .map(|i| {
            let object = alnum(&format!("{id}/image/{i}"), 32);
            let mut image = json!({
                "uri": format!("tos-cn-i-0813c001/{object}"),
                "url_list": [
                    image_url("p3-pc-sign.douyinpic.com", &object, "tplv-dy-aweme-images", "webp"),
                    image_url("p9-pc-sign.douyinpic.com", &object, "tplv-dy-aweme-images", "jpeg"),
                ],
                "download_url_list": [
                    image_url("p3-pc-sign.douyinpic.com", &object, "tplv-dy-aweme-images-water-v2:3000:3000", "jpeg"),
                ],
                "width": 1080,
                "height": 1440,
                "mask_url_list": null,
                "video": null,
            });
            if i == 1 {
                let uri = format!("v0d00fg10000{}", alnum(&format!("{id}/live"), 20));
                let sign = hex32(&format!("{id}/live/file"));
                image["video"] = json!({
                    "play_addr": {
                        "uri": uri,
                        "url_key": format!("{uri}_h264_1080p_1503452"),
                        // What this server's CDN serves for it.
                        "data_size": fake_mp4("").len(),
                        "file_hash": sign,
                        "width": 1080,
                        "height": 1440,
                        "url_list": [
                            synth_cdn_url(&format!("{id}/live"), &expiry, ""),
                            format!("https://www.douyin.com/aweme/v1/play/?video_id={uri}&line=0&file_id={}&sign={sign}&is_play_url=1&source=PackSourceEnum_PUBLISH", hex32(&format!("{id}/live/file_id"))),
                        ],
                    },
                    "duration": 3000,
                    "width": 1080,
                    "height": 1440,
                    "ratio": "1080p",
                });
            }
            image
        })
        .collect();
    if let Some(obj) = aweme.as_object_mut() {
        obj.insert("aweme_type".into(), json!(68));
        obj.insert("images".into(), Value::Array(images));
    }
    Post {
        aweme_id: id.to_string(),
        aweme,
        behaviour,
    }
}

// ---------------------------------------------------------------------------------------------
// Server

struct Logged {
    /// `"{METHOD} {host}{path}?{query}"`.
    line: String,
    headers: HeaderMap,
}

struct Inner {
    posts: HashMap<String, Post>,
    /// Video `uri` → aweme id, for the play endpoints.
    videos: HashMap<String, String>,
    short_links: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<Logged>>,
    /// iteminfo requests per post (for [`Behaviour::EncryptDataMiss`]).
    iteminfo_calls: Mutex<HashMap<String, u32>>,
}

/// A running fixture server on `127.0.0.1:0` (a tokio task, aborted on drop).
pub struct DouyinServer {
    /// The `DOUYIN_UPSTREAM` value: `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl DouyinServer {
    /// Serves `posts` (a later post with the same id wins).
    pub async fn start(posts: Vec<Post>) -> DouyinServer {
        let mut videos = HashMap::new();
        for p in &posts {
            let mut uris = Vec::new();
            collect_addresses(&p.aweme, "", &mut |_, addr| {
                if let Some(uri) = addr.get("uri").and_then(Value::as_str) {
                    uris.push(uri.to_string());
                }
            });
            for uri in uris {
                videos.insert(uri, p.aweme_id.clone());
            }
        }
        let inner = Arc::new(Inner {
            posts: posts.into_iter().map(|p| (p.aweme_id.clone(), p)).collect(),
            videos,
            short_links: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            iteminfo_calls: Mutex::new(HashMap::new()),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Douyin fixture server to 127.0.0.1:0");
        let addr = listener.local_addr().expect("fixture server address");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("Douyin fixture server stopped: {e}");
            }
        });
        DouyinServer {
            url: format!("http://{addr}"),
            inner,
            task,
        }
    }

    /// Short links: `https://v.douyin.com/{code}/` (and `jx.douyin.com`) answer 302 to
    /// `location` (a full https URL on a Douyin host).
    pub fn add_short_link(&self, code: &str, location: &str) {
        self.inner
            .short_links
            .lock()
            .unwrap()
            .insert(code.to_string(), location.to_string());
    }

    /// The requests received, in order, as `"{METHOD} {host}{path}?{query}"` (no `?` without a
    /// query), e.g. `"GET www.iesdouyin.com/share/video/7412345678901234567/"`.
    pub fn requests(&self) -> Vec<String> {
        self.inner
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.line.clone())
            .collect()
    }

    /// Headers of the last request whose `{host}{path}?{query}` contains `needle`.
    pub fn last_headers(&self, needle: &str) -> Option<HeaderMap> {
        self.inner
            .log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| {
                l.line
                    .split_once(' ')
                    .is_some_and(|(_, target)| target.contains(needle))
            })
            .map(|l| l.headers.clone())
    }
}

impl Drop for DouyinServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Inner>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri: Uri = req.uri().clone();
    let headers = req.headers().clone();
    let target = uri.path().trim_start_matches('/');
    let line = match uri.query() {
        Some(q) => format!("{method} {target}?{q}"),
        None => format!("{method} {target}"),
    };
    s.log.lock().unwrap().push(Logged {
        line,
        headers: headers.clone(),
    });
    let (host, path) = match target.split_once('/') {
        Some((h, p)) => (h.to_ascii_lowercase(), format!("/{p}")),
        None => (target.to_ascii_lowercase(), "/".to_string()),
    };
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    match s.hold(&host, &path, &query) {
        Some(None) => std::future::pending::<()>().await,
        Some(Some(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    s.route(&host, &path, &query, &headers)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn html_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn captcha() -> Response {
    html_response(CAPTCHA_PAGE.to_string())
}

fn not_found(host: &str, path: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not found by the Douyin fixture server", "path": format!("{host}{path}")}),
    )
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut r = StatusCode::FOUND.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "bad location"}),
        ),
    }
}

fn encrypt_data_miss() -> Response {
    let body: Value = serde_json::from_str(ENCRYPT_DATA_MISS).expect("encrypt_data_miss fixture");
    json_response(StatusCode::OK, &body)
}

fn filter_entry(id: &str) -> Value {
    json!({
        "aweme_id": id,
        "filter_reason": REGION_BLOCKED_REASON,
        "detail_msg": REGION_BLOCKED_MSG,
        "notice": "",
    })
}

/// Calls `f(key, object)` for every media address object (`uri` + `url_list`) in `v`.
fn collect_addresses<'a>(v: &'a Value, key: &str, f: &mut impl FnMut(&str, &'a Value)) {
    match v {
        Value::Object(map) => {
            if map.get("uri").is_some_and(Value::is_string)
                && map.get("url_list").is_some_and(Value::is_array)
            {
                f(key, v);
            }
            for (k, child) in map {
                collect_addresses(child, k, f);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_addresses(i, key, f)),
        _ => {}
    }
}

/// The share page's `item_list` record: play URLs in their `playwm` form, no `bit_rate`.
fn share_page_item(aweme: &Value) -> Value {
    let mut item = aweme.clone();
    if let Some(video) = item.get_mut("video").and_then(Value::as_object_mut) {
        let uri = video
            .get("play_addr")
            .and_then(|a| a.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(uri) = uri {
            let playwm = format!(
                "https://aweme.snssdk.com/aweme/v1/playwm/?video_id={uri}&ratio=720p&line=0"
            );
            video.insert(
                "play_addr".into(),
                json!({"uri": uri, "url_list": [playwm], "width": 720, "height": 960}),
            );
        }
        for k in [
            "bit_rate",
            "download_addr",
            "play_addr_265",
            "play_addr_h264",
        ] {
            video.remove(k);
        }
    }
    item
}

/// The first URL of an address's `url_list` on a video CDN host.
fn cdn_of(addr: &Value) -> Option<&str> {
    addr["url_list"].as_array().and_then(|urls| {
        urls.iter().filter_map(Value::as_str).find(|u| {
            url::Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(is_video_cdn))
                .unwrap_or(false)
        })
    })
}

/// `window._ROUTER_DATA = {...}` JSON with `/` escaped as `\u002F`.
fn router_data(page_key: &str, layout_key: &str, page: Value) -> String {
    let data = json!({
        "loaderData": {
            layout_key: {"isSpider": false, "commonContext": {"isSpider": false}},
            page_key: page,
        },
        "errors": null,
    });
    serde_json::to_string(&data)
        .expect("serialize router data")
        .replace('/', "\\u002F")
}

/// The reflow divs of the snippet fixture with this post's values.
fn reflow_divs(id: &str) -> String {
    let body = REFLOW_SNIPPET
        .split_once("<body>")
        .and_then(|(_, rest)| rest.split_once("</body>"))
        .map(|(inner, _)| inner)
        .unwrap_or(REFLOW_SNIPPET);
    body.replace(SNIPPET_XSSTOKEN, &xsstoken(id))
        .replace(SNIPPET_WEB_ID, &web_id(id))
        .replace(SNIPPET_USER_CIP, USER_CIP)
}

fn share_html(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"UTF-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1,minimum-scale=1,maximum-scale=1,user-scalable=no,viewport-fit=cover\">\
         <title>{title}</title>\
         <link rel=\"stylesheet\" href=\"https://lf-douyin-mobile.bytecdn.com/obj/douyin-mobile-static/reflow/css/main.css\">\
         </head><body><div id=\"root\"></div>{body}\
         <script src=\"https://lf-douyin-mobile.bytecdn.com/obj/douyin-mobile-static/reflow/js/main.js\" crossorigin=\"anonymous\"></script>\
         </body></html>"
    )
}

fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then_some(v.trim())
        })
}

impl Inner {
    fn route(
        &self,
        host: &str,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Response {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let is_ies = host == "iesdouyin.com" || host.ends_with(".iesdouyin.com");
        if host == "v.douyin.com" || host == "jx.douyin.com" {
            return match (
                segs.as_slice(),
                self.short_links.lock().unwrap().get(segs[0]),
            ) {
                ([_], Some(location)) => redirect(location),
                _ => not_found(host, path),
            };
        }
        if is_video_cdn(host)
            || host.ends_with("douyinpic.com")
            || host.ends_with("douyinstatic.com")
        {
            return cdn(host, path, query, headers);
        }
        match segs.as_slice() {
            ["aweme", "v1", "play"] => return self.play(query, false),
            ["aweme", "v1", "playwm"] => return self.play(query, true),
            _ => {}
        }
        match segs.as_slice() {
            ["share", kind @ ("video" | "note" | "slides"), id]
                if is_ies || host == "m.douyin.com" =>
            {
                self.share_page(kind, id)
            }
            ["web", "api", "v2", "aweme", "iteminfo"] if is_ies => self.iteminfo(query, headers),
            ["web", "api", "v2", "aweme", "slidesinfo"] if is_ies => self.slidesinfo(query),
            ["aweme", "v1", "web", "aweme", "detail"] if host.ends_with("douyin.com") => {
                self.detail(query)
            }
            ["video" | "note", id] if host == "www.douyin.com" => self.web_page(id),
            _ => not_found(host, path),
        }
    }

    /// How long a request waits before it is answered: `Some(None)` never, `Some(Some(d))`
    /// for `d`.
    fn hold(
        &self,
        host: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Option<Option<std::time::Duration>> {
        if host != "www.douyin.com" {
            return None;
        }
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let id = match segs.as_slice() {
            ["video" | "note", id] => *id,
            ["aweme", "v1", "web", "aweme", "detail"] => param(query, "aweme_id")?,
            _ => return None,
        };
        match (self.posts.get(id)?.behaviour.clone(), segs[0]) {
            (Behaviour::PageHangs, "video" | "note") => Some(None),
            (Behaviour::SlowDetail(ms), "aweme") => {
                Some(Some(std::time::Duration::from_millis(ms)))
            }
            _ => None,
        }
    }

    /// The web page the browser strategy opens; its script fetches the record.
    fn web_page(&self, id: &str) -> Response {
        let Some(post) = self.posts.get(id) else {
            let mut r = html_response(share_html(
                "抖音",
                "<div class=\"error-page\">页面不见了</div>",
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        };
        if post.behaviour == Behaviour::Captcha {
            return captcha();
        }
        let script = format!(
            "<script>\
             fetch('../aweme/v1/web/aweme/detail/?device_platform=webapp&aid=6383&aweme_id={id}', \
             {{credentials: 'include', headers: {{'Accept': 'application/json'}}}})\
             .then(function (r) {{ return r.json(); }})\
             .then(function (d) {{\
             var v = d && d.aweme_detail && d.aweme_detail.video;\
             var u = v && v.play_addr && v.play_addr.url_list && v.play_addr.url_list[0];\
             if (u) {{ document.getElementById('media').setAttribute('data-src', u); }}\
             }});\
             </script>"
        );
        let body = format!(
            "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"UTF-8\"><title>抖音</title></head>\
             <body><div id=\"root\"><a id=\"media\"></a></div>{script}</body></html>"
        );
        let mut r = html_response(body);
        for cookie in [
            format!("ttwid={TTWID_PREFIX}{id}; Path=/"),
            format!("__ac_nonce=0{}; Path=/", &hex32(id)[..20]),
        ] {
            r.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie header"),
            );
        }
        r
    }

    fn share_page(&self, kind: &str, id: &str) -> Response {
        let post = self.posts.get(id);
        if post.is_some_and(|p| p.behaviour == Behaviour::Captcha) {
            return captcha();
        }
        let (page_key, layout_key) = if kind == "video" {
            ("video_(id)/page", "video_layout")
        } else {
            ("note_(id)/page", "note_layout")
        };
        let body = match post {
            None => share_html("抖音", "<div class=\"error-page\">页面不见了</div>"),
            Some(p) => {
                let info = match p.behaviour {
                    Behaviour::OldSharePage => Some(json!({
                        "item_list": [share_page_item(&p.aweme)],
                        "filter_list": [],
                        "status_code": 0,
                        "extra": {"now": now_secs() * 1000},
                    })),
                    Behaviour::RegionBlocked => Some(json!({
                        "item_list": [],
                        "filter_list": [filter_entry(id)],
                        "status_code": 0,
                        "extra": {"now": now_secs() * 1000},
                    })),
                    _ => None,
                };
                let page = match info {
                    Some(info) => json!({"videoInfoRes": info, "isSpider": false}),
                    None => json!({"isSpider": false}),
                };
                let script = format!(
                    "<script>window._ROUTER_DATA = {};</script>",
                    router_data(page_key, layout_key, page)
                );
                let title = p
                    .aweme
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("抖音");
                share_html(title, &format!("{}{script}", reflow_divs(id)))
            }
        };
        let mut r = html_response(body);
        let h = r.headers_mut();
        for cookie in [
            format!("ttwid={TTWID_PREFIX}{id}; Path=/; HttpOnly"),
            "s_v_web_id=verify_test; Path=/".to_string(),
        ] {
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_str(&cookie).expect("cookie header"),
            );
        }
        r
    }

    fn iteminfo(&self, query: &[(String, String)], headers: &HeaderMap) -> Response {
        let id = param(query, "item_ids")
            .and_then(|ids| ids.split(',').next())
            .unwrap_or("")
            .trim();
        let Some(post) = self.posts.get(id) else {
            return json_response(
                StatusCode::OK,
                &json!({"status_code": 0, "item_list": [], "filter_list": []}),
            );
        };
        if post.behaviour == Behaviour::Captcha {
            return captcha();
        }
        let calls = {
            let mut m = self.iteminfo_calls.lock().unwrap();
            let c = m.entry(id.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        match post.behaviour {
            Behaviour::EncryptDataMiss(n) if calls <= n => return encrypt_data_miss(),
            Behaviour::SlidesOnly
            | Behaviour::DetailOnly
            | Behaviour::SlowDetail(_)
            | Behaviour::PageHangs => return encrypt_data_miss(),
            _ => {}
        }
        let web = param(query, "web_id").unwrap_or("");
        let tokens_ok = web == web_id(id)
            && param(query, "device_id") == Some(web)
            && param(query, "reflow_id").is_some_and(|r| {
                douyin_worker::extract::reflow::decrypt(r, web).ok() == Some(xsstoken(id))
            })
            && cookie_values(headers, "ttwid").any(|v| v.starts_with(TTWID_PREFIX));
        if !tokens_ok {
            return encrypt_data_miss();
        }
        let body = if post.behaviour == Behaviour::RegionBlocked {
            json!({"status_code": 0, "item_list": [], "filter_list": [filter_entry(id)]})
        } else {
            json!({"status_code": 0, "item_list": [post.aweme], "filter_list": []})
        };
        json_response(StatusCode::OK, &body)
    }

    fn slidesinfo(&self, query: &[(String, String)]) -> Response {
        let ids: Vec<&str> = param(query, "aweme_ids")
            .unwrap_or("")
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .collect();
        let mut details = Vec::new();
        for id in ids {
            let Some(post) = self.posts.get(id) else {
                continue;
            };
            match post.behaviour {
                Behaviour::Captcha => return captcha(),
                Behaviour::OldSharePage | Behaviour::SlidesOnly => details.push(post.aweme.clone()),
                _ => {}
            }
        }
        json_response(
            StatusCode::OK,
            &json!({"status_code": 0, "aweme_details": details}),
        )
    }

    fn detail(&self, query: &[(String, String)]) -> Response {
        let id = param(query, "aweme_id").unwrap_or("");
        let body = match self.posts.get(id) {
            None => json!({"status_code": 0, "aweme_detail": null}),
            Some(p) if p.behaviour == Behaviour::Captcha => return captcha(),
            Some(p) if p.behaviour == Behaviour::RegionBlocked => {
                let mut body: Value =
                    serde_json::from_str(FILTER_DETAIL).expect("filter_detail fixture");
                body["filter_detail"]["aweme_id"] = json!(id);
                body
            }
            Some(p) => json!({"status_code": 0, "aweme_detail": p.aweme}),
        };
        json_response(StatusCode::OK, &body)
    }

    fn play(&self, query: &[(String, String)], watermark: bool) -> Response {
        let video_id = param(query, "video_id").unwrap_or("");
        let Some(post) = self.videos.get(video_id).and_then(|id| self.posts.get(id)) else {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"status_code": 2053, "status_msg": "video not found", "video_id": video_id}),
            );
        };
        if post.behaviour == Behaviour::Captcha {
            return captcha();
        }
        let sign = param(query, "sign");
        let mut by_sign = None;
        let mut first = None;
        collect_addresses(&post.aweme, "", &mut |key, addr| {
            if key == "download_addr" || addr["uri"].as_str() != Some(video_id) {
                return;
            }
            if sign.is_some() && addr["file_hash"].as_str() == sign && by_sign.is_none() {
                by_sign = Some(addr);
            }
            if first.is_none() {
                first = Some(addr);
            }
        });
        let main = post
            .aweme
            .pointer("/video/play_addr")
            .filter(|a| a["uri"].as_str() == Some(video_id));
        let chosen = by_sign.or(main).or(first);
        if watermark {
            let wm = (main.is_some())
                .then(|| post.aweme.pointer("/video/download_addr"))
                .flatten()
                .and_then(cdn_of)
                .filter(|u| u.contains("watermark=1"));
            let location = match (wm, chosen.and_then(cdn_of)) {
                (Some(u), _) => u.to_string(),
                (None, Some(u)) => format!("{u}&watermark=1"),
                (None, None) => synth_cdn_url(video_id, &expiry_hex(), "&watermark=1"),
            };
            return redirect(&location);
        }
        let location = chosen
            .and_then(cdn_of)
            .map(str::to_string)
            .unwrap_or_else(|| {
                synth_cdn_url(
                    &format!("{video_id}/{}", sign.unwrap_or("")),
                    &expiry_hex(),
                    "",
                )
            });
        redirect(&location)
    }
}

// ---------------------------------------------------------------------------------------------
// CDN

/// The CDN's 403 page (openresty), from the fixture's `body_lines`.
fn cdn_forbidden() -> Response {
    let fixture: Value = serde_json::from_str(CDN_403).expect("CDN 403 fixture");
    let lines: Vec<&str> = fixture["body_lines"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let title = lines.first().copied().unwrap_or("403 Forbidden");
    let server = lines.get(1).copied().unwrap_or("openresty");
    let details = lines.get(2..).unwrap_or(&[]).join("<br>\r\n");
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{server}</center>\r\n<center>{details}</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::SERVER, "openresty"),
        ],
        body,
    )
        .into_response()
}

/// Fills `out` up to `len` bytes with repeats of `text`.
fn fill(out: &mut Vec<u8>, len: usize, text: &str) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while out.len() < len {
        out.push(bytes[i % bytes.len()]);
        i += 1;
    }
}

/// A small, structurally valid MP4 (about 4 KiB): `ftyp`, a `free` box naming the file (so
/// tests can see which rendition, watermarked or not, was fetched), a `moov` with one
/// 720x1280 H.264 video track of 10 s, and an `mdat` of filler. Not playable; valid for the
/// box-walk validation.
fn fake_mp4(tag: &str) -> Vec<u8> {
    mp4_with_mdat(tag, 3000)
}

/// A structurally valid MP4 like `fake_mp4` of exactly `len` bytes (at least about 1 KiB):
/// the `mdat` takes up the rest. For tests and benchmarks of big files through the worker.
pub fn mp4_of_size(tag: &str, len: usize) -> Vec<u8> {
    let header = mp4_with_mdat(tag, 0).len();
    assert!(len >= header, "an MP4 needs at least {header} bytes");
    mp4_with_mdat(tag, len - header)
}

fn mp4_with_mdat(tag: &str, mdat_len: usize) -> Vec<u8> {
    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(payload.len() + 8);
        b.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }
    fn full(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 4]; // version 0, flags 0
        p.extend_from_slice(payload);
        bx(kind, &p)
    }
    let matrix: [u32; 9] = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000];
    let matrix: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
    let (w, h, timescale, duration) = (720u32, 1280u32, 1000u32, 10_000u32);
    let mut mvhd = Vec::new();
    mvhd.extend_from_slice(&[0; 8]); // creation, modification
    mvhd.extend_from_slice(&timescale.to_be_bytes());
    mvhd.extend_from_slice(&duration.to_be_bytes());
    mvhd.extend_from_slice(&0x10000u32.to_be_bytes()); // rate
    mvhd.extend_from_slice(&0x100u16.to_be_bytes()); // volume
    mvhd.extend_from_slice(&[0; 10]);
    mvhd.extend_from_slice(&matrix);
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes()); // next track id
    let mut tkhd = Vec::new();
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track id
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&duration.to_be_bytes());
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&[0; 8]); // layer, group, volume, reserved
    tkhd.extend_from_slice(&matrix);
    tkhd.extend_from_slice(&(w << 16).to_be_bytes());
    tkhd.extend_from_slice(&(h << 16).to_be_bytes());
    let mut mdhd = Vec::new();
    mdhd.extend_from_slice(&[0; 8]);
    mdhd.extend_from_slice(&timescale.to_be_bytes());
    mdhd.extend_from_slice(&duration.to_be_bytes());
    mdhd.extend_from_slice(&[0x55, 0xc4, 0, 0]); // language "und"
    let mut hdlr = vec![0; 4];
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"VideoHandler\0");
    let mut avc1 = vec![0; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&(w as u16).to_be_bytes());
    avc1.extend_from_slice(&(h as u16).to_be_bytes());
    avc1.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    avc1.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    avc1.extend_from_slice(&[0; 4]);
    avc1.extend_from_slice(&1u16.to_be_bytes()); // frame count
    avc1.extend_from_slice(&[0; 32]);
    avc1.extend_from_slice(&0x18u16.to_be_bytes());
    avc1.extend_from_slice(&0xffffu16.to_be_bytes());
    let mut stsd = 1u32.to_be_bytes().to_vec();
    stsd.extend_from_slice(&bx(b"avc1", &avc1));
    let stbl = [
        full(b"stsd", &stsd),
        full(b"stts", &0u32.to_be_bytes()),
        full(b"stsc", &0u32.to_be_bytes()),
        full(b"stsz", &[0; 8]),
        full(b"stco", &0u32.to_be_bytes()),
    ]
    .concat();
    let mut dref = 1u32.to_be_bytes().to_vec();
    dref.extend_from_slice(&bx(b"url ", &[0, 0, 0, 1]));
    let minf = [
        full(b"vmhd", &[0; 8]),
        bx(b"dinf", &full(b"dref", &dref)),
        bx(b"stbl", &stbl),
    ]
    .concat();
    let mdia = [
        full(b"mdhd", &mdhd),
        full(b"hdlr", &hdlr),
        bx(b"minf", &minf),
    ]
    .concat();
    let trak = [full(b"tkhd", &tkhd), bx(b"mdia", &mdia)].concat();
    let moov = bx(
        b"moov",
        &[full(b"mvhd", &mvhd), bx(b"trak", &trak)].concat(),
    );
    let mut ftyp = b"isom".to_vec();
    ftyp.extend_from_slice(&0x200u32.to_be_bytes());
    ftyp.extend_from_slice(b"isomiso2avc1mp41");
    let mut free = Vec::new();
    fill(
        &mut free,
        200,
        &format!("douyin-worker fixture video {tag}\n"),
    );
    let mut mdat = Vec::with_capacity(mdat_len);
    fill(&mut mdat, mdat_len, "mdat-filler ");
    [
        bx(b"ftyp", &ftyp),
        bx(b"free", &free),
        moov,
        bx(b"mdat", &mdat),
    ]
    .concat()
}

fn fake_webp(tag: &str) -> Vec<u8> {
    const LEN: usize = 1024;
    let mut b = Vec::with_capacity(LEN);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&((LEN - 8) as u32).to_le_bytes());
    b.extend_from_slice(b"WEBPVP8 ");
    b.extend_from_slice(&((LEN - 20) as u32).to_le_bytes());
    fill(&mut b, LEN, &format!("douyin-worker fixture image {tag}\n"));
    b
}

/// A small JPEG that passes validation: SOI, JFIF, a comment naming the file, a 1080x1440
/// frame header, EOI.
fn fake_jpeg(tag: &str) -> Vec<u8> {
    const LEN: usize = 1024;
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    ];
    let sof = [
        0xFF, 0xC0, 0x00, 0x11, 8, 0x05, 0xA0, 0x04, 0x38, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
    ];
    let comment_len = LEN - b.len() - sof.len() - 2 - 4;
    b.extend_from_slice(&[0xFF, 0xFE]);
    b.extend_from_slice(&((comment_len + 2) as u16).to_be_bytes());
    let mut text = Vec::new();
    fill(
        &mut text,
        comment_len,
        &format!("douyin-worker fixture image {tag}\n"),
    );
    b.extend_from_slice(&text);
    b.extend_from_slice(&sof);
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

/// A small MP3 that passes validation: an empty ID3v2.3 tag, an MPEG-1 layer III frame
/// header, filler.
fn fake_mp3(tag: &str) -> Vec<u8> {
    const LEN: usize = 2048;
    let mut b = vec![
        b'I', b'D', b'3', 3, 0, 0, 0, 0, 0, 0, 0xFF, 0xFB, 0x90, 0x64,
    ];
    fill(&mut b, LEN, &format!("douyin-worker fixture audio {tag}\n"));
    b
}

/// Whether the URL's expiry (8-hex path segment after the hash, or `x-expires`) has passed.
fn expired(host: &str, path: &str, query: &[(String, String)]) -> bool {
    let now = now_secs();
    if is_video_cdn(host) {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segs.len() >= 2
            && segs[0].len() == 32
            && segs[1].len() == 8
            && let Ok(exp) = u64::from_str_radix(segs[1], 16)
        {
            return exp < now;
        }
    }
    param(query, "x-expires")
        .and_then(|e| e.parse::<u64>().ok())
        .is_some_and(|exp| exp < now)
}

/// `Some(Ok((start, end_inclusive)))` for a satisfiable single `bytes=` range,
/// `Some(Err(()))` for an unsatisfiable one, None without (or with an unparsable) `Range`.
fn byte_range(headers: &HeaderMap, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: usize = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let start: usize = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<usize>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

fn cdn(host: &str, path: &str, query: &[(String, String)], headers: &HeaderMap) -> Response {
    if expired(host, path, query) {
        return cdn_forbidden();
    }
    if param(query, "sc") == Some("cover") {
        return cover(path);
    }
    let lower = path.to_ascii_lowercase();
    let mut tag = format!("{host}{path}");
    if param(query, "watermark") == Some("1") {
        tag.push_str(" watermark=1");
    }
    let (content_type, body) = if is_video_cdn(host) {
        ("video/mp4", fake_mp4(&tag))
    } else if lower.contains(".webp") {
        ("image/webp", fake_webp(&tag))
    } else if lower.contains(".jpeg") || lower.contains(".jpg") {
        ("image/jpeg", fake_jpeg(&tag))
    } else if lower.contains(".mp3") || host.ends_with("douyinstatic.com") {
        ("audio/mpeg", fake_mp3(&tag))
    } else {
        ("image/jpeg", fake_jpeg(&tag))
    };
    let len = body.len();
    let (status, body, content_range) = match byte_range(headers, len) {
        None => (StatusCode::OK, body, None),
        Some(Ok((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            body[start..=end].to_vec(),
            Some(format!("bytes {start}-{end}/{len}")),
        ),
        Some(Err(())) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("content-range"),
            );
            return r;
        }
    };
    let body_len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::SERVER, HeaderValue::from_static("openresty"));
    if let Some(cr) = content_range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("content-range"),
        );
    }
    r
}

/// What a post's cover can do wrong (see [`with_cover_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoverFault {
    /// Every cover URL answers 404.
    Missing,
    /// Every cover URL answers 200 with an HTML page.
    NotAnImage,
}

/// The post with every cover URL (`cover`, `origin_cover`) answering as `fault` says.
pub fn with_cover_fault(mut post: Post, fault: CoverFault) -> Post {
    let marker = match fault {
        CoverFault::Missing => "cover-missing",
        CoverFault::NotAnImage => "cover-not-image",
    };
    for field in ["cover", "origin_cover"] {
        if let Some(urls) = post
            .aweme
            .pointer_mut(&format!("/video/{field}/url_list"))
            .and_then(Value::as_array_mut)
        {
            for u in urls {
                if let Some(s) = u.as_str() {
                    *u = Value::String(s.replacen("/tos-cn-p-0015/", &format!("/{marker}/"), 1));
                }
            }
        }
    }
    post
}

/// A cover picture (`sc=cover`): the fixture image of the path's extension, or the fault the
/// path names.
fn cover(path: &str) -> Response {
    if path.contains("/cover-missing/") {
        return (StatusCode::NOT_FOUND, "404 Not Found").into_response();
    }
    let (content_type, body): (&str, &[u8]) = if path.contains("/cover-not-image/") {
        (
            "text/html",
            b"<html><body>verify you are human</body></html>",
        )
    } else if path.ends_with(".webp") {
        ("image/webp", COVER_WEBP)
    } else if path.ends_with(".png") {
        ("image/png", COVER_PNG)
    } else {
        ("image/jpeg", COVER_JPEG)
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use super::*;
    use douyin_worker::extract::reflow::reflow_id;
    use douyin_worker::net::upstream::Upstream;

    const ID: &str = "7412345678901234567";

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client")
    }

    /// The loopback URL the worker would request for `douyin_url`.
    fn at(server: &DouyinServer, douyin_url: &str) -> String {
        let up = Upstream::rewrite_to(url::Url::parse(&server.url).unwrap());
        up.apply(&url::Url::parse(douyin_url).unwrap()).to_string()
    }

    async fn get(server: &DouyinServer, douyin_url: &str) -> reqwest::Response {
        client()
            .get(at(server, douyin_url))
            .send()
            .await
            .expect("request to the fixture server")
    }

    fn share_url(id: &str) -> String {
        format!("https://www.iesdouyin.com/share/video/{id}/")
    }

    /// The iteminfo URL the worker builds from the page's tokens.
    fn iteminfo_url(id: &str, xss: &str, web: &str) -> String {
        format!(
            "https://www.iesdouyin.com/web/api/v2/aweme/iteminfo/?reflow_source=reflow_page&web_id={web}&device_id={web}&use_new_select_scope=0&item_ids={id}&reflow_id={}&user_cip={USER_CIP}",
            url::form_urlencoded::byte_serialize(reflow_id(xss, web).unwrap().as_bytes())
                .collect::<String>()
        )
    }

    async fn iteminfo(server: &DouyinServer, id: &str, cookie: Option<&str>) -> Value {
        let mut req = client().get(at(server, &iteminfo_url(id, &xsstoken(id), &web_id(id))));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// The JSON of `window._ROUTER_DATA = ...;</script>`.
    fn router_json(page: &str) -> Value {
        let start = page.find("window._ROUTER_DATA = ").expect("_ROUTER_DATA") + 22;
        let end = start + page[start..].find("</script>").unwrap();
        serde_json::from_str(page[start..end].trim().trim_end_matches(';')).unwrap()
    }

    fn attr<'a>(page: &'a str, name: &str) -> &'a str {
        let start = page.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &page[start..];
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        let rest = if quoted { &rest[1..] } else { rest };
        let end = rest
            .find(|c: char| c == '"' || c == '\'' || c == '>' || c.is_whitespace())
            .unwrap();
        &rest[..end]
    }

    #[test]
    fn posts_look_real() {
        let p = video_post(ID, Behaviour::default());
        assert_eq!(p.aweme["aweme_id"], ID);
        assert_eq!(p.aweme["status"]["aweme_id"], ID);
        let cdn = p.aweme["video"]["play_addr"]["url_list"][0]
            .as_str()
            .unwrap();
        let u = url::Url::parse(cdn).unwrap();
        assert_eq!(u.scheme(), "https");
        assert_eq!(u.host_str(), Some("v26-web.douyinvod.com"));
        let segs: Vec<&str> = u.path_segments().unwrap().collect();
        assert_eq!(segs[0].len(), 32);
        let exp = u64::from_str_radix(segs[1], 16).unwrap();
        assert!(exp > now_secs() + 3000 && exp <= now_secs() + 3600);
        assert_eq!(p.aweme["video"]["play_addr"]["uri"], video_uri(ID));
        assert!(!p.aweme.to_string().contains(FIXTURE_VIDEO_URI));
        assert!(!p.aweme.to_string().contains(FIXTURE_AWEME_ID));
        assert_eq!(p.aweme["video"]["bit_rate"].as_array().unwrap().len(), 3);
        assert!(
            p.aweme["video"]["download_addr"]["url_list"][0]
                .as_str()
                .unwrap()
                .contains("watermark=1")
        );
        assert_eq!(p.aweme["author"]["nickname"], "静萱🧚");
        assert_ne!(
            video_post("7000000000000000001", Behaviour::default()).aweme["video"]["play_addr"]["url_list"]
                [0],
            p.aweme["video"]["play_addr"]["url_list"][0]
        );
        assert_eq!(web_id(ID).len(), 19);
        assert!(web_id(ID).bytes().all(|b| b.is_ascii_digit()));

        let img = image_post(ID, Behaviour::SlidesOnly);
        let images = img.aweme["images"].as_array().unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(img.aweme["aweme_type"], 68);
        for i in images {
            let urls = i["url_list"].as_array().unwrap();
            assert!(urls[0].as_str().unwrap().contains(".webp?"));
            assert!(urls[1].as_str().unwrap().contains(".jpeg?"));
        }
        assert_eq!(images.iter().filter(|i| !i["video"].is_null()).count(), 1);
    }

    #[tokio::test]
    async fn short_links_redirect() {
        let s = DouyinServer::start(vec![]).await;
        let loc = format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN&mid=1");
        s.add_short_link("iRNBho6u", &loc);
        s.add_short_link("a_b-C9", &loc);
        for link in [
            "https://v.douyin.com/iRNBho6u/",
            "https://jx.douyin.com/a_b-C9/",
            "https://v.douyin.com/a_b-C9",
        ] {
            let r = get(&s, link).await;
            assert_eq!(r.status(), 302, "{link}");
            assert_eq!(r.headers()["location"], loc.as_str());
        }
        assert_eq!(get(&s, "https://v.douyin.com/nope/").await.status(), 404);
        assert_eq!(
            s.requests()[0],
            "GET v.douyin.com/iRNBho6u/",
            "{:?}",
            s.requests()
        );
    }

    #[tokio::test]
    async fn old_share_page_has_router_data_with_playwm_urls() {
        let s = DouyinServer::start(vec![video_post(ID, Behaviour::OldSharePage)]).await;
        let r = get(&s, &format!("{}?region=CN&mid=1", share_url(ID))).await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("<script>window._ROUTER_DATA = {"));
        assert!(page.contains("\\u002F"));
        assert!(page.contains("video_(id)\\u002Fpage"));
        let data = router_json(&page);
        let res = &data["loaderData"]["video_(id)/page"]["videoInfoRes"];
        assert_eq!(res["status_code"], 0);
        assert_eq!(res["filter_list"], json!([]));
        let item = &res["item_list"][0];
        assert_eq!(item["aweme_id"], ID);
        let playwm = item["video"]["play_addr"]["url_list"][0].as_str().unwrap();
        assert_eq!(
            playwm,
            format!(
                "https://aweme.snssdk.com/aweme/v1/playwm/?video_id={}&ratio=720p&line=0",
                video_uri(ID)
            )
        );

        // The play form of the playwm URL reaches the CDN; the playwm one a watermarked file.
        let r = get(&s, &playwm.replace("playwm", "play")).await;
        assert_eq!(r.status(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.starts_with("https://v26-web.douyinvod.com/"), "{loc}");
        assert!(!loc.contains("watermark=1"));
        let r = get(&s, playwm).await;
        assert_eq!(r.status(), 302);
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .contains("watermark=1")
        );

        // Note paths use the note key.
        let page = get(&s, &format!("https://m.douyin.com/share/note/{ID}/"))
            .await
            .text()
            .await
            .unwrap();
        let data = router_json(&page);
        assert_eq!(
            data["loaderData"]["note_(id)/page"]["videoInfoRes"]["item_list"][0]["aweme_id"],
            ID
        );
        // Unknown id: neither record nor tokens.
        let r = get(&s, &share_url("7000000000000000000")).await;
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(!page.contains("_ROUTER_DATA") && !page.contains("douyin_reflow_token"));
    }

    #[tokio::test]
    async fn new_share_page_has_tokens_and_sets_cookies() {
        let s = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
        let r = get(&s, &share_url(ID)).await;
        assert_eq!(r.status(), 200);
        let cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(cookies.contains(&format!("ttwid=test-ttwid-{ID}; Path=/; HttpOnly")));
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with("s_v_web_id=verify_test"))
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("<div id=douyin_reflow_token xsstoken="));
        assert!(page.contains("<div id='douyin_reflow_webId' webId=\""));
        assert!(!page.contains("videoInfoRes"));
        assert_eq!(attr(&page, "xsstoken"), xsstoken(ID));
        assert_eq!(attr(&page, "webId"), web_id(ID));
        assert_eq!(attr(&page, "usercip"), USER_CIP);
    }

    #[tokio::test]
    async fn iteminfo_checks_reflow_id_device_id_and_cookie() {
        let s = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
        let page = get(&s, &share_url(ID)).await.text().await.unwrap();
        let (xss, web) = (attr(&page, "xsstoken"), attr(&page, "webId"));
        let cookie = format!("ttwid=test-ttwid-{ID}; s_v_web_id=verify_test");

        let ok: Value = client()
            .get(at(&s, &iteminfo_url(ID, xss, web)))
            .header("Cookie", &cookie)
            .header("Referer", share_url(ID))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ok["status_code"], 0);
        assert_eq!(ok["item_list"][0]["aweme_id"], ID);
        let h = s.last_headers("/iteminfo/").unwrap();
        assert_eq!(h["referer"], share_url(ID).as_str());

        let miss = json!({"status_code": 11110, "status_msg": "encrypt_data_miss"});
        assert_eq!(iteminfo(&s, ID, None).await, miss);
        let bad: Value = client()
            .get(at(&s, &iteminfo_url(ID, "other-token", web)))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bad, miss);
        let other_device = iteminfo_url(ID, xss, web)
            .replace(&format!("device_id={web}"), "device_id=7000000000000000000");
        let bad: Value = client()
            .get(at(&s, &other_device))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bad, miss);
        let no_reflow = format!(
            "https://www.iesdouyin.com/web/api/v2/aweme/iteminfo/?reflow_source=reflow_page&web_id={web}&device_id={web}&use_new_select_scope=0&item_ids={ID}"
        );
        let bad: Value = client()
            .get(at(&s, &no_reflow))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(bad, miss);

        let unknown = iteminfo(&s, "7000000000000000000", Some(&cookie)).await;
        assert_eq!(
            unknown,
            json!({"status_code": 0, "item_list": [], "filter_list": []})
        );
        assert!(
            s.requests()
                .iter()
                .any(|r| r.starts_with("GET www.iesdouyin.com/web/api/v2/aweme/iteminfo/?"))
        );
    }

    #[tokio::test]
    async fn encrypt_data_miss_then_success() {
        let s = DouyinServer::start(vec![
            video_post(ID, Behaviour::EncryptDataMiss(1)),
            video_post("7000000000000000002", Behaviour::SlidesOnly),
            video_post("7000000000000000003", Behaviour::DetailOnly),
        ])
        .await;
        let cookie = format!("ttwid=test-ttwid-{ID}");
        let first = iteminfo(&s, ID, Some(&cookie)).await;
        assert_eq!(first["status_code"], 11110);
        let second = iteminfo(&s, ID, Some(&cookie)).await;
        assert_eq!(second["status_code"], 0);
        assert_eq!(second["item_list"][0]["aweme_id"], ID);
        for id in ["7000000000000000002", "7000000000000000003"] {
            for _ in 0..2 {
                assert_eq!(iteminfo(&s, id, Some(&cookie)).await["status_code"], 11110);
            }
        }
    }

    #[tokio::test]
    async fn slidesinfo_and_detail() {
        let s = DouyinServer::start(vec![
            video_post(ID, Behaviour::OldSharePage),
            image_post("7000000000000000002", Behaviour::SlidesOnly),
            video_post("7000000000000000003", Behaviour::NewSharePage),
            video_post("7000000000000000004", Behaviour::DetailOnly),
        ])
        .await;
        let slides = |id: &str| {
            format!(
                "https://www.iesdouyin.com/web/api/v2/aweme/slidesinfo/?aweme_ids=[{id}]&request_source=200"
            )
        };
        for (id, answers) in [
            (ID, true),
            ("7000000000000000002", true),
            ("7000000000000000003", false),
            ("7000000000000000004", false),
        ] {
            let v: Value = get(&s, &slides(id)).await.json().await.unwrap();
            assert_eq!(v["status_code"], 0);
            let details = v["aweme_details"].as_array().unwrap();
            if answers {
                assert_eq!(details[0]["aweme_id"], id);
            } else {
                assert!(details.is_empty(), "{id}");
            }
        }
        let v: Value = get(&s, &slides("7000000000000000002"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["aweme_details"][0]["images"].as_array().unwrap().len(), 3);

        let v: Value = get(
            &s,
            "https://www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id=7000000000000000004&aid=6383",
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["aweme_detail"]["aweme_id"], "7000000000000000004");
    }

    #[tokio::test]
    async fn play_redirects_to_cdn_which_serves_media() {
        let s = DouyinServer::start(vec![
            video_post(ID, Behaviour::NewSharePage),
            image_post("7000000000000000002", Behaviour::SlidesOnly),
        ])
        .await;
        let post = video_post(ID, Behaviour::NewSharePage);
        // The fixture's www.douyin.com play URL of the first bit_rate entry (its sign).
        let rate = &post.aweme["video"]["bit_rate"][0]["play_addr"];
        let play = rate["url_list"][2].as_str().unwrap();
        assert!(play.starts_with("https://www.douyin.com/aweme/v1/play/?video_id="));
        let r = get(&s, play).await;
        assert_eq!(r.status(), 302);
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc_path = url::Url::parse(&loc).unwrap().path().to_string();
        let want = url::Url::parse(rate["url_list"][0].as_str().unwrap()).unwrap();
        assert!(loc_path.ends_with(want.path().split_once("/video/").unwrap().1));
        let r = get(&s, &loc).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "video/mp4");
        let announced: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), announced);
        assert_eq!(&body[4..8], b"ftyp");
        // A structurally valid MP4, as the validation stage checks it.
        let info =
            douyin_worker::validate::validate_media(&mut std::io::Cursor::new(body.to_vec()))
                .expect("the fixture video passes validation");
        assert_eq!(info.mime_type, "video/mp4");

        // Range.
        let r = client()
            .get(at(&s, &loc))
            .header("Range", "bytes=0-7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes 0-7/{announced}")
        );
        assert_eq!(r.bytes().await.unwrap().len(), 8);

        // aweme.snssdk.com, the H.265-only play_addr_265 (no CDN URL in its list).
        let uri = video_uri(ID);
        let r = get(
            &s,
            &format!("https://aweme.snssdk.com/aweme/v1/play/?video_id={uri}&ratio=720p&line=0"),
        )
        .await;
        assert_eq!(r.status(), 302);
        let h265 = post.aweme["video"]["play_addr_265"]["url_list"][0]
            .as_str()
            .unwrap();
        let r = get(&s, h265).await;
        assert_eq!(r.status(), 302);
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("https://v26-web.douyinvod.com/")
        );
        assert_eq!(
            get(
                &s,
                "https://aweme.snssdk.com/aweme/v1/play/?video_id=v0300fg10000nothere"
            )
            .await
            .status(),
            404
        );

        // Live photo video, images and music.
        let img = image_post("7000000000000000002", Behaviour::SlidesOnly);
        let live = img.aweme["images"][1]["video"]["play_addr"]["url_list"][1]
            .as_str()
            .unwrap();
        let r = get(&s, live).await;
        assert_eq!(r.status(), 302);
        let webp = img.aweme["images"][0]["url_list"][0].as_str().unwrap();
        let r = get(&s, webp).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/webp");
        let jpeg = img.aweme["images"][0]["url_list"][1].as_str().unwrap();
        let r = get(&s, jpeg).await;
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        assert_eq!(&r.bytes().await.unwrap()[..3], &[0xFF, 0xD8, 0xFF]);
        let mp3 = img.aweme["music"]["play_url"]["url_list"][0]
            .as_str()
            .unwrap();
        let r = get(&s, mp3).await;
        assert_eq!(r.headers()["content-type"], "audio/mpeg");

        // An expired CDN URL (the fixture's) answers the openresty 403.
        let fixture: Value = serde_json::from_str(CDN_403).unwrap();
        let r = get(&s, fixture["request_url_example"].as_str().unwrap()).await;
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("Forbid_code: 020200"));
    }

    #[tokio::test]
    async fn captcha_everywhere() {
        let s = DouyinServer::start(vec![video_post(ID, Behaviour::Captcha)]).await;
        let cookie = format!("ttwid=test-ttwid-{ID}");
        let uri = video_uri(ID);
        let urls = [
            share_url(ID),
            iteminfo_url(ID, &xsstoken(ID), &web_id(ID)),
            format!(
                "https://www.iesdouyin.com/web/api/v2/aweme/slidesinfo/?aweme_ids=[{ID}]&request_source=200"
            ),
            format!("https://www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id={ID}"),
            format!("https://aweme.snssdk.com/aweme/v1/play/?video_id={uri}&ratio=720p&line=0"),
        ];
        for u in urls {
            let r = client()
                .get(at(&s, &u))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{u}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(r.text().await.unwrap().contains("验证码中间页"), "{u}");
        }
    }

    #[tokio::test]
    async fn region_blocked_answers_filter_lists() {
        let s = DouyinServer::start(vec![video_post(ID, Behaviour::RegionBlocked)]).await;
        let page = get(&s, &share_url(ID)).await.text().await.unwrap();
        let res = &router_json(&page)["loaderData"]["video_(id)/page"]["videoInfoRes"];
        assert_eq!(res["item_list"], json!([]));
        assert_eq!(res["filter_list"][0]["aweme_id"], ID);
        assert_eq!(res["filter_list"][0]["filter_reason"], "copyright_foreign");
        assert_eq!(res["filter_list"][0]["detail_msg"], REGION_BLOCKED_MSG);

        let v = iteminfo(&s, ID, Some(&format!("ttwid=test-ttwid-{ID}"))).await;
        assert_eq!(v["status_code"], 0);
        assert_eq!(v["item_list"], json!([]));
        assert_eq!(v["filter_list"][0]["filter_reason"], "copyright_foreign");

        let v: Value = get(
            &s,
            &format!("https://www.douyin.com/aweme/v1/web/aweme/detail/?aweme_id={ID}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["status_code"], 0);
        assert!(v.get("aweme_detail").is_none());
        assert_eq!(v["filter_detail"]["aweme_id"], ID);
        assert_eq!(v["filter_detail"]["filter_reason"], "copyright_foreign");

        // Anything else is a JSON 404 naming the path.
        let r = get(&s, "https://www.douyin.com/nothing/here").await;
        assert_eq!(r.status(), 404);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["path"], "www.douyin.com/nothing/here");
    }
}
