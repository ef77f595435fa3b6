//! Object keys: the key of a video from the template, the rules every key handed to a backend
//! follows, and the checks of templates, keys, prefixes and ranges.

use super::StorageError;
use crate::error::JobError;

pub use crate::config::storage::DEFAULT_KEY_TEMPLATE;

/// The object key for a video: the template with `{douyin_id}`, `{video_id}` and `{ext}`
/// filled in, made safe: only letters, digits, `.`, `_`, `-` and `/`; no empty or `..`
/// segments; no leading `/`.
pub fn object_key(
    template: &str,
    douyin_id: &str,
    video_id: &str,
    ext: &str,
) -> Result<String, JobError> {
    let raw = template
        .replace("{douyin_id}", douyin_id)
        .replace("{video_id}", video_id)
        .replace("{ext}", ext);
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let segments: Vec<&str> = cleaned.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() || segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(JobError::permanent(
            "bad-object-key",
            format!("object key {raw:?} from template {template:?} is not usable"),
        ));
    }
    Ok(segments.join("/"))
}

/// Checks an object key template (`OBJECT_KEY_TEMPLATE`): it names the video by
/// `{douyin_id}` or `{video_id}` (else every video would land on one key) and gives a usable
/// key.
pub fn check_key_template(template: &str) -> Result<(), String> {
    let names_video = template.contains("{douyin_id}") || template.contains("{video_id}");
    if !names_video || object_key(template, "7400000000000000001", "v", "mp4").is_err() {
        return Err(
            "expected a key with {douyin_id} or {video_id}, e.g. {douyin_id}/{douyin_id}.{ext}"
                .into(),
        );
    }
    Ok(())
}

/// `key` with `suffix` inserted before the extension of its last segment (`a/b.jpg`, `_2` →
/// `a/b_2.jpg`), or appended when it has none. The suffix goes through the same cleaning as
/// keys.
pub fn with_suffix(key: &str, suffix: &str) -> Result<String, JobError> {
    let clean: String = suffix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (dir, name) = key.rsplit_once('/').map_or(("", key), |(d, n)| (d, n));
    let name = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}{clean}.{ext}"),
        _ => format!("{name}{clean}"),
    };
    let joined = if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    };
    if joined.len() > MAX_KEY_BYTES {
        return Err(JobError::permanent(
            "bad-object-key",
            format!("object key {joined:?} is longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(joined)
}

/// Longest key a backend accepts, in bytes (S3's limit; Supabase Storage's is the same).
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a key handed to a backend by someone other than the storage stage (`gc`, the download
/// API). Keys the stage writes come from [`object_key`] and always pass. The rules keep every
/// key inside its bucket or folder without being stricter than that, so objects an older worker
/// stored under other characters can still be listed, opened and deleted: not empty, at most
/// [`MAX_KEY_BYTES`], no leading or trailing `/`, no empty, `.` or `..` segment, no `\` and no
/// control characters.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = |why: &str| {
        Err(StorageError::permanent(
            "bad-object-key",
            format!("object key {key:?} is not usable: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("too long");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control character or backslash");
    }
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, `.` or `..` segment");
    }
    Ok(())
}

/// Refuses a part that ends before it starts (`open_range` takes `start..=end`).
pub(crate) fn check_range(key: &str, start: u64, end: u64) -> Result<(), StorageError> {
    if start > end {
        return Err(StorageError::permanent(
            "bad-range",
            format!("bytes {start}-{end} of {key}"),
        ));
    }
    Ok(())
}

/// Checks a listing prefix: `""` (everything), or a key by [`check_key`]'s rules that may end
/// with `/` (the folder itself).
pub fn check_prefix(prefix: &str) -> Result<(), StorageError> {
    match prefix.strip_suffix('/') {
        None if prefix.is_empty() => Ok(()),
        Some(folder) => check_key(folder),
        None => check_key(prefix),
    }
}
