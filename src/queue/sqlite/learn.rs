//! Recording the Douyin id a worker's extraction learnt, in the SQLite queue: one write
//! transaction with the semantics of `learn_douyin_id` in
//! `migrations/0006_one_row_per_video.sql` (the write lock serialises it with enqueues, as
//! the advisory lock does in PostgreSQL).

use super::*;

/// The other row that has a Douyin id: id, status, object key, marked for deletion.
type Survivor = (String, String, Option<String>, bool);

impl SqliteQueue {
    pub(super) async fn learn_tx(
        &self,
        worker_id: &str,
        lease: &Lease,
        douyin_id: &str,
    ) -> Result<Learned, sqlx::Error> {
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let job: Option<(String, i32)> = sqlx::query_as(
            "select video_id, attempts from download_jobs
              where id = ?1 and lease_id = ?2 and worker_id = ?3 and status = 'running'",
        )
        .bind(lease.job_id.hyphenated())
        .bind(lease.lease_id.hyphenated())
        .bind(worker_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((video_id, attempts)) = job else {
            return Ok(Learned::LeaseLost);
        };
        let known: Option<String> =
            sqlx::query_scalar("select douyin_id from videos where id = ?1")
                .bind(&video_id)
                .fetch_one(&mut *w.tx)
                .await?;
        if known.is_some_and(|id| !id.is_empty()) {
            return Ok(Learned::Kept);
        }
        let survivor: Option<Survivor> = sqlx::query_as(
            "select id, status, object_key, coalesce(marked_for_deletion, 0) <> 0 from videos
              where douyin_id = ?1 and id <> ?2 and merged_into is null
              order by created_at, rowid limit 1",
        )
        .bind(douyin_id)
        .bind(&video_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some((into, status, object_key, marked)) = survivor else {
            sqlx::query("update videos set douyin_id = ?1, updated_at = ?2 where id = ?3")
                .bind(douyin_id)
                .bind(&now_s)
                .bind(&video_id)
                .execute(&mut *w.tx)
                .await?;
            w.commit().await?;
            return Ok(Learned::Kept);
        };

        sqlx::query(
            "update videos
                set merged_into = ?1, douyin_id = ?2, status = 'merged', in_progress_by = null,
                    in_progress_at = null, download_progress = null, next_attempt_at = null,
                    last_error = null, updated_at = ?3
              where id = ?4",
        )
        .bind(&into)
        .bind(douyin_id)
        .bind(&now_s)
        .bind(&video_id)
        .execute(&mut *w.tx)
        .await?;
        let active: Option<String> = sqlx::query_scalar(
            "select id from download_jobs
              where video_id = ?1 and status in ('pending', 'running') limit 1",
        )
        .bind(&into)
        .fetch_optional(&mut *w.tx)
        .await?;
        let stored = matches!(status.as_str(), "ready" | "uploaded" | "processed")
            && object_key.is_some_and(|k| !k.is_empty());
        let reason = if marked {
            Some("it is marked for deletion".to_string())
        } else if let Some(active) = active {
            Some(format!("its job {active} downloads it"))
        } else if stored {
            Some("it is already stored".to_string())
        } else {
            None
        };
        let into_id = parse_uuid(&into)?;
        let Some(reason) = reason else {
            sqlx::query("update download_jobs set video_id = ?1, updated_at = ?2 where id = ?3")
                .bind(&into)
                .bind(&now_s)
                .bind(lease.job_id.hyphenated())
                .execute(&mut *w.tx)
                .await?;
            sqlx::query(
                "update videos
                    set status = 'downloading', download_started_at = ?1, in_progress_by = ?2,
                        in_progress_at = ?1, attempts = ?3, last_attempt_at = ?1,
                        download_progress = 0, next_attempt_at = null, updated_at = ?1
                  where id = ?4",
            )
            .bind(&now_s)
            .bind(worker_id)
            .bind(attempts)
            .bind(&into)
            .execute(&mut *w.tx)
            .await?;
            w.commit().await?;
            return Ok(Learned::Moved(into_id));
        };
        sqlx::query(
            "update download_jobs
                set status = 'completed', finished_at = ?1, lease_id = null,
                    lease_expires_at = null, last_error = ?2, last_error_code = 'merged',
                    last_error_class = null, updated_at = ?1
              where id = ?3",
        )
        .bind(&now_s)
        .bind(format!(
            "merged into video {into} (Douyin id {douyin_id}): {reason}"
        ))
        .bind(lease.job_id.hyphenated())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(Learned::Merged(into_id))
    }
}
