-- fail_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
   set status           = case when x.final or j.attempts >= j.max_attempts
                               then 'failed' else 'pending' end,
       worker_id        = case when x.final or j.attempts >= j.max_attempts
                               then j.worker_id end,
       finished_at      = case when x.final or j.attempts >= j.max_attempts
                               then ?1 end,
       scheduled_at     = case when x.final or j.attempts >= j.max_attempts
                               then j.scheduled_at else x.due end,
       lease_id         = null,
       lease_expires_at = null,
       last_error       = x.error,
       last_error_code  = x.code,
       last_error_class = x.class,
       updated_at       = ?1
  from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id,
               value ->> 'final' as final, value ->> 'due' as due,
               value ->> 'error' as error, value ->> 'code' as code,
               value ->> 'class' as class
          from json_each(?2)) as x
 where j.id = x.job_id
   and j.lease_id = x.lease_id
   and j.worker_id = ?3
   and j.status = 'running'
returning id, video_id, status, attempts, last_error, scheduled_at
