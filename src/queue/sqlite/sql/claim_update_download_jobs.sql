-- claim_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
   set status           = 'running',
       worker_id        = ?1,
       started_at       = ?2,
       finished_at      = null,
       attempts         = j.attempts + 1,
       lease_id         = x.lease,
       lease_expires_at = ?3,
       heartbeat_at     = ?2,
       progress_bytes   = null,
       progress_total   = null,
       progress_at      = null,
       updated_at       = ?2
  from (select value ->> 'id' as id, value ->> 'lease' as lease
          from json_each(?4)) as x
 where j.id = x.id
returning id, video_id, lease_id, attempts, max_attempts, priority, payload,
          scheduled_at, created_at
