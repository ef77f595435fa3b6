//! The events streams' change feed on PostgreSQL: one `LISTEN` per process on the channel
//! migration 0007's triggers notify (a video id per notification), or, behind a
//! transaction-mode pooler where `LISTEN` cannot work, one read of the watched videos' marks
//! per interval.

use std::sync::Arc;

use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::PgQueue;
use crate::queue::QueueError;
use crate::queue::changes::{NOTIFY_CHANNEL, VideoChanges, VideoMark, poll};

/// The marks of `ids` in one query.
pub(super) async fn marks(q: &PgQueue, ids: &[Uuid]) -> Result<Vec<VideoMark>, QueueError> {
    let rows =
        q.db.rows(sqlx::query("select * from public.get_download_video_marks($1)").bind(ids))
            .await?;
    rows.iter()
        .map(|r| {
            Ok(VideoMark {
                id: r.try_get("id")?,
                status: r.try_get("status")?,
                download_progress: r.try_get("download_progress")?,
                active_job_status: r.try_get("active_job_status")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Wakes the watchers of each notified video until `stop`; notifications perhaps lost (a
/// dropped connection) wake them all.
pub(super) async fn feed(
    q: &PgQueue,
    hub: Arc<VideoChanges>,
    stop: CancellationToken,
) -> Result<(), QueueError> {
    if !q.db.pooler().keeps_sessions() {
        poll(q, &hub, &stop).await;
        return Ok(());
    }
    let listener = super::listen::connect(q.db.pool(), NOTIFY_CHANNEL).await?;
    super::listen::run(listener, stop, |payload| {
        match payload.and_then(|p| p.parse::<Uuid>().ok()) {
            Some(id) => hub.changed(id),
            None => hub.changed_all(),
        }
    })
    .await;
    Ok(())
}
