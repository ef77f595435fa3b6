-- complete_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
   set status           = 'completed',
       finished_at      = ?1,
       lease_id         = null,
       lease_expires_at = null,
       last_error       = null,
       last_error_code  = null,
       last_error_class = null,
       progress_bytes   = coalesce(x.filesize, j.progress_bytes),
       progress_total   = coalesce(x.filesize, j.progress_total),
       progress_at      = ?1,
       updated_at       = ?1
  from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id,
               value ->> 'filesize' as filesize
          from json_each(?2)) as x
 where j.id = x.job_id
   and j.lease_id = x.lease_id
   and j.worker_id = ?3
   and j.status = 'running'
returning id, video_id
