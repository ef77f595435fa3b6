//! Stage 3: checks that a downloaded file is really the media it claims to be.
//!
//! Pure functions over `Read + Seek`:
//! - [`validate_mp4`] walks the ISO-BMFF boxes of a video (headers only: `mdat` is seeked
//!   over, never read), checks that the box sizes add up to the file size, and parses
//!   `moov` (bounded to 64 MiB) for the duration, the tracks, their dimensions and codecs;
//!   then checks each track's sample tables against their boxes, each other and the `mdat`
//!   extents the walk saw (`sample_table`), so a file no player can index is refused.
//! - [`validate_image`] checks the magic bytes and dimensions of JPEG, PNG, WebP and HEIC.
//! - [`validate_mp3`] checks an image post's soundtrack: an ID3v2 tag, then an MPEG frame.
//!
//! Both first look for what CDNs and anti-bot layers send instead of media: an empty body,
//! an HTML page (the captcha middle page, an openresty 403 page) or a JSON error, and name
//! what they found.
//!
//! [`FileValidator`] is the pipeline's [`Validator`]: it opens the downloaded file, picks
//! one of the two by the magic bytes and returns the [`MediaInfo`] the storage stage records.
//!
//! # Failure class
//! A [`ValidationError`] becomes a [`JobError`] whose code is [`ValidationError::code`] and
//! whose class is [`ValidationError::class`]. Nearly all are **transient**: a truncated,
//! zero-filled or otherwise broken file is a broken download, which downloading again may
//! fix; an HTML or JSON body served as the video is a captcha or a CDN refusal, which goes
//! away later too (fresh extraction, fresh signed URL). A file broken at the source fails for
//! good once the queue's attempt limit is reached. The exception is
//! [`ValidationError::SampleTable`], which is **permanent**: every box is whole and the
//! sizes add up to the file, so the bytes arrived as they were written, and the encoder
//! wrote an index no player can follow.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{ErrorClass, JobError};
use crate::stage::{DownloadedFile, MediaInfo, Validator};

mod audio;
mod image;
mod mp4;
mod sample_table;
#[cfg(test)]
mod tests;

pub use audio::{AudioInfo, validate_mp3};
pub use image::validate_image;
pub use mp4::validate_mp4;

/// What validation found about a video (`stage::MediaInfo::metadata` is built from it).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VideoInfo {
    /// The `ftyp` major brand as written, e.g. `isom`, `mp42`, `M4V ` (unknown but printable
    /// brands are accepted when the structure is a valid MP4).
    pub brand: String,
    /// The `ftyp` compatible brands as written.
    pub compatible_brands: Vec<String>,
    /// `mvhd` duration over its timescale (`mehd` for fragmented files without one).
    pub duration_seconds: f64,
    /// Display width of the first video track (`tkhd`, else its sample entry), swapped with
    /// the height when the track matrix rotates by 90° or 270°.
    pub width: Option<u32>,
    /// Display height of the first video track (see [`VideoInfo::width`]).
    pub height: Option<u32>,
    /// Sample entry fourccs of the video and audio tracks: `avc1`, `hvc1`, `hev1`, `mp4a`, …
    pub codecs: Vec<String>,
    /// Whether a video track (`hdlr` type `vide`) exists.
    pub has_video: bool,
    /// Whether an audio track (`hdlr` type `soun`) exists.
    pub has_audio: bool,
    /// Whether `moov` precedes the first `mdat` (playback can start before the end arrives).
    pub fast_start: bool,
    /// The file size in bytes.
    pub size: u64,
}

/// What validation found about an image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImageInfo {
    /// The format the magic bytes show.
    pub format: ImageFormat,
    /// Width in pixels (for HEIC: of the primary item, after `irot`).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// An image format [`validate_image`] knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 'PNG' 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`).
    Webp,
    /// HEIF/HEIC (`ftyp` with brand `heic`, `heix`, `mif1`, `msf1`, …).
    Heic,
}

impl ImageFormat {
    /// Content type, e.g. `image/jpeg`.
    pub fn mime_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Heic => "image/heic",
        }
    }

    /// File extension without the dot, e.g. `jpg`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Heic => "heic",
        }
    }
}

/// Why a file is not what it claims to be; the message names what was found.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// The file has no bytes.
    #[error("empty file: 0 bytes")]
    Empty,
    /// An HTML or XML page was served instead of the media (captcha page, CDN error page).
    #[error("{}", markup_message(.xml, .title, .snippet, .instead_of))]
    Html {
        /// An XML document rather than an HTML page.
        xml: bool,
        /// The page's `<title>`, when one is in its first 4 KiB.
        title: Option<String>,
        /// The page's first characters, whitespace collapsed.
        snippet: String,
        /// What the file was supposed to be: `video` or `image`.
        instead_of: &'static str,
    },
    /// JSON was served instead of the media (an API error answer).
    #[error("JSON served as {instead_of}: {snippet}")]
    Json {
        /// The document's first characters, whitespace collapsed.
        snippet: String,
        /// What the file was supposed to be: `video` or `image`.
        instead_of: &'static str,
    },
    /// The file does not start with an `ftyp` box.
    #[error("not an MP4 file (no ftyp box at the start): found {found}{}", looks_like_suffix(.looks_like))]
    NotMp4 {
        /// The first bytes, printable (`\xNN` for the others).
        found: String,
        /// What the first bytes look like instead, when known (e.g. `a JPEG image`).
        looks_like: Option<&'static str>,
    },
    /// The file is none of the image formats known.
    #[error("not a JPEG, PNG, WebP or HEIC image: found {found}{}", looks_like_suffix(.looks_like))]
    NotImage {
        /// The first bytes, printable.
        found: String,
        /// What the first bytes look like instead, when known.
        looks_like: Option<&'static str>,
    },
    /// The `ftyp` major brand is not printable or names an image format, not a video.
    #[error("ftyp major brand \"{0}\" is not a video brand")]
    UnknownBrand(String),
    /// A required box is absent.
    #[error("{}", missing_message(.0))]
    MissingBox(&'static str),
    /// A box declares more bytes than the file has left: the download was cut short.
    #[error(
        "truncated: {box_type} box at byte {offset} declares {declared} bytes but only {available} remain ({} missing)",
        .declared - .available
    )]
    Truncated {
        /// The box type, printable.
        box_type: String,
        /// Where the box starts.
        offset: u64,
        /// The size the box declares, header included.
        declared: u64,
        /// The bytes left in the file from the box's start.
        available: u64,
    },
    /// A box declares a size smaller than its own header.
    #[error(
        "bad box size: {box_type} box at byte {offset} declares {size} bytes, less than its header"
    )]
    BadBoxSize {
        /// The box type, printable.
        box_type: String,
        /// Where the box starts.
        offset: u64,
        /// The size it declares.
        size: u64,
    },
    /// Where a box should start, the bytes are not a box header (non-printable type).
    #[error("no valid box at byte {offset}: found {found}")]
    BadBoxType {
        /// Where the box should start.
        offset: u64,
        /// The 8 header bytes, printable.
        found: String,
    },
    /// The file goes on with zeros where the next box should start, before `moov` and
    /// `mdat` were both seen (the old worker stored such a file as a finished video).
    #[error("{after} followed by zeros at byte {offset}: not a video ({} of nothing)", human_size(*.length))]
    ZeroFilled {
        /// Where the zeros start.
        offset: u64,
        /// The type of the box before them, e.g. `ftyp`.
        after: String,
        /// Bytes from `offset` to the end of the file.
        length: u64,
    },
    /// Bytes that are not a box follow the last box of a complete file.
    #[error("trailing garbage: {length} bytes after the last box, at byte {offset}")]
    TrailingData {
        /// Where they start.
        offset: u64,
        /// How many there are.
        length: u64,
    },
    /// `moov` is too large to read into memory.
    #[error("moov box of {size} bytes is over the 64 MiB limit")]
    MoovTooLarge {
        /// Its declared size.
        size: u64,
    },
    /// A box inside `moov` (or a HEIC `meta`) is inconsistent.
    #[error("malformed {box_type} box: {reason}")]
    Malformed {
        /// The box type.
        box_type: String,
        /// What is wrong.
        reason: String,
    },
    /// A track's sample tables contradict their boxes, each other or the file: an entry count
    /// larger than its box, sample counts that disagree, a chunk outside `mdat`. The file
    /// was written broken (the box sizes add up, so it is not a download cut short).
    #[error("{track}: {box_type} {reason}")]
    SampleTable {
        /// Which track, e.g. `track 2 (soun)` (numbered from 1 in `moov` order, with the
        /// `hdlr` type), or `all tracks`.
        track: String,
        /// The table at fault, e.g. `stsz`, `stco`, `stsc`.
        box_type: &'static str,
        /// What is wrong, with the counts, e.g. `declares 4294967295 entries but the box
        /// has room for 25`.
        reason: String,
    },
    /// `moov` has no video and no audio track.
    #[error("no video or audio track in moov (tracks found: {})", track_list(.handlers))]
    NoTracks {
        /// The handler types of the tracks found.
        handlers: Vec<String>,
    },
    /// The movie has no length.
    #[error("mvhd duration is 0 (or unknown): the movie has no length")]
    ZeroDuration,
    /// The file on disk does not have the size the download recorded.
    #[error("file is {actual} bytes on disk but the download recorded {expected}")]
    SizeMismatch {
        /// The size the download recorded.
        expected: u64,
        /// The size on disk.
        actual: u64,
    },
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// The image is broken (truncated, no dimensions).
    #[error("bad image: {0}")]
    Image(String),
    /// The soundtrack is not a well-formed MP3.
    #[error("bad audio: {0}")]
    Audio(String),
}

impl ValidationError {
    /// A stable kebab-case code, e.g. `not-mp4`, `truncated`, `zero-filled`, `html-as-video`.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::Empty => "empty-file",
            ValidationError::Html { .. } => "html-as-video",
            ValidationError::Json { .. } => "json-as-video",
            ValidationError::NotMp4 { .. } => "not-mp4",
            ValidationError::NotImage { .. } => "not-image",
            ValidationError::UnknownBrand(_) => "unknown-brand",
            ValidationError::MissingBox("moov") => "missing-moov",
            ValidationError::MissingBox("mdat") => "missing-mdat",
            ValidationError::MissingBox(_) => "missing-box",
            ValidationError::Truncated { .. } => "truncated",
            ValidationError::BadBoxSize { .. } => "bad-box-size",
            ValidationError::BadBoxType { .. } => "bad-box-type",
            ValidationError::ZeroFilled { .. } => "zero-filled",
            ValidationError::TrailingData { .. } => "trailing-data",
            ValidationError::MoovTooLarge { .. } => "moov-too-large",
            ValidationError::Malformed { .. } => "malformed-box",
            ValidationError::SampleTable { .. } => "bad-sample-table",
            ValidationError::NoTracks { .. } => "no-tracks",
            ValidationError::ZeroDuration => "zero-duration",
            ValidationError::SizeMismatch { .. } => "size-mismatch",
            ValidationError::Io(_) => "validate-io",
            ValidationError::Image(_) => "bad-image",
            ValidationError::Audio(_) => "bad-audio",
        }
    }
}

impl ValidationError {
    /// Whether downloading again can help (see the module docs): permanent for a broken
    /// sample table, transient for everything else.
    pub fn class(&self) -> ErrorClass {
        match self {
            ValidationError::SampleTable { .. } => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        }
    }
}

impl From<io::Error> for ValidationError {
    fn from(e: io::Error) -> Self {
        ValidationError::Io(e.to_string())
    }
}

/// With the class of [`ValidationError::class`].
impl From<ValidationError> for JobError {
    fn from(e: ValidationError) -> Self {
        JobError::new(e.class(), e.code(), e.to_string())
    }
}

fn markup_message(xml: &bool, title: &Option<String>, snippet: &str, instead_of: &str) -> String {
    let kind = if *xml { "XML document" } else { "HTML page" };
    match title {
        Some(t) => format!("{kind} served as {instead_of} (title: {t})"),
        None => format!("{kind} served as {instead_of} (starts with: {snippet})"),
    }
}

fn looks_like_suffix(looks_like: &Option<&'static str>) -> String {
    looks_like
        .map(|l| format!(" (looks like {l})"))
        .unwrap_or_default()
}

fn missing_message(kind: &str) -> String {
    match kind {
        "moov" => "no moov box (the index of the video): a download cut short or not an MP4".into(),
        "mdat" => "no mdat box: the file holds no media data".into(),
        other => format!("no {other} box"),
    }
}

fn track_list(handlers: &[String]) -> String {
    if handlers.is_empty() {
        "none".into()
    } else {
        handlers.join(", ")
    }
}

/// `2.9 MB`, `12.0 KB`, `512 bytes` (decimal units).
fn human_size(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} bytes"),
        1_000..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Bytes as text: printable ASCII as is, the others as `\xNN`.
fn printable(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// The file length; leaves the reader at the start.
fn file_len<R: Seek>(r: &mut R) -> Result<u64, ValidationError> {
    let len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Up to `n` bytes from the start of the file.
fn read_head<R: Read + Seek>(r: &mut R, n: u64) -> Result<Vec<u8>, ValidationError> {
    r.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    r.by_ref().take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// How many bytes [`sniff_text`] looks at first.
const SNIFF_LEN: u64 = 512;
/// How far a `<title>` or a JSON snippet is looked for.
const TEXT_LEN: u64 = 4096;

/// Rejects an HTML/XML page or a JSON document (after a BOM and whitespace). `head` is the
/// first [`SNIFF_LEN`] bytes; more is read only when text was found.
fn sniff_text<R: Read + Seek>(
    r: &mut R,
    head: &[u8],
    instead_of: &'static str,
) -> Result<(), ValidationError> {
    let text = skip_bom_and_space(head);
    let Some(&first) = text.first() else {
        return Ok(());
    };
    let second = text.get(1).copied().unwrap_or(b' ');
    if first == b'<' && (second.is_ascii_alphabetic() || second == b'!' || second == b'?') {
        let page = read_head(r, TEXT_LEN)?;
        let page = skip_bom_and_space(&page);
        let lower = page.to_ascii_lowercase();
        let xml = lower.starts_with(b"<?xml") && find(&lower, b"<html").is_none();
        return Err(ValidationError::Html {
            xml,
            title: title(page, &lower),
            snippet: snippet(page, 60),
            instead_of,
        });
    }
    let json_next: &[u8] = match first {
        b'{' => b"\"}",
        b'[' => b"{[\"]-0123456789tfn",
        _ => return Ok(()),
    };
    let next = skip_bom_and_space(&text[1..]).first().copied();
    if next.is_none_or(|c| json_next.contains(&c)) {
        let doc = read_head(r, TEXT_LEN)?;
        return Err(ValidationError::Json {
            snippet: snippet(skip_bom_and_space(&doc), 120),
            instead_of,
        });
    }
    Ok(())
}

fn skip_bom_and_space(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `<title>` text of a page; `lower` is `page` in ASCII lower case.
fn title(page: &[u8], lower: &[u8]) -> Option<String> {
    let open = find(lower, b"<title")?;
    let start = open + lower[open..].iter().position(|&c| c == b'>')? + 1;
    let end = find(&lower[start..], b"</title").map_or(page.len(), |e| start + e);
    let t = collapse(&String::from_utf8_lossy(&page[start..end]), 120);
    (!t.is_empty()).then_some(t)
}

/// The first `max` characters of `b`, whitespace collapsed, `…` when cut.
fn snippet(b: &[u8], max: usize) -> String {
    collapse(&String::from_utf8_lossy(b), max)
}

/// Downloaded text on one line, safe to print ([`crate::redact::excerpt`]).
fn collapse(s: &str, max: usize) -> String {
    crate::redact::excerpt(s, max)
}

/// What a file that is not the expected format looks like, from its first bytes.
fn looks_like(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    Some(if head.iter().all(|&b| b == 0) {
        "nothing but zeros"
    } else if starts(b"\xff\xd8\xff") {
        "a JPEG image"
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        "a PNG image"
    } else if starts(b"GIF8") {
        "a GIF image"
    } else if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        "a WebP image"
    } else if starts(b"RIFF") {
        "a RIFF file (AVI or WAV)"
    } else if starts(b"\x1a\x45\xdf\xa3") {
        "a Matroska/WebM video"
    } else if starts(b"FLV\x01") {
        "an FLV video"
    } else if starts(b"ID3") || (head.len() > 1 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) {
        "an MP3 file"
    } else if starts(b"\x1f\x8b") {
        "gzip data"
    } else if starts(b"PK\x03\x04") {
        "a zip archive"
    } else if starts(b"%PDF") {
        "a PDF document"
    } else if head.get(4..8) == Some(b"ftyp") {
        "an ISO-BMFF file"
    } else {
        return None;
    })
}

/// The printable first bytes of a file for error messages.
fn found(head: &[u8]) -> String {
    printable(&head[..head.len().min(24)])
}

/// Validates a video, image or MP3 soundtrack (chosen by the magic bytes) and describes it for storage:
/// content type, extension and the [`VideoInfo`] or [`ImageInfo`] as JSON.
///
/// Videos are `video/mp4` (`mp4`), or `video/quicktime` (`mov`) for brand `qt  `; a file
/// with audio tracks only is `audio/mp4` (`m4a`).
pub fn validate_media<R: Read + Seek>(r: &mut R) -> Result<MediaInfo, ValidationError> {
    let head = read_head(r, 32)?;
    if image::detect(&head).is_some() {
        return Ok(image_media_info(&validate_image(r)?));
    }
    if audio::detect(&head) {
        let info = validate_mp3(r)?;
        return Ok(MediaInfo {
            mime_type: "audio/mpeg".into(),
            extension: "mp3".into(),
            metadata: serde_json::to_value(&info).unwrap_or_default(),
        });
    }
    let info = validate_mp4(r)?;
    let (mime, ext) = if !info.has_video {
        ("audio/mp4", "m4a")
    } else if info.brand == "qt  " {
        ("video/quicktime", "mov")
    } else {
        ("video/mp4", "mp4")
    };
    Ok(MediaInfo {
        mime_type: mime.into(),
        extension: ext.into(),
        metadata: serde_json::to_value(&info).unwrap_or_default(),
    })
}

/// What the storage stage records of a validated image: its content type, extension and the
/// [`ImageInfo`] as JSON.
pub(crate) fn image_media_info(info: &ImageInfo) -> MediaInfo {
    MediaInfo {
        mime_type: info.format.mime_type().into(),
        extension: info.format.extension().into(),
        metadata: serde_json::to_value(info).unwrap_or_default(),
    }
}

/// [`validate_media`] on a file; `expected_size`, when given, must be its size on disk.
pub fn validate_file(
    path: &Path,
    expected_size: Option<u64>,
) -> Result<MediaInfo, ValidationError> {
    let mut file =
        File::open(path).map_err(|e| ValidationError::Io(format!("{}: {e}", path.display())))?;
    if let Some(expected) = expected_size {
        let actual = file.metadata()?.len();
        if actual != expected {
            return Err(ValidationError::SizeMismatch { expected, actual });
        }
    }
    validate_media(&mut file)
}

/// The pipeline's validation stage: [`validate_file`] on the downloaded file. A failure is a
/// [`JobError`] with the code of [`ValidationError::code`] and the class of
/// [`ValidationError::class`] (see the module docs for why).
#[derive(Clone, Copy, Debug, Default)]
pub struct FileValidator;

impl Validator for FileValidator {
    fn validate(&self, file: &DownloadedFile) -> Result<MediaInfo, JobError> {
        let info = validate_file(&file.path, Some(file.size))?;
        tracing::debug!(mime = %info.mime_type, metadata = %info.metadata, "validated");
        Ok(info)
    }
}
