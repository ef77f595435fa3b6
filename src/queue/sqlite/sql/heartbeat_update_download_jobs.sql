-- heartbeat_turn: see src/queue/sqlite/lifecycle.rs
update download_jobs as j
   set lease_expires_at = ?1,
       heartbeat_at     = ?2
  from (select value ->> 'job_id' as job_id, value ->> 'lease_id' as lease_id
          from json_each(?3)) as x
 where j.id = x.job_id
   and j.lease_id = x.lease_id
   and j.worker_id = ?4
   and j.status = 'running'
returning id, lease_id
