-- rescue_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
  set status           = case when x.failed then 'failed' else 'pending' end,
      worker_id        = case when x.failed then j.worker_id end,
      finished_at      = case when x.failed then ?1 end,
      scheduled_at     = ?1,
      lease_id         = null,
      lease_expires_at = null,
      last_error       = x.error,
      last_error_code  = 'lease-expired',
      last_error_class = 'transient',
      updated_at       = ?1
 from (select value ->> 'id' as id, value ->> 'failed' as failed,
              value ->> 'error' as error
         from json_each(?2)) as x
where j.id = x.id
