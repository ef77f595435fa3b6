//! Fuzz tests of what reads untrusted input: the link parser, the record parsers (and the
//! media choice made from a record), and the media validators, on arbitrary and mutated input.
//!
//! Each test runs `PROPTEST_CASES` cases (proptest's default, 256, in CI; set it higher to fuzz
//! longer) from a fixed seed (`PROPTEST_RNG_SEED` picks another) and prints how many ran
//! (`cargo nextest run --no-capture`). The properties: no input makes a parser panic or hang
//! (a case that runs for a minute fails the test and names its input), errors are the typed
//! ones with a message, and a valid link inside any surrounding text is still found.

use std::fmt::Debug;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use douyin_worker::config::ImagePolicy;
use douyin_worker::extract::aweme::{self, EXCERPT_CHARS, ParseError};
use douyin_worker::extract::link::{self, Link, PostKind};
use douyin_worker::extract::media;
use douyin_worker::validate::{ValidationError, validate_image, validate_media, validate_mp3};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::media::{H264_AAC, ffmpeg};

const POST_2023: &str = include_str!("../fixtures/douyin/web_aweme_post_video_2023.json");
const FILTERED_2026: &str =
    include_str!("../fixtures/douyin/app_detail_filtered_copyright_foreign_2026-09.json");
const ENCRYPT_MISS: &str =
    include_str!("../fixtures/douyin/h5_iteminfo_error_encrypt_data_miss.json");
const CAPTCHA: &str = include_str!("../fixtures/douyin/captcha-middle-page.html");
const REFLOW: &str = include_str!("../fixtures/douyin/share_page_reflow_context_snippet.html");
const ID_2023: &str = "7188795449468259623";

/// How long one case may run before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// Runs `check` on `cases` of the strategy `make` builds, on a thread of its own that a
/// watchdog stops waiting for when one case runs longer than [`HANG`]; prints the count.
fn fuzz<S, F>(name: &'static str, make: impl FnOnce() -> S + Send + 'static, check: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
{
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x6675_7a7a);
    }
    config.failure_persistence = None;
    let planned = config.cases;
    let cases = Arc::new(AtomicUsize::new(0));
    let current = Arc::new(Mutex::new(String::new()));
    let (done, finished) = mpsc::channel();
    {
        let (cases, current) = (cases.clone(), current.clone());
        std::thread::spawn(move || {
            let result = TestRunner::new(config).run(&make(), |input| {
                *current.lock().unwrap() = clip(&format!("{input:?}"), 2000);
                cases.fetch_add(1, Ordering::SeqCst);
                check(input)
            });
            let _ = done.send(result.map_err(|e| e.to_string()));
        });
    }
    let mut seen = 0;
    let result = loop {
        match finished.recv_timeout(HANG) {
            Ok(result) => break result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = cases.load(Ordering::SeqCst);
                assert_ne!(
                    now,
                    seen,
                    "{name}: case {now} has run for {HANG:?}: {}",
                    current.lock().unwrap()
                );
                seen = now;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the fuzz thread died"),
        }
    };
    let ran = cases.load(Ordering::SeqCst);
    eprintln!("fuzz {name}: {ran} cases ran ({planned} planned, shrinking included)");
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

// ---- The link parser ----

/// Text that looks like a link more often than `any::<String>()` does.
fn linkish() -> impl Strategy<Value = String> {
    let piece = select(vec![
        "https://",
        "http://",
        "ftp://",
        "://",
        "v.douyin.com",
        "www.douyin.com",
        "douyin.com.",
        "iesdouyin.com",
        "jx.douyin.com",
        "evil.com",
        "@",
        "/",
        "//",
        "video",
        "note",
        "slides",
        "share",
        "m",
        "?modal_id=",
        "&vid=",
        "#",
        ":8080",
        "7188795449468259623",
        "123",
        "iRNBho6u",
        "%2F",
        "..",
        " ",
        "，",
        "【",
        "】",
        "\u{0}",
        "é",
        "\u{3000}",
        "-",
        "_",
        "~",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

#[test]
fn link_parser_never_panics_and_refuses_with_a_reason() {
    fuzz(
        "link parser",
        || prop_oneof![any::<String>(), linkish()],
        |input| {
            match link::parse(&input) {
                Ok(Link::Id { aweme_id, .. }) => ensure(
                    (8..=25).contains(&aweme_id.len())
                        && aweme_id.bytes().all(|b| b.is_ascii_digit()),
                    || format!("{input:?} gave the id {aweme_id:?}"),
                )?,
                Ok(Link::Short { url }) => ensure(
                    url.scheme() == "https"
                        && matches!(
                            url.host_str(),
                            Some("v.douyin.com" | "jx.douyin.com" | "v.iesdouyin.com")
                        ),
                    || format!("{input:?} gave the short link {url}"),
                )?,
                Err(e) => {
                    let message = e.to_string();
                    ensure(message.len() > "unsupported link: ".len(), || {
                        format!("{input:?}: empty reason {message:?}")
                    })?;
                }
            }
            Ok(())
        },
    );
}

/// A valid link and what it must parse to.
fn valid_link() -> impl Strategy<Value = (String, Link)> {
    let id = "[1-9][0-9]{18}";
    let code = "[A-Za-z0-9]{5,12}";
    let short_host = select(vec!["v.douyin.com", "jx.douyin.com", "v.iesdouyin.com"]);
    let scheme = select(vec!["https://", "http://", ""]);
    let kind = select(vec![
        ("video", PostKind::Video),
        ("note", PostKind::Note),
        ("slides", PostKind::Slides),
    ]);
    let id_link = |aweme_id: String, kind| Link::Id { aweme_id, kind };
    prop_oneof![
        (scheme.clone(), short_host, code).prop_map(|(scheme, host, code)| {
            let url = format!("https://{host}/{code}/").parse().unwrap();
            (format!("{scheme}{host}/{code}/"), Link::Short { url })
        }),
        (scheme, kind.clone(), id).prop_map(move |(scheme, (word, kind), id)| {
            let text = format!("{scheme}www.douyin.com/{word}/{id}");
            (text, id_link(id, Some(kind)))
        }),
        (kind, id).prop_map(move |((word, kind), id)| {
            let text = format!("https://www.iesdouyin.com/share/{word}/{id}/?region=CN&from=web");
            (text, id_link(id, Some(kind)))
        }),
        id.prop_map(move |id| {
            let text = format!("https://www.douyin.com/jingxuan?modal_id={id}");
            (text, id_link(id, None))
        }),
    ]
}

/// Surrounding text: anything without a Douyin host in it.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        select(vec![
            "7.43 复制打开抖音，看看【作者的作品】",
            "长按复制此条消息，打开抖音搜索，查看TA的更多作品。",
            "https://example.com/video/7188795449468259623",
            "ftp://x.example",
            "abc 123 #tag @someone",
        ])
        .prop_map(String::from),
    ]
    .prop_filter("no Douyin host in the noise", |s| {
        !s.to_ascii_lowercase().contains("douyin")
    })
}

/// What may stand between the link and the text around it: characters that end a URL.
fn separator() -> impl Strategy<Value = &'static str> {
    select(vec![
        " ", "\n", "\t", "，", "。", "【", "】", "：", "\u{3000}", " (", "\" ",
    ])
}

#[test]
fn a_valid_link_inside_any_text_is_found() {
    fuzz(
        "link in noise",
        || {
            (
                noise(),
                separator(),
                valid_link(),
                select(vec!["", ",", ".", ")", "!"]),
                separator(),
                noise(),
            )
        },
        |(before, sep1, (link_text, expected), punct, sep2, after)| {
            let input = format!("{before}{sep1}{link_text}{punct}{sep2}{after}");
            let got = link::parse(&input);
            ensure(got.as_ref() == Ok(&expected), || {
                format!("{input:?}: expected {expected:?}, got {got:?}")
            })
        },
    );
}

// ---- The record parsers ----

/// The 2023 capture's aweme, as JSON.
fn aweme_2023() -> Value {
    let post: Value = serde_json::from_str(POST_2023).unwrap();
    post["aweme_list"][0].clone()
}

/// A good answer of each record API, and a share page carrying the record.
fn answers() -> Vec<Value> {
    let item = aweme_2023();
    vec![
        json!({ "status_code": 0, "aweme_detail": item }),
        json!({ "status_code": 0, "item_list": [item], "filter_list": [] }),
        json!({ "status_code": 0, "aweme_details": [item] }),
        json!({ "loaderData": { "video_(id)/page": { "videoInfoRes": { "item_list": [item] } } } }),
        serde_json::from_str(FILTERED_2026).unwrap(),
    ]
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A value of another type or shape, to put in place of one in a record.
fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        select(vec![
            Value::Null,
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(1.5e300),
            json!(""),
            json!("7188795449468259623"),
            json!("https://"),
            json!([]),
            json!({}),
            json!(true),
            json!([null, 1, "a"]),
            json!({"url_list": [null, "", 3]}),
        ]),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
    ]
}

/// A record parser: the body and the aweme id asked for.
type RecordParser = fn(&str, &str) -> Result<aweme::Aweme, ParseError>;

/// Runs every record parser on `body` and the media choice on what they return.
fn parse_records(body: &str) -> Result<(), TestCaseError> {
    let parsers: [RecordParser; 4] = [
        aweme::detail_record,
        aweme::iteminfo_record,
        aweme::slidesinfo_record,
        aweme::share_page_record,
    ];
    for parse in parsers {
        match parse(body, ID_2023) {
            Ok(record) => {
                for policy in [ImagePolicy::Refuse, ImagePolicy::Store] {
                    if let Err(e) = media::choose(&record, policy, true) {
                        ensure(!e.to_string().is_empty(), || "empty choice error".into())?;
                    }
                }
                let _ = media::metadata(&record, media::candidates(&record, false).first());
                let _ = media::cover_url(&record);
                let _ = aweme::check_status(&record);
            }
            Err(e) => {
                let _ = e.class();
                ensure(!e.to_string().is_empty(), || format!("empty error {e:?}"))?;
                if let ParseError::Drift { excerpt, .. } = &e {
                    ensure(excerpt.chars().count() <= EXCERPT_CHARS + 1, || {
                        format!("excerpt of {} characters", excerpt.chars().count())
                    })?;
                }
            }
        }
    }
    let _ = aweme::router_data(body);
    let _ = aweme::reflow_tokens(body);
    let _ = aweme::is_captcha_page(body);
    Ok(())
}

#[test]
fn record_parsers_never_panic_on_mutated_records() {
    fuzz(
        "record parsers (JSON mutations)",
        || (any::<Index>(), any::<Index>(), replacement(), any::<bool>()),
        |(answer, node, with, as_page)| {
            let answers = answers();
            let mut v = answers[answer.index(answers.len())].clone();
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            let at = &all[node.index(all.len())];
            match v.pointer_mut(at) {
                Some(slot) => *slot = with,
                None => v = with,
            }
            let body = if as_page {
                let escaped = v.to_string().replace('/', "\\u002F");
                format!("<html><script>window._ROUTER_DATA = {escaped}</script></html>")
            } else {
                v.to_string()
            };
            parse_records(&body)
        },
    );
}

#[test]
fn record_parsers_never_panic_on_arbitrary_or_cut_text() {
    let texts = [POST_2023, FILTERED_2026, ENCRYPT_MISS, CAPTCHA, REFLOW];
    fuzz(
        "record parsers (text)",
        move || {
            prop_oneof![
                any::<String>(),
                (
                    select(texts.to_vec()),
                    any::<Index>(),
                    any::<Index>(),
                    any::<String>()
                )
                    .prop_map(|(text, from, to, with)| {
                        let chars: Vec<char> = text.chars().collect();
                        let (a, b) = (from.index(chars.len()), to.index(chars.len()));
                        let (a, b) = (a.min(b), a.max(b));
                        let mut out: String = chars[..a].iter().collect();
                        out.push_str(&with);
                        out.extend(&chars[b..]);
                        out
                    }),
            ]
        },
        |body| parse_records(&body),
    );
}

// ---- The validators ----

/// Real media made by ffmpeg: an MP4 (fast start and not), a JPEG, a PNG and an MP3.
fn real_media() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let video = ["-f", "lavfi", "-i", "testsrc=duration=1:size=64x48:rate=10"];
    let sine = ["-f", "lavfi", "-i", "sine=duration=1"];
    let (fast, slow) = (out("f.mp4"), out("s.mp4"));
    for (path, extra) in [(&fast, &["-movflags", "+faststart"][..]), (&slow, &[])] {
        let mut args = [&video[..], &sine[..], extra, &H264_AAC].concat();
        args.push(path);
        ffmpeg(&args);
    }
    let (jpeg, png, mp3) = (out("i.jpg"), out("i.png"), out("a.mp3"));
    for path in [&jpeg, &png] {
        ffmpeg(&[&video[..], &["-frames:v", "1", path]].concat());
    }
    ffmpeg(&[&sine[..], &["-c:a", "libmp3lame", &mp3]].concat());
    [fast, slow, jpeg, png, mp3]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// One change to a file's bytes.
#[derive(Clone, Debug)]
enum Edit {
    Byte(Index, u8),
    /// A 32-bit big-endian field (box sizes, entry counts, offsets) set to a value.
    Word(Index, u32),
    Insert(Index, Vec<u8>),
    Remove(Index, u16),
    Cut(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let word = prop_oneof![Just(0u32), Just(u32::MAX), Just(1), Just(8), any::<u32>()];
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Edit::Byte(at, b)),
        4 => (any::<Index>(), word).prop_map(|(at, w)| Edit::Word(at, w)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        1 => (any::<Index>(), any::<u16>()).prop_map(|(at, n)| Edit::Remove(at, n)),
        1 => any::<Index>().prop_map(Edit::Cut),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match e {
        Edit::Byte(at, b) => bytes[at.index(len)] = *b,
        Edit::Word(at, w) => {
            let at = at.index(len);
            let end = (at + 4).min(len);
            bytes[at..end].copy_from_slice(&w.to_be_bytes()[..end - at]);
        }
        Edit::Insert(at, b) => {
            let at = at.index(len);
            bytes.splice(at..at, b.iter().copied());
        }
        Edit::Remove(at, n) => {
            let at = at.index(len);
            bytes.drain(at..(at + usize::from(*n)).min(len));
        }
        Edit::Cut(at) => bytes.truncate(at.index(len)),
    }
}

/// Checks an error of a validator: a kebab-case code and a message.
fn typed(e: &ValidationError) -> Result<(), TestCaseError> {
    let code = e.code();
    ensure(
        !code.is_empty()
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        || format!("code {code:?} of {e:?}"),
    )?;
    ensure(!e.to_string().is_empty(), || {
        format!("empty message of {e:?}")
    })?;
    let _ = e.class();
    Ok(())
}

/// Every validator on `bytes`.
fn validate_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = validate_media(&mut Cursor::new(bytes)) {
        typed(&e)?;
    }
    if let Err(e) = validate_image(&mut Cursor::new(bytes)) {
        typed(&e)?;
    }
    if let Err(e) = validate_mp3(&mut Cursor::new(bytes)) {
        typed(&e)?;
    }
    Ok(())
}

#[test]
fn validators_never_panic_on_mutated_real_media() {
    let media = Arc::new(real_media());
    let count = media.len();
    fuzz(
        "validators (mutated real media)",
        move || (0..count, prop::collection::vec(edit(), 1..6)),
        move |(source, edits)| {
            let mut bytes = media[source].clone();
            for e in &edits {
                apply(&mut bytes, e);
            }
            validate_all(&bytes)
        },
    );
}

#[test]
fn validators_never_panic_on_arbitrary_bytes() {
    fuzz(
        "validators (arbitrary bytes)",
        || {
            let magic = select(vec![
                &b""[..],
                b"\0\0\0\x18ftypisom",
                b"\0\0\0\x14ftypheic",
                b"\xff\xd8\xff",
                b"\x89PNG\r\n\x1a\n",
                b"RIFF\0\0\0\0WEBP",
                b"ID3\x04\0\0",
                b"\xff\xfb\x90",
                b"<html>",
                b"{\"a\"",
            ]);
            (magic, prop::collection::vec(any::<u8>(), 0..512))
                .prop_map(|(magic, rest)| [magic, &rest[..]].concat())
        },
        |bytes| validate_all(&bytes),
    );
}
