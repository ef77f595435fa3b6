//! The life-cycle operations of the SQLite queue, each one transaction, with the semantics
//! of the SQL functions in `migrations/0002_queue.sql`.

use super::*;

impl SqliteQueue {
    pub(super) async fn claim_tx(
        &self,
        worker_id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        // An idle poll only reads: no write lock unless a job is due (WAL readers never wait).
        let due: bool = sqlx::query_scalar(
            "select exists (select 1 from download_jobs
                             where status = 'pending' and scheduled_at <= ?1)",
        )
        .bind(format_timestamp(now()))
        .fetch_one(&self.pool)
        .await?;
        if !due {
            return Ok(Vec::new());
        }

        let mut w = self.write().await?;
        let now = now();
        let expires = now + chrono::Duration::seconds(lease_secs(lease));
        let (now_s, expires_s) = (format_timestamp(now), format_timestamp(expires));
        let ids: Vec<(String,)> = sqlx::query_as(include_str!("sql/claim_due_jobs.sql"))
            .bind(&now_s)
            .bind(i64::from(limit))
            .fetch_all(&mut *w.tx)
            .await?;
        if ids.is_empty() {
            w.commit().await?;
            return Ok(Vec::new());
        }

        let picked = Value::Array(
            ids.iter()
                .map(|(id,)| json!({"id": id, "lease": Uuid::new_v4().hyphenated().to_string()}))
                .collect(),
        );
        let jobs = sqlx::query(include_str!("sql/claim_update_download_jobs.sql"))
            .bind(worker_id)
            .bind(&now_s)
            .bind(&expires_s)
            .bind(picked.to_string())
            .fetch_all(&mut *w.tx)
            .await?;

        let mut touched = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let video_id: String = job.try_get("video_id")?;
            let attempts: i32 = job.try_get("attempts")?;
            touched.push(json!({"id": video_id, "attempts": attempts}));
        }
        let videos = sqlx::query(include_str!("sql/claim_update_videos.sql"))
            .bind(&now_s)
            .bind(worker_id)
            .bind(Value::Array(touched).to_string())
            .fetch_all(&mut *w.tx)
            .await?;
        w.commit().await?;

        let mut videos_by_id = HashMap::with_capacity(videos.len());
        for row in &videos {
            let info = VideoRow {
                douyin_id: row.try_get("douyin_id")?,
                video_url: row.try_get("video_url")?,
                title: row.try_get("title")?,
                thumbnail_url: row.try_get("thumbnail_url")?,
                video_url_direct: row.try_get("video_url_direct")?,
                video_url_meta: json_column(row, "video_url_meta")?,
                marked_for_deletion: row.try_get("marked_for_deletion")?,
            };
            videos_by_id.insert(row.try_get::<String, _>("id")?, info);
        }
        let mut by_id = HashMap::with_capacity(jobs.len());
        for job in &jobs {
            let video_id: String = job.try_get("video_id")?;
            let claimed = ClaimedJob {
                lease: Lease {
                    job_id: uuid_column(job, "id")?,
                    lease_id: uuid_column(job, "lease_id")?,
                },
                video_id: uuid_column(job, "video_id")?,
                lease_expires_at: expires,
                attempts: job.try_get("attempts")?,
                max_attempts: job.try_get("max_attempts")?,
                priority: job.try_get::<Option<i32>, _>("priority")?.unwrap_or(0),
                payload: json_column(job, "payload")?,
                scheduled_at: job.try_get("scheduled_at")?,
                created_at: job.try_get("created_at")?,
                // No video row only when someone wrote with foreign keys off; PostgreSQL
                // cannot get there.
                video: videos_by_id.remove(&video_id).unwrap_or_default(),
            };
            by_id.insert(job.try_get::<String, _>("id")?, claimed);
        }
        // In claim order.
        Ok(ids.iter().filter_map(|(id,)| by_id.remove(id)).collect())
    }

    pub(super) async fn heartbeat_turn(
        &self,
        worker_id: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, sqlx::Error> {
        let items = Value::Array(leases.iter().map(lease_item).collect());
        // One statement: atomic without an explicit transaction.
        let _turn = self.shared.write_lock.lock().await;
        let now = now();
        let expires = now + chrono::Duration::seconds(lease_secs(lease));
        let rows: Vec<(String, String)> =
            sqlx::query_as(include_str!("sql/heartbeat_update_download_jobs.sql"))
                .bind(format_timestamp(expires))
                .bind(format_timestamp(now))
                .bind(items.to_string())
                .bind(worker_id)
                .fetch_all(&self.pool)
                .await?;
        let held: HashSet<(String, String)> = rows.into_iter().collect();
        let mut seen = HashSet::with_capacity(leases.len());
        Ok(leases
            .iter()
            .filter(|l| {
                held.contains(&(
                    l.job_id.hyphenated().to_string(),
                    l.lease_id.hyphenated().to_string(),
                )) && seen.insert(**l)
            })
            .copied()
            .collect())
    }

    pub(super) async fn complete_tx(
        &self,
        worker_id: &str,
        items: &[Completion],
    ) -> Result<Vec<(Uuid, CompleteOutcome)>, sqlx::Error> {
        let jobs = Value::Array(
            items
                .iter()
                .map(|c| {
                    let mut item = lease_item(&c.lease);
                    item["filesize"] = json!(c.stored.filesize);
                    item
                })
                .collect(),
        );
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let done: Vec<(String, String)> =
            sqlx::query_as(include_str!("sql/complete_update_download_jobs.sql"))
                .bind(&now_s)
                .bind(jobs.to_string())
                .bind(worker_id)
                .fetch_all(&mut *w.tx)
                .await?;
        let mut video_of: HashMap<Uuid, String> = HashMap::with_capacity(done.len());
        for (job_id, video_id) in done {
            video_of.insert(parse_uuid(&job_id)?, video_id);
        }

        let mut videos = Vec::with_capacity(video_of.len());
        let mut filled = HashSet::with_capacity(video_of.len());
        for c in items {
            let Some(video_id) = video_of.get(&c.lease.job_id) else {
                continue;
            };
            if !filled.insert(c.lease.job_id) {
                continue;
            }
            videos.push(json!({
                "id": video_id,
                "bucket": c.stored.bucket,
                "object_key": c.stored.object_key,
                "storage_etag": c.stored.storage_etag,
                "filesize": c.stored.filesize,
                "mime_type": c.stored.mime_type,
                "storage_provider": c.stored.storage_provider,
                "storage_metadata": json_text(Some(&c.stored.storage_metadata)),
                "douyin_id": c.video.douyin_id,
                "title": c.video.title,
                "thumbnail_url": c.video.thumbnail_url,
                "video_url_direct": c.video.video_url_direct,
                "video_url_meta": json_text(c.video.video_url_meta.as_ref()),
                "stored_thumbnail_url": c.video.stored_thumbnail_url,
            }));
        }
        if !videos.is_empty() {
            sqlx::query(include_str!("sql/complete_update_videos.sql"))
                .bind(&now_s)
                .bind(Value::Array(videos).to_string())
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(items
            .iter()
            .map(|c| {
                let outcome = if video_of.contains_key(&c.lease.job_id) {
                    CompleteOutcome::Completed
                } else {
                    CompleteOutcome::LeaseLost
                };
                (c.lease.job_id, outcome)
            })
            .collect())
    }

    pub(super) async fn fail_tx(
        &self,
        worker_id: &str,
        items: &[FailedAttempt],
    ) -> Result<Vec<(Uuid, FailOutcome)>, sqlx::Error> {
        let now = now();
        let jobs = Value::Array(
            items
                .iter()
                .map(|f| {
                    let retry = retry_seconds(f);
                    let delay = retry
                        .map(|s| {
                            Duration::try_from_secs_f64(s.max(0.0))
                                .unwrap_or(MAX_RETRY_DELAY)
                                .min(MAX_RETRY_DELAY)
                        })
                        .unwrap_or_default();
                    let due = now
                        .checked_add_signed(chrono::Duration::from_std(delay).unwrap_or_default())
                        .unwrap_or(now);
                    let mut item = lease_item(&f.lease);
                    // Final whatever the attempts: a permanent error, or no retry asked for.
                    item["final"] = json!(f.class == ErrorClass::Permanent || retry.is_none());
                    item["due"] = json!(format_timestamp(due));
                    item["error"] = json!(if f.error.is_empty() {
                        "unknown error"
                    } else {
                        f.error.as_str()
                    });
                    item["code"] = json!(f.code);
                    item["class"] = json!(f.class.as_str());
                    item
                })
                .collect(),
        );
        let mut w = self.write().await?;
        let now_s = format_timestamp(now);
        let updated = sqlx::query(include_str!("sql/fail_update_download_jobs.sql"))
            .bind(&now_s)
            .bind(jobs.to_string())
            .bind(worker_id)
            .fetch_all(&mut *w.tx)
            .await?;

        // The cached direct URL each failure asks to forget, by job id.
        let forget: HashMap<String, &str> = items
            .iter()
            .filter_map(|f| {
                let url = f.forget_direct_url.as_deref().filter(|u| !u.is_empty())?;
                Some((f.lease.job_id.hyphenated().to_string(), url))
            })
            .collect();
        let mut outcomes: HashMap<Uuid, FailOutcome> = HashMap::with_capacity(updated.len());
        let mut videos = Vec::with_capacity(updated.len());
        for row in &updated {
            let failed = row.try_get::<String, _>("status")? == "failed";
            let scheduled_at: DateTime<Utc> = row.try_get("scheduled_at")?;
            outcomes.insert(
                uuid_column(row, "id")?,
                if failed {
                    FailOutcome::Failed
                } else {
                    FailOutcome::RetryScheduled(scheduled_at)
                },
            );
            videos.push(json!({
                "id": row.try_get::<String, _>("video_id")?,
                "status": if failed { "failed" } else { "pending" },
                "error": row.try_get::<Option<String>, _>("last_error")?,
                "attempts": row.try_get::<i32, _>("attempts")?,
                "next": (!failed).then(|| format_timestamp(scheduled_at)),
                "forget": forget.get(&row.try_get::<String, _>("id")?),
            }));
        }
        if !videos.is_empty() {
            sqlx::query(include_str!("sql/fail_update_videos.sql"))
                .bind(&now_s)
                .bind(Value::Array(videos).to_string())
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(items
            .iter()
            .map(|f| {
                let id = f.lease.job_id;
                (
                    id,
                    outcomes.get(&id).copied().unwrap_or(FailOutcome::LeaseLost),
                )
            })
            .collect())
    }

    pub(super) async fn release_tx(
        &self,
        worker_id: &str,
        leases: &[Lease],
    ) -> Result<Vec<(Uuid, ReleaseOutcome)>, sqlx::Error> {
        let items = Value::Array(leases.iter().map(lease_item).collect());
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let released: Vec<(String, String, i32)> =
            sqlx::query_as(include_str!("sql/release_update_download_jobs.sql"))
                .bind(&now_s)
                .bind(items.to_string())
                .bind(worker_id)
                .fetch_all(&mut *w.tx)
                .await?;
        let mut done = HashSet::with_capacity(released.len());
        let mut videos = Vec::with_capacity(released.len());
        for (job_id, video_id, attempts) in &released {
            done.insert(parse_uuid(job_id)?);
            videos.push(json!({"id": video_id, "attempts": attempts}));
        }
        if !videos.is_empty() {
            sqlx::query(include_str!("sql/release_update_videos.sql"))
                .bind(&now_s)
                .bind(Value::Array(videos).to_string())
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(leases
            .iter()
            .map(|l| {
                let outcome = if done.contains(&l.job_id) {
                    ReleaseOutcome::Released
                } else {
                    ReleaseOutcome::LeaseLost
                };
                (l.job_id, outcome)
            })
            .collect())
    }

    pub(super) async fn rescue_tx(&self, limit: u32) -> Result<Vec<Rescued>, sqlx::Error> {
        // Like an idle claim, a rescue that finds nothing takes no write lock.
        let expired: bool = sqlx::query_scalar(
            "select exists (select 1 from download_jobs
                             where status = 'running' and lease_expires_at < ?1)",
        )
        .bind(format_timestamp(now()))
        .fetch_one(&self.pool)
        .await?;
        if !expired {
            return Ok(Vec::new());
        }

        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        // (job id, video id, worker id, attempts, max attempts, douyin id)
        type Expired = (String, String, Option<String>, i32, i32, Option<String>);
        let expired: Vec<Expired> = sqlx::query_as(include_str!("sql/rescue_expired_jobs.sql"))
            .bind(&now_s)
            .bind(i64::from(limit.max(1)))
            .fetch_all(&mut *w.tx)
            .await?;
        if expired.is_empty() {
            w.commit().await?;
            return Ok(Vec::new());
        }
        let mut jobs = Vec::with_capacity(expired.len());
        let mut videos = Vec::with_capacity(expired.len());
        let mut out = Vec::with_capacity(expired.len());
        for (id, video_id, worker_id, attempts, max_attempts, douyin_id) in expired {
            let failed = attempts >= max_attempts;
            let error = format!(
                "lease expired: worker {} stopped renewing it during attempt {attempts} of \
                 {max_attempts}",
                worker_id.as_deref().unwrap_or("?")
            );
            jobs.push(json!({"id": id, "failed": failed, "error": error}));
            videos.push(json!({
                "id": video_id,
                "status": if failed { "failed" } else { "pending" },
                "error": error,
                "attempts": attempts,
            }));
            out.push(Rescued {
                job_id: parse_uuid(&id)?,
                video_id: parse_uuid(&video_id)?,
                douyin_id,
                requeued: !failed,
                worker_id,
            });
        }
        sqlx::query(include_str!("sql/rescue_update_download_jobs.sql"))
            .bind(&now_s)
            .bind(Value::Array(jobs).to_string())
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(include_str!("sql/rescue_update_videos.sql"))
            .bind(&now_s)
            .bind(Value::Array(videos).to_string())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(out)
    }

    pub(super) async fn progress_tx(
        &self,
        worker_id: &str,
        lease: &Lease,
        done: i64,
        total: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let mut w = self.write().await?;
        let now_s = format_timestamp(now());
        let video_id: Option<(String,)> =
            sqlx::query_as(include_str!("sql/progress_update_download_jobs.sql"))
                .bind(done)
                .bind(total)
                .bind(&now_s)
                .bind(lease.job_id.hyphenated())
                .bind(lease.lease_id.hyphenated())
                .bind(worker_id)
                .fetch_optional(&mut *w.tx)
                .await?;
        if let (Some((video_id,)), Some(total)) = (&video_id, total.filter(|t| *t > 0)) {
            // floor(done * 100 / total), held below 100 until the job completes.
            let percent = (i128::from(done) * 100 / i128::from(total)).clamp(0, 99) as i64;
            sqlx::query("update videos set download_progress = ?1 where id = ?2")
                .bind(percent)
                .bind(video_id)
                .execute(&mut *w.tx)
                .await?;
        }
        w.commit().await?;
        Ok(video_id.is_some())
    }
}

/// A `list_download_jobs` row (the columns of [`admin::JOB_SELECT`]).
pub(super) fn job_from_row(r: &SqliteRow) -> Result<JobRecord, sqlx::Error> {
    Ok(JobRecord {
        id: uuid_column(r, "id")?,
        video_id: uuid_column(r, "video_id")?,
        status: r.try_get("status")?,
        worker_id: r.try_get("worker_id")?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        priority: r.try_get::<Option<i32>, _>("priority")?.unwrap_or(0),
        scheduled_at: r.try_get("scheduled_at")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        last_error: r.try_get("last_error")?,
        last_error_code: r.try_get("last_error_code")?,
        last_error_class: r.try_get("last_error_class")?,
        progress_bytes: r.try_get("progress_bytes")?,
        progress_total: r.try_get("progress_total")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
        video_status: r.try_get("video_status")?,
        video_attempts: r.try_get("video_attempts")?,
        video_last_error: r.try_get("video_last_error")?,
        video_next_attempt_at: r.try_get("video_next_attempt_at")?,
        video_download_progress: r.try_get("video_download_progress")?,
        video_in_progress_by: r.try_get("video_in_progress_by")?,
        video_object_key: r.try_get("video_object_key")?,
        video_douyin_id: r.try_get("video_douyin_id")?,
    })
}
