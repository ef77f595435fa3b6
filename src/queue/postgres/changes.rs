//! The events streams' change feed on PostgreSQL: one `LISTEN` per process on the channel
//! migration 0007's triggers notify (a video id per notification), or, behind a
//! transaction-mode pooler where `LISTEN` cannot work, one read of the watched videos' marks
//! per interval.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgListener;
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

/// Wakes the watchers of each notified video until `stop`; a lost connection wakes them all
/// (notifications sent meanwhile are lost) and is re-established.
pub(super) async fn feed(
    q: &PgQueue,
    hub: Arc<VideoChanges>,
    stop: CancellationToken,
) -> Result<(), QueueError> {
    if !q.db.pooler().keeps_sessions() {
        poll(q, &hub, &stop).await;
        return Ok(());
    }
    let mut listener = PgListener::connect_with(q.db.pool()).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let mut failures: u32 = 0;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            n = listener.try_recv() => n,
        };
        match next {
            Ok(Some(n)) => {
                failures = 0;
                match n.payload().parse::<Uuid>() {
                    Ok(id) => hub.changed(id),
                    Err(_) => hub.changed_all(),
                }
            }
            Ok(None) => {
                tracing::warn!("events streams: LISTEN connection lost; reconnecting");
                hub.changed_all();
            }
            Err(e) => {
                failures += 1;
                let wait =
                    crate::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(32))
                        .after(failures);
                tracing::warn!(error = %e, retry_in = ?wait, "events streams: LISTEN failed");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                hub.changed_all();
            }
        }
    }
}
