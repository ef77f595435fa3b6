//! What operators and the download API ask of the SQLite queue (`video`, `jobs`, `retry`,
//! `overview`, `wanted_object_keys`), with the semantics of the SQL functions in
//! `migrations/0004_admin.sql`.
//!
//! "Newer" between two jobs of a video is `created_at`, then `rowid` (times are stored to the
//! millisecond, so two jobs may share one).

use super::*;

/// The columns of `list_download_jobs`, for [`job_from_row`]; filtered and ordered by the
/// caller.
pub(super) const JOB_SELECT: &str = "select j.id, j.video_id, j.status, j.worker_id, j.attempts,
        j.max_attempts, j.priority, j.scheduled_at, j.lease_expires_at, j.last_error,
        j.last_error_code, j.last_error_class, j.progress_bytes, j.progress_total,
        j.created_at, j.finished_at,
        v.status as video_status, v.attempts as video_attempts,
        v.last_error as video_last_error, v.next_attempt_at as video_next_attempt_at,
        v.download_progress as video_download_progress,
        v.in_progress_by as video_in_progress_by,
        v.object_key as video_object_key, v.douyin_id as video_douyin_id
   from download_jobs j
   join videos v on v.id = j.video_id";

/// The `get_worker_stats()` figures.
pub(super) const STATS_SQL: &str = "select count(*),
        coalesce(sum(status = 'pending'), 0),
        coalesce(sum(status = 'running'), 0),
        coalesce(sum(status = 'completed'), 0),
        coalesce(sum(status = 'failed'), 0),
        count(distinct case when status = 'running' then worker_id end)
   from download_jobs";

/// The six counts of [`STATS_SQL`].
type StatsRow = (i64, i64, i64, i64, i64, i64);

fn stats_from_row(r: StatsRow) -> WorkerStats {
    WorkerStats {
        total_jobs: r.0,
        pending_jobs: r.1,
        running_jobs: r.2,
        completed_jobs: r.3,
        failed_jobs: r.4,
        active_workers: r.5,
    }
}

/// What retry reads of one job and its video.
struct RetryRow {
    status: String,
    video_id: String,
    payload: Option<String>,
    priority: Option<i32>,
    max_attempts: i32,
    marked: bool,
    stored: bool,
    active: Option<String>,
    newer: bool,
}

impl RetryRow {
    fn from_row(r: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            status: r.try_get("status")?,
            video_id: r.try_get("video_id")?,
            payload: r.try_get("payload")?,
            priority: r.try_get("priority")?,
            max_attempts: r.try_get("max_attempts")?,
            marked: r.try_get("marked")?,
            stored: r.try_get("stored")?,
            active: r.try_get("active")?,
            newer: r.try_get("newer")?,
        })
    }
}

impl SqliteQueue {
    pub(super) async fn stats_q(&self) -> Result<WorkerStats, sqlx::Error> {
        let r: StatsRow = sqlx::query_as(STATS_SQL).fetch_one(&self.pool).await?;
        Ok(stats_from_row(r))
    }

    pub(super) async fn video_q(&self, id: Uuid) -> Result<Option<VideoState>, sqlx::Error> {
        let row = sqlx::query(
            "select v.id, v.douyin_id, v.title, v.status, v.attempts, v.last_error,
                    v.download_progress,
                    coalesce(v.marked_for_deletion, 0) <> 0 as marked_for_deletion,
                    v.bucket, v.object_key, v.filesize, v.mime_type,
                    (select a.id from download_jobs a
                      where a.video_id = v.id and a.status in ('pending', 'running')
                      limit 1) as active_job_id,
                    (select j.status from download_jobs j where j.video_id = v.id
                      order by j.status in ('pending', 'running') desc, j.created_at desc,
                               j.rowid desc
                      limit 1) as latest_job_status,
                    (select j.last_error_class from download_jobs j where j.video_id = v.id
                      order by j.status in ('pending', 'running') desc, j.created_at desc,
                               j.rowid desc
                      limit 1) as latest_error_class,
                    (select j.id from download_jobs j where j.video_id = v.id
                      order by j.status in ('pending', 'running') desc, j.created_at desc,
                               j.rowid desc
                      limit 1) as latest_job_id,
                    (select j.created_at from download_jobs j where j.video_id = v.id
                      order by j.status in ('pending', 'running') desc, j.created_at desc,
                               j.rowid desc
                      limit 1) as latest_job_created_at,
                    (select j.last_error_code from download_jobs j where j.video_id = v.id
                      order by j.status in ('pending', 'running') desc, j.created_at desc,
                               j.rowid desc
                      limit 1) as latest_error_code
               from videos v
              where v.id = coalesce((select merged_into from videos where id = ?1), ?1)",
        )
        .bind(id.hyphenated())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(VideoState {
            id: uuid_column(&r, "id")?,
            douyin_id: r.try_get("douyin_id")?,
            title: r.try_get("title")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            last_error: r.try_get("last_error")?,
            download_progress: r.try_get("download_progress")?,
            marked_for_deletion: r.try_get("marked_for_deletion")?,
            bucket: r.try_get("bucket")?,
            object_key: r.try_get("object_key")?,
            filesize: r.try_get("filesize")?,
            mime_type: r.try_get("mime_type")?,
            active_job_id: r
                .try_get::<Option<Hyphenated>, _>("active_job_id")?
                .map(Hyphenated::into_uuid),
            latest_job_status: r.try_get("latest_job_status")?,
            latest_error_class: r.try_get("latest_error_class")?,
            latest_job_id: r
                .try_get::<Option<Hyphenated>, _>("latest_job_id")?
                .map(Hyphenated::into_uuid),
            latest_job_created_at: r.try_get("latest_job_created_at")?,
            latest_error_code: r.try_get("latest_error_code")?,
        }))
    }

    pub(super) async fn jobs_q(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, sqlx::Error> {
        let sql = format!(
            "{JOB_SELECT}
              where ?1 is null or j.status = ?1
              order by j.created_at desc, j.rowid desc
              limit ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(i64::from(filter.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub(super) async fn retry_tx(
        &self,
        target: &RetryTarget,
    ) -> Result<Vec<RetryResult>, sqlx::Error> {
        let mut w = self.write().await?;
        let ids: Vec<Uuid> = match target {
            RetryTarget::Jobs(ids) => ids.clone(),
            RetryTarget::AllFailed => {
                let ids: Vec<(Hyphenated,)> = sqlx::query_as(
                    "select j.id from download_jobs j
                       join videos v on v.id = j.video_id
                      where j.status = 'failed'
                        and coalesce(v.marked_for_deletion, 0) = 0
                        and v.merged_into is null
                        and not (v.status in ('ready', 'uploaded', 'processed')
                                 and v.object_key is not null)
                        and not exists (
                            select 1 from download_jobs n
                             where n.video_id = j.video_id and n.id <> j.id
                               and (n.created_at > j.created_at
                                    or (n.created_at = j.created_at and n.rowid > j.rowid)
                                    or n.status in ('pending', 'running')))
                      order by j.created_at, j.rowid",
                )
                .fetch_all(&mut *w.tx)
                .await?;
                ids.into_iter().map(|(id,)| id.into_uuid()).collect()
            }
        };
        let now_s = format_timestamp(now());
        let mut out = Vec::with_capacity(ids.len());
        for job_id in ids {
            let row = sqlx::query(
                "select j.status, j.video_id, j.payload, j.priority, j.max_attempts,
                        coalesce(v.marked_for_deletion, 0) <> 0 as marked,
                        (v.status in ('ready', 'uploaded', 'processed')
                         and v.object_key is not null) as stored,
                        (select a.id from download_jobs a
                          where a.video_id = j.video_id and a.status in ('pending', 'running')
                          limit 1) as active,
                        exists (select 1 from download_jobs n
                                 where n.video_id = j.video_id and n.id <> j.id
                                   and (n.created_at > j.created_at
                                        or (n.created_at = j.created_at
                                            and n.rowid > j.rowid))) as newer
                   from download_jobs j
                   join videos v on v.id = j.video_id
                  where j.id = ?1",
            )
            .bind(job_id.hyphenated())
            .fetch_optional(&mut *w.tx)
            .await?
            .map(|r| RetryRow::from_row(&r))
            .transpose()?;
            let result = |video_id: Option<Uuid>, new_job_id: Option<Uuid>, outcome| RetryResult {
                job_id,
                video_id,
                new_job_id,
                outcome,
            };
            let Some(r) = row else {
                out.push(result(None, None, RetryOutcome::NotFound));
                continue;
            };
            let video_id = parse_uuid(&r.video_id)?;
            let (new_job_id, outcome) = if r.status != "failed" {
                (None, RetryOutcome::NotFailed)
            } else if r.marked {
                (None, RetryOutcome::MarkedForDeletion)
            } else if let Some(active) = &r.active {
                (Some(parse_uuid(active)?), RetryOutcome::Duplicate)
            } else if r.newer || r.stored {
                (None, RetryOutcome::Superseded)
            } else {
                let req = EnqueueRequest {
                    payload: Some(retry_payload(r.payload.as_deref(), job_id)),
                    priority: Some(r.priority.unwrap_or(0)),
                    max_attempts: Some(r.max_attempts),
                    ..Default::default()
                };
                // A row merged into another is retried as that row, as enqueue does.
                let merged: Option<(String, bool, bool, Option<String>)> = sqlx::query_as(
                    "select m.id, coalesce(m.marked_for_deletion, 0) <> 0,
                            (m.status in ('ready', 'uploaded', 'processed')
                             and m.object_key is not null),
                            (select a.id from download_jobs a
                              where a.video_id = m.id and a.status in ('pending', 'running')
                              limit 1)
                       from videos v join videos m on m.id = v.merged_into
                      where v.id = ?1",
                )
                .bind(&r.video_id)
                .fetch_optional(&mut *w.tx)
                .await?;
                match merged {
                    Some((_, true, _, _)) => (None, RetryOutcome::MarkedForDeletion),
                    Some((_, _, _, Some(active))) => {
                        (Some(parse_uuid(&active)?), RetryOutcome::Duplicate)
                    }
                    Some((_, _, true, _)) => (None, RetryOutcome::Superseded),
                    Some((into, ..)) => {
                        let into = parse_uuid(&into)?;
                        let new_job_id = requeue_video(&mut w, &req, into, 0, &now_s).await?;
                        (Some(new_job_id), RetryOutcome::Queued)
                    }
                    None => {
                        let new_job_id = requeue_video(&mut w, &req, video_id, 0, &now_s).await?;
                        (Some(new_job_id), RetryOutcome::Queued)
                    }
                }
            };
            out.push(result(Some(video_id), new_job_id, outcome));
        }
        w.commit().await?;
        Ok(out)
    }

    pub(super) async fn overview_q(&self) -> Result<QueueOverview, sqlx::Error> {
        // One read transaction: every figure from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let stats: StatsRow = sqlx::query_as(STATS_SQL).fetch_one(&mut *tx).await?;
        let now = now();
        let (due_jobs, oldest_due): (i64, Option<String>) = sqlx::query_as(
            "select count(*), min(scheduled_at) from download_jobs
              where status = 'pending' and scheduled_at <= ?1",
        )
        .bind(format_timestamp(now))
        .fetch_one(&mut *tx)
        .await?;
        let workers: Vec<(String, i64)> = sqlx::query_as(
            "select coalesce(worker_id, '(unknown)') as worker, count(*) as running
               from download_jobs
              where status = 'running'
              group by worker
              order by running desc, worker",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let oldest_due_seconds = oldest_due
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| {
                        let waited = now - t.with_timezone(&Utc);
                        (waited.num_milliseconds() as f64 / 1000.0).max(0.0)
                    })
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))
            })
            .transpose()?;
        Ok(QueueOverview {
            stats: stats_from_row(stats),
            due_jobs,
            oldest_due_seconds,
            workers: workers
                .into_iter()
                .map(|(worker_id, running)| WorkerLoad { worker_id, running })
                .collect(),
        })
    }

    pub(super) async fn wanted_keys_q(&self, bucket: &str) -> Result<HashSet<String>, sqlx::Error> {
        // The main object, the cover and an image post's parts (as list_wanted_object_keys).
        let keys: Vec<(Option<String>,)> = sqlx::query_as(
            "with v as (select object_key, storage_metadata as meta
                          from videos
                         where object_key is not null
                           and coalesce(marked_for_deletion, 0) = 0
                           and (bucket is null or bucket = ?1))
             select object_key from v
             union
             select json_extract(meta, '$.cover.key') from v where json_valid(meta)
             union
             select json_extract(p.value, '$.key')
               from v, json_each(case when not json_valid(v.meta) then '[]'
                                      when json_type(v.meta, '$.parts') = 'array'
                                      then json_extract(v.meta, '$.parts')
                                      else '[]' end) p",
        )
        .bind(bucket)
        .fetch_all(&self.pool)
        .await?;
        Ok(keys
            .into_iter()
            .filter_map(|(k,)| k.filter(|k| !k.is_empty()))
            .collect())
    }
}

impl SqliteQueue {
    /// As `get_video_cover`: where the video's cover is stored.
    pub(super) async fn video_cover_q(&self, id: Uuid) -> Result<Option<VideoCover>, sqlx::Error> {
        let row = sqlx::query(
            "select v.id, v.bucket,
                    coalesce(v.marked_for_deletion, 0) <> 0 as marked_for_deletion,
                    case when json_valid(v.storage_metadata)
                         then nullif(json_extract(v.storage_metadata, '$.cover.key'), '') end
                      as cover_key
               from videos v
              where v.id = coalesce((select merged_into from videos where id = ?1), ?1)",
        )
        .bind(id.hyphenated())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(VideoCover {
            id: uuid_column(&r, "id")?,
            bucket: r.try_get("bucket")?,
            cover_key: r.try_get("cover_key")?,
            marked_for_deletion: r.try_get("marked_for_deletion")?,
        }))
    }
}

/// The payload of a retry's new job: the failed job's (when it is an object) with
/// `{"retry": true, "retry_of": <job id>}`, as `retry_download_jobs` builds it.
fn retry_payload(old: Option<&str>, job_id: Uuid) -> Value {
    let mut payload = match old.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    payload.insert("retry".into(), Value::Bool(true));
    payload.insert(
        "retry_of".into(),
        Value::String(job_id.hyphenated().to_string()),
    );
    Value::Object(payload)
}
