//! What the download API tells the public about a failed download.
//!
//! `videos.last_error` is written for operators: it can hold file paths, OS errors, excerpts
//! of Douyin's or a store's answers. The API answers a short text chosen by the error's class
//! and code instead; the full text stays in the database and the logs.

/// The public message for a failure of `class` (`transient`, `permanent`, `drift`) and
/// `code` (a `download_jobs.last_error_code`), either possibly unknown.
pub(crate) fn failure_message(class: Option<&str>, code: Option<&str>) -> &'static str {
    if let Some(text) = code.and_then(by_code) {
        return text;
    }
    match class {
        Some("permanent") => "the video cannot be downloaded",
        Some("drift") => "Douyin answered in a way this service does not understand yet",
        Some("transient") => "the download failed for a passing reason; a retry may work",
        _ => "the download failed",
    }
}

/// The message of a known code.
fn by_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "video-unavailable" => "the video was deleted or made private on Douyin",
        "region-blocked" => "the video is not available in this service's region",
        "unsupported-link" | "short-link" => "the link is not a Douyin video link",
        "image-post" | "nothing-downloadable" => "the post has no video to download",
        "too-large" => "the video is larger than this service accepts",
        "marked-for-deletion" => "the video is marked for deletion",
        "extract-drift" => "Douyin answered in a way this service does not understand yet",
        "extract-failed" => "the video's address could not be read from Douyin; a retry may work",
        "cdn-forbidden" | "download-failed" | "download-timeout" | "size-mismatch" => {
            "the file could not be downloaded from Douyin; a retry may work"
        }
        "empty-file" | "html-as-video" | "json-as-video" | "not-image" | "unknown-brand"
        | "missing-moov" | "missing-mdat" | "missing-box" | "truncated" | "bad-box-size"
        | "bad-box-type" | "zero-filled" | "trailing-data" | "moov-too-large" | "malformed-box"
        | "no-tracks" | "zero-duration" | "bad-image" | "bad-audio" => {
            "Douyin sent a file that is not a valid video"
        }
        c if c.starts_with("storage-")
            || c.starts_with("upload-")
            || matches!(
                c,
                "no-such-bucket" | "entity-too-large" | "invalid-mime-type" | "key-exists"
            ) =>
        {
            "the file could not be stored; a retry may work"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_their_own_message() {
        assert_eq!(
            failure_message(Some("permanent"), Some("video-unavailable")),
            "the video was deleted or made private on Douyin"
        );
        assert_eq!(
            failure_message(Some("transient"), Some("storage-io")),
            "the file could not be stored; a retry may work"
        );
        assert_eq!(
            failure_message(Some("permanent"), Some("html-as-video")),
            "Douyin sent a file that is not a valid video"
        );
    }

    #[test]
    fn unknown_codes_fall_back_to_the_class_and_then_to_a_generic_text() {
        assert_eq!(
            failure_message(Some("permanent"), Some("some-new-code")),
            "the video cannot be downloaded"
        );
        assert_eq!(
            failure_message(Some("transient"), None),
            "the download failed for a passing reason; a retry may work"
        );
        assert_eq!(failure_message(None, None), "the download failed");
        assert_eq!(
            failure_message(Some("weird"), Some("x")),
            "the download failed"
        );
    }
}
