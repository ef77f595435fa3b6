//! The aweme record: every field optional, read leniently by the `de` field readers below.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The aweme record, every field optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Aweme {
    /// The item id (Douyin sends a string or a number).
    #[serde(deserialize_with = "de::string")]
    pub aweme_id: Option<String>,
    /// The caption.
    #[serde(deserialize_with = "de::string")]
    pub desc: Option<String>,
    /// Publication time, unix seconds.
    #[serde(deserialize_with = "de::int")]
    pub create_time: Option<i64>,
    /// Duration in milliseconds, as Douyin gives it.
    #[serde(deserialize_with = "de::int")]
    pub duration: Option<i64>,
    /// 0 for a video; 2, 68, 150 and others for image posts.
    #[serde(deserialize_with = "de::int")]
    pub aweme_type: Option<i64>,
    /// Who posted it.
    #[serde(deserialize_with = "de::object")]
    pub author: Option<Author>,
    /// The soundtrack.
    #[serde(deserialize_with = "de::object")]
    pub music: Option<Music>,
    /// Counters (likes, comments, shares...), kept as Douyin sends them.
    #[serde(deserialize_with = "de::value")]
    pub statistics: Option<Value>,
    /// Deleted / prohibited / private flags.
    #[serde(deserialize_with = "de::object")]
    pub status: Option<AwemeStatus>,
    /// The video streams and covers.
    #[serde(deserialize_with = "de::object")]
    pub video: Option<Video>,
    /// The pictures of an image post (`null` or absent for a video).
    #[serde(deserialize_with = "de::list")]
    pub images: Option<Vec<Image>>,
    /// Douyin's "no download button" flag (informative only).
    #[serde(deserialize_with = "de::flag")]
    pub prevent_download: Option<bool>,
}

/// The author of an aweme.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Author {
    /// Numeric user id (string or number on the wire).
    #[serde(deserialize_with = "de::string")]
    pub uid: Option<String>,
    /// The stable public user id used in profile URLs.
    #[serde(deserialize_with = "de::string")]
    pub sec_uid: Option<String>,
    /// Display name.
    #[serde(deserialize_with = "de::string")]
    pub nickname: Option<String>,
    /// The Douyin handle, when set.
    #[serde(deserialize_with = "de::string")]
    pub unique_id: Option<String>,
    /// The short numeric handle.
    #[serde(deserialize_with = "de::string")]
    pub short_id: Option<String>,
}

/// The soundtrack of an aweme.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Music {
    /// Music id.
    #[serde(deserialize_with = "de::string")]
    pub id: Option<String>,
    /// Title.
    #[serde(deserialize_with = "de::string")]
    pub title: Option<String>,
    /// Performer as Douyin labels it.
    #[serde(deserialize_with = "de::string")]
    pub author: Option<String>,
    /// Nickname of the user who uploaded the sound.
    #[serde(deserialize_with = "de::string")]
    pub owner_nickname: Option<String>,
    /// The audio file (mp3), mirrors in `url_list`.
    #[serde(deserialize_with = "de::object")]
    pub play_url: Option<PlayAddr>,
    /// Length in seconds.
    #[serde(deserialize_with = "de::int")]
    pub duration: Option<i64>,
}

/// The availability flags of an aweme.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AwemeStatus {
    /// Deleted by its author or Douyin.
    #[serde(deserialize_with = "de::flag")]
    pub is_delete: Option<bool>,
    /// Taken down.
    #[serde(deserialize_with = "de::flag")]
    pub is_prohibited: Option<bool>,
    /// 0 public; anything else (self only, friends only...) is private.
    #[serde(deserialize_with = "de::int")]
    pub private_status: Option<i64>,
    /// Under review (informative only).
    #[serde(deserialize_with = "de::flag")]
    pub in_reviewing: Option<bool>,
    /// Whether sharing is allowed (informative only).
    #[serde(deserialize_with = "de::flag")]
    pub allow_share: Option<bool>,
}

/// The video part of an aweme (also the motion part of a live photo).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Video {
    /// The default stream.
    #[serde(deserialize_with = "de::object")]
    pub play_addr: Option<PlayAddr>,
    /// The H.264 stream, when Douyin lists it apart.
    #[serde(deserialize_with = "de::object")]
    pub play_addr_h264: Option<PlayAddr>,
    /// The H.265 (bytevc1) stream.
    #[serde(deserialize_with = "de::object")]
    pub play_addr_265: Option<PlayAddr>,
    /// The watermarked download stream: parsed for completeness, never downloaded.
    #[serde(deserialize_with = "de::object")]
    pub download_addr: Option<PlayAddr>,
    /// Every rendition ("gear") Douyin offers.
    #[serde(deserialize_with = "de::list")]
    pub bit_rate: Option<Vec<BitRate>>,
    /// The cover picture.
    #[serde(deserialize_with = "de::object")]
    pub cover: Option<Cover>,
    /// The cover at its original size.
    #[serde(deserialize_with = "de::object")]
    pub origin_cover: Option<Cover>,
    /// The animated cover.
    #[serde(deserialize_with = "de::object")]
    pub dynamic_cover: Option<Cover>,
    /// Width of the default stream.
    #[serde(deserialize_with = "de::uint32")]
    pub width: Option<u32>,
    /// Height of the default stream.
    #[serde(deserialize_with = "de::uint32")]
    pub height: Option<u32>,
    /// Duration in milliseconds.
    #[serde(deserialize_with = "de::int")]
    pub duration: Option<i64>,
    /// Quality label of the default stream, e.g. `1080p`.
    #[serde(deserialize_with = "de::string")]
    pub ratio: Option<String>,
    /// Whether the default stream is H.265.
    #[serde(deserialize_with = "de::flag")]
    pub is_h265: Option<bool>,
    /// Whether the default stream is bytevc1 (H.265).
    #[serde(deserialize_with = "de::flag")]
    pub is_bytevc1: Option<bool>,
}

/// One media file and its mirrors.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct PlayAddr {
    /// Douyin's id of the file (the video id for videos; a URL for music).
    #[serde(deserialize_with = "de::string")]
    pub uri: Option<String>,
    /// `{uri}_{codec}_{res}p_{bitrate}` for videos.
    #[serde(deserialize_with = "de::string")]
    pub url_key: Option<String>,
    /// Mirrors, best first as Douyin orders them.
    #[serde(deserialize_with = "de::strings")]
    pub url_list: Vec<String>,
    /// File size in bytes.
    #[serde(deserialize_with = "de::uint")]
    pub data_size: Option<u64>,
    /// Width in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub height: Option<u32>,
    /// MD5-like hash of the file.
    #[serde(deserialize_with = "de::string")]
    pub file_hash: Option<String>,
}

/// One rendition of the video in `video.bit_rate[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BitRate {
    /// e.g. `adapt_1080_0`, `normal_720_0`.
    #[serde(deserialize_with = "de::string")]
    pub gear_name: Option<String>,
    /// Bits per second.
    #[serde(deserialize_with = "de::uint")]
    pub bit_rate: Option<u64>,
    /// H.265 flag.
    #[serde(deserialize_with = "de::flag")]
    pub is_h265: Option<bool>,
    /// bytevc1 (H.265) flag.
    #[serde(deserialize_with = "de::flag")]
    pub is_bytevc1: Option<bool>,
    /// Douyin's quality class.
    #[serde(deserialize_with = "de::int")]
    pub quality_type: Option<i64>,
    /// Container format when given (`mp4`, `dash`...).
    #[serde(deserialize_with = "de::string")]
    pub format: Option<String>,
    /// The file.
    #[serde(deserialize_with = "de::object")]
    pub play_addr: Option<PlayAddr>,
    /// Frames per second.
    #[serde(rename = "FPS", alias = "fps", deserialize_with = "de::uint32")]
    pub fps: Option<u32>,
}

/// A picture with mirrors (covers).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Cover {
    /// Douyin's id of the picture.
    #[serde(deserialize_with = "de::string")]
    pub uri: Option<String>,
    /// Mirrors.
    #[serde(deserialize_with = "de::strings")]
    pub url_list: Vec<String>,
    /// Width in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub height: Option<u32>,
}

/// One picture of an image post.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Image {
    /// Douyin's id of the picture.
    #[serde(deserialize_with = "de::string")]
    pub uri: Option<String>,
    /// Mirrors, in several formats (`.webp`, `.jpeg`).
    #[serde(deserialize_with = "de::strings")]
    pub url_list: Vec<String>,
    /// Watermarked copies: parsed for completeness, never downloaded.
    #[serde(deserialize_with = "de::strings")]
    pub download_url_list: Vec<String>,
    /// Width in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(deserialize_with = "de::uint32")]
    pub height: Option<u32>,
    /// The motion part of a live photo.
    #[serde(deserialize_with = "de::object")]
    pub video: Option<Video>,
}

impl Aweme {
    /// Reads a record from any JSON value; `None` when it is not an object.
    pub(crate) fn from_value(value: &Value) -> Option<Aweme> {
        if !value.is_object() {
            return None;
        }
        Aweme::deserialize(value).ok()
    }

    /// Rewrites every watermarked `/playwm/` play URL to its `/play/` twin.
    pub(crate) fn unwatermark(&mut self) {
        fn video(v: &mut Video) {
            let addrs = [
                &mut v.play_addr,
                &mut v.play_addr_h264,
                &mut v.play_addr_265,
            ];
            let gears = v.bit_rate.iter_mut().flatten().map(|b| &mut b.play_addr);
            for addr in addrs.into_iter().chain(gears).flatten() {
                for url in &mut addr.url_list {
                    *url = playwm_to_play(url);
                }
            }
        }
        if let Some(v) = &mut self.video {
            video(v);
        }
        for image in self.images.iter_mut().flatten() {
            if let Some(v) = &mut image.video {
                video(v);
            }
        }
    }
}

/// `…/aweme/v1/playwm/?video_id=…` (watermarked) → `…/aweme/v1/play/?video_id=…`.
pub(crate) fn playwm_to_play(url: &str) -> String {
    let path_end = url.find('?').unwrap_or(url.len());
    let (path, query) = url.split_at(path_end);
    if let Some(stem) = path.strip_suffix("/playwm/") {
        format!("{stem}/play/{query}")
    } else if let Some(stem) = path.strip_suffix("/playwm") {
        format!("{stem}/play{query}")
    } else {
        url.to_string()
    }
}

pub(super) fn value_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn value_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Lenient field readers: a value of an unexpected type reads as absent.
mod de {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// Any JSON value but `null`.
    pub fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Ok(Some(Value::deserialize(d)?).filter(|v| !v.is_null()))
    }

    /// A structure, from an object only (serde would also build one from an array).
    pub fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(match Value::deserialize(d)? {
            v @ Value::Object(_) => T::deserialize(v).ok(),
            _ => None,
        })
    }

    /// A list of structures; elements that are not objects, or do not fit, are dropped.
    pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .filter(Value::is_object)
                    .filter_map(|item| T::deserialize(item).ok())
                    .collect(),
            ),
            _ => None,
        })
    }

    /// A string, or a number written out.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(super::value_string(&Value::deserialize(d)?))
    }

    /// The strings of a list (a lone string is a list of one).
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Some(s),
                    _ => None,
                })
                .collect(),
            Value::String(s) if !s.trim().is_empty() => vec![s],
            _ => Vec::new(),
        })
    }

    /// An integer, from a number or a numeric string.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::String(s) => {
                let s = s.trim();
                s.parse().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| f as i64)
                })
            }
            _ => super::value_i64(&v),
        })
    }

    /// A non-negative integer.
    pub(crate) fn uint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let v = Value::deserialize(d)?;
        if let Some(n) = v.as_u64() {
            return Ok(Some(n));
        }
        Ok(int(v).ok().flatten().and_then(|n| u64::try_from(n).ok()))
    }

    /// A non-negative integer that fits 32 bits (pixels, frames per second).
    pub(crate) fn uint32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Ok(uint(d)?.and_then(|n| u32::try_from(n).ok()))
    }

    /// A flag: `true`/`false`, `1`/`0`, or those as strings.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => Some(b),
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" | "" => Some(false),
                _ => None,
            },
            _ => None,
        })
    }
}
