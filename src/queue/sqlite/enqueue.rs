//! Enqueue in the SQLite queue: one transaction that finds or creates the video and adds its
//! pending job, with the semantics of `enqueue_download_job` in `migrations/0002_queue.sql`;
//! and the steps a retry shares with it.

use super::*;

impl SqliteQueue {
    pub(super) async fn enqueue_tx(
        &self,
        req: &EnqueueRequest,
        url: Option<&str>,
        douyin_id: Option<&str>,
    ) -> Result<EnqueueResult, sqlx::Error> {
        // By id; else by Douyin id, then by link; a merged row stands for its survivor.
        let douyin_id = match req.video_id {
            Some(_) => None,
            None => douyin_id
                .map(str::to_owned)
                .or_else(|| url.and_then(douyin_id_from_url)),
        };
        let url = if req.video_id.is_some() { None } else { url };

        // The write transaction serialises enqueues of the same video, as the advisory lock
        // does in PostgreSQL.
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let found: Option<EnqueueVideo> =
            sqlx::query_as(include_str!("sql/enqueue_find_video.sql"))
                .bind(req.video_id.map(|id| id.hyphenated()))
                .bind(douyin_id.as_deref())
                .bind(url)
                .fetch_optional(&mut *w.tx)
                .await?;

        let Some((video_id_s, status, object_key, marked, default_priority, active, without_id)) =
            found
        else {
            if let Some(video_id) = req.video_id {
                w.commit().await?;
                return Ok(EnqueueResult {
                    job_id: None,
                    video_id: Some(video_id),
                    outcome: EnqueueOutcome::NotFound,
                });
            }
            // A new video, `queued` already: its job is the only thing left to add.
            let video_id = Uuid::new_v4();
            let video_url = match (url, &douyin_id) {
                (Some(url), _) => url.to_owned(),
                (None, Some(id)) => format!("https://www.douyin.com/video/{id}"),
                (None, None) => unreachable!("enqueue checks that a url or an id is given"),
            };
            sqlx::query(
                "insert into videos (id, douyin_id, video_url, status, created_at, updated_at)
                 values (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .bind(video_id.hyphenated())
            .bind(douyin_id.as_deref())
            .bind(&video_url)
            .bind(&now_s)
            .execute(&mut *w.tx)
            .await?;
            let job_id = insert_job(&mut w, req, video_id, 0, &now_s).await?;
            w.commit().await?;
            return Ok(EnqueueResult {
                job_id: Some(job_id),
                video_id: Some(video_id),
                outcome: EnqueueOutcome::Queued,
            });
        };

        let video_id = parse_uuid(&video_id_s)?;
        if let (true, Some(douyin_id)) = (without_id, &douyin_id) {
            // Found by its link (a short link queued before it could be resolved): the row
            // learns its Douyin id.
            sqlx::query("update videos set douyin_id = ?1, updated_at = ?2 where id = ?3")
                .bind(douyin_id)
                .bind(&now_s)
                .bind(&video_id_s)
                .execute(&mut *w.tx)
                .await?;
        }
        let (job_id, outcome) = if marked {
            (None, EnqueueOutcome::MarkedForDeletion)
        } else if let Some(active) = active {
            (Some(parse_uuid(&active)?), EnqueueOutcome::Duplicate)
        } else if !req.force
            && matches!(status.as_str(), "ready" | "uploaded" | "processed")
            && object_key.is_some()
        {
            (None, EnqueueOutcome::Ready)
        } else {
            let job_id = requeue_video(&mut w, req, video_id, default_priority, &now_s).await?;
            (Some(job_id), EnqueueOutcome::Queued)
        };
        w.commit().await?;
        Ok(EnqueueResult {
            job_id,
            video_id: Some(video_id),
            outcome,
        })
    }
}

/// What enqueue reads of the video: id, status, object_key, marked_for_deletion, the default
/// priority from its ranking, its active job, and whether it was found by its link without
/// a Douyin id.
type EnqueueVideo = (
    String,
    String,
    Option<String>,
    bool,
    i64,
    Option<String>,
    bool,
);

/// Inserts the pending job of an enqueue; `default_priority` is the video's ranking.
pub(super) async fn insert_job(
    w: &mut WriteTx<'_>,
    req: &EnqueueRequest,
    video_id: Uuid,
    default_priority: i64,
    now_s: &str,
) -> Result<Uuid, sqlx::Error> {
    let job_id = Uuid::new_v4();
    let priority = req
        .priority
        .unwrap_or_else(|| default_priority.clamp(0, i64::from(i32::MAX)) as i32);
    sqlx::query(include_str!("sql/enqueue_insert_download_jobs.sql"))
        .bind(job_id.hyphenated())
        .bind(video_id.hyphenated())
        .bind(req.payload.as_ref().map(Value::to_string))
        .bind(priority)
        .bind(req.max_attempts.unwrap_or(5))
        .bind(now_s)
        .execute(&mut *w.tx)
        .await?;
    Ok(job_id)
}

/// Queues a new job for an existing video and shows the video as `queued` (unless a worker
/// is on it, or it is stored: a forced download leaves it `ready`), as
/// `enqueue_download_job` does.
pub(super) async fn requeue_video(
    w: &mut WriteTx<'_>,
    req: &EnqueueRequest,
    video_id: Uuid,
    default_priority: i64,
    now_s: &str,
) -> Result<Uuid, sqlx::Error> {
    let job_id = insert_job(w, req, video_id, default_priority, now_s).await?;
    sqlx::query(
        "update videos
            set status = 'queued', last_error = null, next_attempt_at = null, updated_at = ?1
          where id = ?2 and status not in ('downloading', 'running')
            and not (status in ('ready', 'uploaded', 'processed')
                     and coalesce(object_key, '') <> '')",
    )
    .bind(now_s)
    .bind(video_id.hyphenated())
    .execute(&mut *w.tx)
    .await?;
    Ok(job_id)
}
