-- release_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
   set status           = 'pending',
       worker_id        = null,
       scheduled_at     = ?1,
       attempts         = max(j.attempts - 1, 0),
       lease_id         = null,
       lease_expires_at = null,
       progress_bytes   = null,
       progress_total   = null,
       updated_at       = ?1
  from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id
          from json_each(?2)) as x
 where j.id = x.job_id
   and j.lease_id = x.lease_id
   and j.worker_id = ?3
   and j.status = 'running'
returning id, video_id, attempts
