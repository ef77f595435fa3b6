//! The per-process hub of video changes that the download API's events streams wait on.
//!
//! A stream registers the video it follows (`VideoChanges::watch`) and waits for a
//! wake-up; on one it re-reads the video and sends an event only when something it shows
//! changed. One feed per process, whatever the number of streams, wakes the watchers
//! (`QueueAdmin::feed_video_changes`, started by the first watch):
//! - PostgreSQL: one `LISTEN` on [`NOTIFY_CHANNEL`]; migration 0007's triggers send the video's
//!   id on every change of its status or progress, and on every job queued or ending for it,
//!   whichever process or tool wrote it;
//! - SQLite: the file's change counter (`PRAGMA data_version`) read every 200 ms: any commit
//!   wakes every watcher;
//! - Supabase REST (and PostgreSQL behind a transaction-mode pooler, where `LISTEN` cannot
//!   work): one call per interval reads the marks of every watched video
//!   ([`VideoMark`], `get_download_video_marks`) and wakes those whose mark changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::QueueAdmin;

/// The PostgreSQL channel migration 0007's triggers notify, with a video id as payload.
pub const NOTIFY_CHANNEL: &str = "douyin_worker_videos";

/// What a poll compares to tell that a video changed.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct VideoMark {
    /// `videos.id`.
    pub id: Uuid,
    /// `videos.status`.
    pub status: String,
    /// `videos.download_progress`.
    pub download_progress: Option<i16>,
    /// The status of the video's active job (`pending`, `running`), if it has one.
    pub active_job_status: Option<String>,
}

/// The hub: watched videos and their wake-ups.
#[derive(Debug)]
pub struct VideoChanges {
    watched: Mutex<HashMap<Uuid, Watched>>,
    poll_interval: Duration,
    started: OnceLock<()>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct Watched {
    watchers: usize,
    wake: watch::Sender<u64>,
}

impl VideoChanges {
    /// A hub whose polling feeds (REST, a transaction-mode pooler) read every `poll_interval`.
    pub fn new(poll_interval: Duration) -> Self {
        Self {
            watched: Mutex::default(),
            poll_interval,
            started: OnceLock::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Follows video `id` until the watcher is dropped; starts the process's feed from `queue`
    /// on the first call.
    pub(crate) fn watch(self: &Arc<Self>, id: Uuid, queue: &Arc<dyn QueueAdmin>) -> VideoWatcher {
        self.started.get_or_init(|| {
            let (hub, queue) = (self.clone(), queue.clone());
            tokio::spawn(async move {
                let stop = hub.stop.clone();
                if let Err(e) = queue.feed_video_changes(hub.clone(), stop.clone()).await {
                    tracing::warn!(error = %e, "events streams: no change feed; polling the watched videos");
                    poll(queue.as_ref(), &hub, &stop).await;
                }
            });
        });
        self.register(id)
    }

    fn register(self: &Arc<Self>, id: Uuid) -> VideoWatcher {
        let mut watched = self.lock();
        let w = watched.entry(id).or_insert_with(|| Watched {
            watchers: 0,
            wake: watch::channel(0).0,
        });
        w.watchers += 1;
        VideoWatcher {
            hub: self.clone(),
            id,
            rx: w.wake.subscribe(),
        }
    }

    /// The video may have changed: wake its watchers.
    pub fn changed(&self, id: Uuid) {
        if let Some(w) = self.lock().get(&id) {
            w.wake.send_modify(|n| *n += 1);
        }
    }

    /// Anything may have changed (a feed that cannot tell which video, or that lost
    /// notifications): wake every watcher.
    pub(crate) fn changed_all(&self) {
        for w in self.lock().values() {
            w.wake.send_modify(|n| *n += 1);
        }
    }

    /// The videos watched now.
    pub fn watched(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    /// How often polling feeds read.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Stops the feed.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One stream's registration; dropping it stops watching.
#[derive(Debug)]
pub(crate) struct VideoWatcher {
    hub: Arc<VideoChanges>,
    id: Uuid,
    rx: watch::Receiver<u64>,
}

impl VideoWatcher {
    /// Returns at the next wake-up of this video after the last one seen (at once if one
    /// came meanwhile).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for VideoWatcher {
    fn drop(&mut self) {
        let mut watched = self.hub.lock();
        if let Some(w) = watched.get_mut(&self.id) {
            w.watchers -= 1;
            if w.watchers == 0 {
                watched.remove(&self.id);
            }
        }
    }
}

/// The polling feed: every interval, one read of the marks of every watched video; wakes the
/// watchers of those whose mark changed (or appeared), until `stop`.
pub async fn poll<Q: QueueAdmin + ?Sized>(queue: &Q, hub: &VideoChanges, stop: &CancellationToken) {
    let mut last: HashMap<Uuid, VideoMark> = HashMap::new();
    let mut tick = tokio::time::interval(hub.poll_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ids = hub.watched();
        last.retain(|id, _| ids.contains(id));
        if ids.is_empty() {
            continue;
        }
        match queue.video_marks(&ids).await {
            Ok(marks) => {
                for mark in marks {
                    if last.get(&mark.id) != Some(&mark) {
                        hub.changed(mark.id);
                        last.insert(mark.id, mark);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "events streams: polling the watched videos failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_up_reaches_the_watchers_of_that_video_only_and_is_never_lost() {
        let hub = Arc::new(VideoChanges::new(Duration::from_secs(1)));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut wa = hub.register(a);
        let mut wb = hub.register(b);
        // Sent before the wait: kept.
        hub.changed(a);
        tokio::time::timeout(Duration::from_millis(100), wa.changed())
            .await
            .expect("a's watcher is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wb.changed())
                .await
                .is_err(),
            "b's watcher sleeps on"
        );
        hub.changed_all();
        tokio::time::timeout(Duration::from_millis(100), wb.changed())
            .await
            .expect("everyone is woken");
        assert_eq!(hub.watched().len(), 2);
        drop(wa);
        drop(wb);
        assert!(hub.watched().is_empty(), "a dropped watcher stops watching");
    }
}
