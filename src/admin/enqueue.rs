//! `enqueue`: what each input names, queued once.
//!
//! An input is a `videos.id` (a UUID), an aweme id, or a Douyin link, alone or inside pasted
//! text (share text, a link followed by words, a comma or a zero-width space): the link the
//! parser finds is what is recorded, never the text around it. A short link is resolved with
//! one request, as `extract` does, so that it finds the row of its video whichever link queued
//! it first; when Douyin cannot be reached it is queued as given, and the worker merges the
//! row into the video's row once extraction learns the id.

use serde_json::{Value, json};

use crate::extract::link::{self, Link};
use crate::extract::{DouyinExtractor, ExtractError};
use crate::queue::{EnqueueRequest, QueueAdmin, QueueError};

/// What an input asks to queue, or why it is refused (`unsupported link: ...`).
///
/// `base` carries the options every input shares (priority, force, attempts). Short links are
/// resolved by `douyin`; one that cannot be resolved now is queued as given, and `note` then
/// says why.
pub(crate) async fn request_for(
    input: &str,
    base: &EnqueueRequest,
    douyin: &DouyinExtractor,
) -> Result<(EnqueueRequest, Option<String>), String> {
    let mut req = base.clone();
    if let Ok(video_id) = uuid::Uuid::parse_str(input.trim()) {
        req.video_id = Some(video_id);
        return Ok((req, None));
    }
    let (found, url) = link::locate(input).map_err(|e| e.to_string())?;
    let mut note = None;
    match found {
        Link::Id { aweme_id, .. } => {
            let url = url.map_or_else(
                || format!("https://www.douyin.com/video/{aweme_id}"),
                String::from,
            );
            req.url = Some(url);
            req.douyin_id = Some(aweme_id);
        }
        Link::Short { url } => {
            match douyin.resolve_short_link(&url).await {
                Ok(aweme_id) => req.douyin_id = Some(aweme_id),
                Err(e @ ExtractError::Unsupported(_)) => return Err(e.to_string()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resolve a short link now; queued as given");
                    note = Some(format!(
                        "{e}; queued as given, merged with its video's row once a worker learns its id"
                    ));
                }
            }
            req.url = Some(url.to_string());
        }
    }
    Ok((req, note))
}

/// Queues every input; one JSON row per input (`input`, `outcome`, `job_id`, `video_id`, and
/// `error` for a refused input or `note` for a short link queued unresolved), and how many
/// were refused.
pub async fn run(
    queue: &dyn QueueAdmin,
    inputs: &[String],
    base: &EnqueueRequest,
    douyin: &DouyinExtractor,
) -> Result<(Vec<Value>, usize), QueueError> {
    let mut rows = Vec::with_capacity(inputs.len());
    let mut refused = 0;
    for input in inputs {
        let (req, note) = match request_for(input, base, douyin).await {
            Ok(found) => found,
            Err(error) => {
                refused += 1;
                rows.push(json!({"input": input, "outcome": "refused", "error": error}));
                continue;
            }
        };
        let r = queue.enqueue(&req).await?;
        let mut row = json!({
            "input": input,
            "outcome": r.outcome,
            "job_id": r.job_id,
            "video_id": r.video_id,
        });
        if let Some(note) = note {
            row["note"] = note.into();
        }
        rows.push(row);
    }
    Ok((rows, refused))
}
