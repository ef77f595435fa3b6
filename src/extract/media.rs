//! Which file to download from an [`Aweme`]: the video candidates and their ranking, the
//! image-post policy, the expiry of CDN URLs, and the metadata kept with the stored file.
//!
//! Ranking: H.264 first when asked (players everywhere can open it), then the larger short
//! side (`min(width, height)`), then the bitrate, then the file size; ties keep Douyin's order.
//! `bytevc2` renditions are dropped (few players decode them), and so is every `download_addr`
//! (it carries the watermark).

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::aweme::{Aweme, Image, PlayAddr, Video, playwm_to_play};

mod cover;
#[cfg(test)]
mod tests;

pub use cover::{cover_url, cover_urls};

/// The video codec of a rendition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC (Douyin's `bytevc1`).
    H265,
    /// ByteDance's `bytevc2`: dropped from the candidates.
    Bytevc2,
    /// Not said.
    Unknown,
}

impl Codec {
    /// Reads a codec name as Douyin writes it in `url_key` (`h264`, `bytevc1`, `h265`...).
    fn from_name(name: &str) -> Option<Codec> {
        match name.to_ascii_lowercase().as_str() {
            "h264" | "avc" | "avc1" | "x264" => Some(Codec::H264),
            "h265" | "hevc" | "bytevc1" | "x265" => Some(Codec::H265),
            "bytevc2" | "h266" | "vvc" => Some(Codec::Bytevc2),
            _ => None,
        }
    }

    /// Preference order when H.264 comes first: H.264, unknown (Douyin's `/aweme/v1/play/`
    /// answers H.264 by default), then H.265.
    fn h264_rank(self) -> u8 {
        match self {
            Codec::H264 => 0,
            Codec::Unknown => 1,
            Codec::H265 | Codec::Bytevc2 => 2,
        }
    }
}

/// One downloadable rendition of a video.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Mirrors of the same file, in Douyin's order.
    pub urls: Vec<String>,
    /// The codec.
    pub codec: Codec,
    /// Width in pixels, when known.
    pub width: Option<u32>,
    /// Height in pixels, when known.
    pub height: Option<u32>,
    /// Bits per second, when known.
    pub bitrate: Option<u64>,
    /// File size in bytes, when known.
    pub data_size: Option<u64>,
    /// Where it came from: `bit_rate[0] adapt_1080_0`, `play_addr`, `play_addr_h264`,
    /// `play_addr_265`.
    pub source: String,
}

/// A candidate before ranking, with the short side it may only hint at.
struct Raw {
    candidate: Candidate,
    short_side: u32,
}

/// The video candidates of `aweme`, best first: `bytevc2` and URL-less ones dropped,
/// duplicates (same first URL) merged into the first, their mirrors appended.
pub fn candidates(aweme: &Aweme, prefer_h264: bool) -> Vec<Candidate> {
    aweme
        .video
        .as_ref()
        .map_or_else(Vec::new, |video| video_candidates(video, prefer_h264))
}

fn video_candidates(video: &Video, prefer_h264: bool) -> Vec<Candidate> {
    let mut raw = Vec::new();
    for (i, gear) in video.bit_rate.iter().flatten().enumerate() {
        let format = gear.format.as_deref().unwrap_or("").to_ascii_lowercase();
        if matches!(format.as_str(), "dash" | "hls" | "m3u8") {
            continue; // segments or a video-only track, not one playable file
        }
        let Some(addr) = &gear.play_addr else {
            continue;
        };
        let name = gear.gear_name.as_deref().filter(|g| !g.is_empty());
        let context = Context {
            source: name.map_or_else(
                || format!("bit_rate[{i}]"),
                |n| format!("bit_rate[{i}] {n}"),
            ),
            codec: flags_codec(gear.is_h265, gear.is_bytevc1),
            bitrate: gear.bit_rate,
            short_side: name.and_then(resolution_in_gear),
            size: None,
        };
        raw.extend(candidate(addr, context));
    }
    let main = Context {
        source: "play_addr".into(),
        codec: flags_codec(video.is_h265, video.is_bytevc1),
        bitrate: None,
        short_side: video.ratio.as_deref().and_then(resolution_label),
        size: Some((video.width, video.height)),
    };
    let others = [
        (&video.play_addr, main),
        (
            &video.play_addr_h264,
            Context::named("play_addr_h264", Codec::H264),
        ),
        (
            &video.play_addr_265,
            Context::named("play_addr_265", Codec::H265),
        ),
    ];
    for (addr, context) in others {
        if let Some(addr) = addr {
            raw.extend(candidate(addr, context));
        }
    }
    rank(merge(raw), prefer_h264)
}

/// What the surroundings of a `play_addr` say about it.
struct Context {
    source: String,
    /// The codec when `url_key` does not say.
    codec: Option<Codec>,
    bitrate: Option<u64>,
    /// The short side when the sizes are missing (from a gear name or a ratio label).
    short_side: Option<u32>,
    /// Width and height when `play_addr` has neither.
    size: Option<(Option<u32>, Option<u32>)>,
}

impl Context {
    fn named(source: &str, codec: Codec) -> Self {
        Context {
            source: source.into(),
            codec: Some(codec),
            bitrate: None,
            short_side: None,
            size: None,
        }
    }
}

/// `Some(H265)` when a flag says so, `Some(H264)` when a flag explicitly says no.
fn flags_codec(is_h265: Option<bool>, is_bytevc1: Option<bool>) -> Option<Codec> {
    match (is_h265, is_bytevc1) {
        (Some(true), _) | (_, Some(true)) => Some(Codec::H265),
        (Some(false), _) | (_, Some(false)) => Some(Codec::H264),
        _ => None,
    }
}

/// `{uri}_{codec}_{res}p_{bitrate}` → (codec, short side, bitrate).
fn parse_url_key(key: &str) -> (Option<Codec>, Option<u32>, Option<u64>) {
    let mut parts = key.rsplit('_');
    let bitrate = parts.next().and_then(|b| b.parse().ok());
    let res = parts.next().and_then(resolution_label);
    let codec = parts.next().and_then(Codec::from_name);
    match (codec, res) {
        (Some(_), _) | (_, Some(_)) => (codec, res, bitrate),
        _ => (key.split('_').find_map(Codec::from_name), None, None),
    }
}

/// `720p` → 720.
fn resolution_label(label: &str) -> Option<u32> {
    label.trim().strip_suffix(['p', 'P'])?.parse().ok()
}

/// `adapt_lowest_1080_1` → 1080.
fn resolution_in_gear(gear: &str) -> Option<u32> {
    gear.split('_')
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|n| (144..=8640).contains(n))
}

/// `ratio=720p` in a play URL → 720.
fn resolution_in_url(url: &str) -> Option<u32> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ratio="))
        .and_then(resolution_label)
}

fn candidate(addr: &PlayAddr, context: Context) -> Option<Raw> {
    let urls = clean_urls(&addr.url_list);
    if urls.is_empty() {
        return None;
    }
    let (key_codec, key_res, key_bitrate) = addr
        .url_key
        .as_deref()
        .map_or((None, None, None), parse_url_key);
    let (width, height) = match (addr.width, addr.height, context.size) {
        (None, None, Some(size)) => size,
        (w, h, _) => (w, h),
    };
    let short_side = match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => w.min(h),
        _ => key_res
            .or(context.short_side)
            .or_else(|| urls.iter().find_map(|u| resolution_in_url(u)))
            .unwrap_or(0),
    };
    let candidate = Candidate {
        urls,
        codec: key_codec.or(context.codec).unwrap_or(Codec::Unknown),
        width,
        height,
        bitrate: context.bitrate.filter(|b| *b > 0).or(key_bitrate),
        data_size: addr.data_size.filter(|s| *s > 0),
        source: context.source,
    };
    Some(Raw {
        candidate,
        short_side,
    })
}

/// Absolute http(s) URLs, `playwm` rewritten, watermarked ones dropped, no repeats.
fn clean_urls(list: &[String]) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for url in list {
        let url = url.trim();
        let url = match url.strip_prefix("//") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_string(),
        };
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || lower.contains("watermark=1")
        {
            continue;
        }
        let url = playwm_to_play(&url);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    urls
}

/// Drops `bytevc2`; merges candidates that share their first URL into the earlier one.
fn merge(raw: Vec<Raw>) -> Vec<Raw> {
    let mut out: Vec<Raw> = Vec::new();
    for item in raw
        .into_iter()
        .filter(|r| r.candidate.codec != Codec::Bytevc2)
    {
        let Some(kept) = out
            .iter_mut()
            .find(|k| k.candidate.urls[0] == item.candidate.urls[0])
        else {
            out.push(item);
            continue;
        };
        let (k, c) = (&mut kept.candidate, item.candidate);
        for url in c.urls {
            if !k.urls.contains(&url) {
                k.urls.push(url);
            }
        }
        k.width = k.width.or(c.width);
        k.height = k.height.or(c.height);
        k.bitrate = k.bitrate.or(c.bitrate);
        k.data_size = k.data_size.or(c.data_size);
        if k.codec == Codec::Unknown {
            k.codec = c.codec;
        }
        kept.short_side = kept.short_side.max(item.short_side);
    }
    out
}

fn rank(mut raw: Vec<Raw>, prefer_h264: bool) -> Vec<Candidate> {
    raw.sort_by_key(|r| {
        let c = &r.candidate;
        let codec = if prefer_h264 { c.codec.h264_rank() } else { 0 };
        (
            codec,
            Reverse(r.short_side),
            Reverse(c.bitrate.unwrap_or(0)),
            Reverse(c.data_size.unwrap_or(0)),
        )
    });
    raw.into_iter().map(|r| r.candidate).collect()
}

pub use crate::config::ImagePolicy;

/// One picture of an image post, ready to download.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageMedia {
    /// Mirrors, non-`.webp` ones first.
    pub urls: Vec<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// The motion part of a live photo, when it is one.
    pub live_video: Option<Candidate>,
}

/// What to download.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Choice {
    /// A video: the best rendition, and every candidate best first (`best` included, as
    /// `candidates[0]`) to fall back on.
    Video {
        /// The rendition to fetch first.
        best: Candidate,
        /// All candidates, best first.
        candidates: Vec<Candidate>,
    },
    /// An image post stored as pictures.
    Images {
        /// The pictures, in order (those without any URL left out).
        images: Vec<ImageMedia>,
        /// The soundtrack.
        music_url: Option<String>,
    },
}

/// Why there is nothing to download.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ChoiceError {
    /// An image post while the policy is [`ImagePolicy::Refuse`] (permanent).
    #[error("image post ({0} images)")]
    ImagePost(usize),
    /// No usable media (permanent).
    #[error("nothing downloadable: {0}")]
    Nothing(String),
}

/// Chooses what to download. The caller checks availability first
/// ([`super::aweme::check_status`]; the record parsers already do).
pub fn choose(
    aweme: &Aweme,
    images: ImagePolicy,
    prefer_h264: bool,
) -> Result<Choice, ChoiceError> {
    if let Some(pictures) = aweme.images.as_ref().filter(|list| !list.is_empty()) {
        if images == ImagePolicy::Refuse {
            return Err(ChoiceError::ImagePost(pictures.len()));
        }
        let media: Vec<ImageMedia> = pictures
            .iter()
            .map(|image| image_media(image, prefer_h264))
            .filter(|m| !m.urls.is_empty() || m.live_video.is_some())
            .collect();
        if media.is_empty() {
            return Err(ChoiceError::Nothing(format!(
                "image post ({} images) without image URLs",
                pictures.len()
            )));
        }
        return Ok(Choice::Images {
            images: media,
            music_url: music_url(aweme),
        });
    }
    let candidates = candidates(aweme, prefer_h264);
    match candidates.first() {
        Some(best) => Ok(Choice::Video {
            best: best.clone(),
            candidates,
        }),
        None => Err(ChoiceError::Nothing(why_nothing(aweme))),
    }
}

fn image_media(image: &Image, prefer_h264: bool) -> ImageMedia {
    let live_video = image
        .video
        .as_ref()
        .and_then(|v| video_candidates(v, prefer_h264).into_iter().next());
    ImageMedia {
        urls: prefer_non_webp(clean_urls(&image.url_list)),
        width: image.width,
        height: image.height,
        live_video,
    }
}

fn is_webp(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let (path, query) = lower.split_once('?').unwrap_or((&lower, ""));
    path.ends_with(".webp") || query.split('&').any(|p| p == "format=webp")
}

fn prefer_non_webp(urls: Vec<String>) -> Vec<String> {
    let (webp, other): (Vec<String>, Vec<String>) = urls.into_iter().partition(|u| is_webp(u));
    other.into_iter().chain(webp).collect()
}

fn why_nothing(aweme: &Aweme) -> String {
    let Some(video) = &aweme.video else {
        return "no video and no images in the record".to_string();
    };
    let addrs = [
        &video.play_addr,
        &video.play_addr_h264,
        &video.play_addr_265,
    ];
    let gears = video.bit_rate.iter().flatten().map(|g| &g.play_addr);
    let listed: Vec<&PlayAddr> = addrs.into_iter().chain(gears).flatten().collect();
    let with_urls = listed
        .iter()
        .filter(|a| !clean_urls(&a.url_list).is_empty())
        .count();
    if with_urls > 0 {
        "only bytevc2 or segmented renditions".to_string()
    } else if video
        .download_addr
        .as_ref()
        .is_some_and(|a| !a.url_list.is_empty())
    {
        "only the watermarked download_addr".to_string()
    } else {
        "no play URLs".to_string()
    }
}

fn music_url(aweme: &Aweme) -> Option<String> {
    let play = aweme.music.as_ref()?.play_url.as_ref()?;
    let mut urls = clean_urls(&play.url_list);
    if urls.is_empty() {
        urls = clean_urls(play.uri.as_slice());
    }
    urls.into_iter().next()
}

/// When a CDN URL expires: the 8-hex segment after the 32-hex hash in douyinvod / zjcdn
/// paths (`/<hash>/<expiry>/video/...`), else the `x-expires=` query parameter.
pub(crate) fn url_expiry(url: &str) -> Option<DateTime<Utc>> {
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    let path = before_query
        .split_once("://")
        .map_or(before_query, |(_, rest)| rest);
    let segments: Vec<&str> = path.split('/').collect();
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let from_path = segments
        .windows(2)
        .find(|pair| is_hex(pair[0], 32) && is_hex(pair[1], 8))
        .and_then(|pair| i64::from_str_radix(pair[1], 16).ok());
    let from_query = || {
        query
            .split(['&', '#'])
            .find_map(|pair| pair.strip_prefix("x-expires="))
            .and_then(|v| v.parse::<i64>().ok())
    };
    DateTime::from_timestamp(from_path.or_else(from_query)?, 0)
}

/// Whether `url`'s expiry is known and later than `now + margin`.
pub(crate) fn still_valid(url: &str, now: DateTime<Utc>, margin: std::time::Duration) -> bool {
    let Ok(margin) = chrono::Duration::from_std(margin) else {
        return false;
    };
    match (url_expiry(url), now.checked_add_signed(margin)) {
        (Some(expiry), Some(limit)) => expiry > limit,
        _ => false,
    }
}

/// What users want to know about the item, for `storage_metadata` / `video_url_meta`:
/// `aweme_id`, `desc`, `aweme_type`, `author{nickname, uid, sec_uid, unique_id}`,
/// `create_time` (unix seconds), `duration` (milliseconds, as Douyin gives it), `width`,
/// `height`, `codec`, `bitrate`, `data_size`, `source` (of `chosen`), `cover_url`,
/// `music{title, author, url}`, `statistics` (as Douyin sends them), `image_count`.
/// Unknown values are `null`.
pub fn metadata(aweme: &Aweme, chosen: Option<&Candidate>) -> Value {
    let video = aweme.video.as_ref();
    let author = aweme.author.as_ref().map(|a| {
        json!({ "nickname": a.nickname, "uid": a.uid, "sec_uid": a.sec_uid, "unique_id": a.unique_id })
    });
    let music = aweme.music.as_ref().map(|m| {
        json!({
            "title": m.title,
            "author": m.author.clone().or_else(|| m.owner_nickname.clone()),
            "url": music_url(aweme),
        })
    });
    let image_count = aweme.images.as_ref().map(Vec::len).filter(|n| *n > 0);
    json!({
        "aweme_id": aweme.aweme_id,
        "desc": aweme.desc,
        "aweme_type": aweme.aweme_type,
        "author": author,
        "create_time": aweme.create_time,
        "duration": aweme.duration.or_else(|| video.and_then(|v| v.duration)),
        "width": chosen.and_then(|c| c.width).or_else(|| video.and_then(|v| v.width)),
        "height": chosen.and_then(|c| c.height).or_else(|| video.and_then(|v| v.height)),
        "codec": chosen.map(|c| c.codec),
        "bitrate": chosen.and_then(|c| c.bitrate),
        "data_size": chosen.and_then(|c| c.data_size),
        "source": chosen.map(|c| c.source.as_str()),
        "cover_url": cover_url(aweme),
        "music": music,
        "statistics": aweme.statistics,
        "image_count": image_count,
    })
}
