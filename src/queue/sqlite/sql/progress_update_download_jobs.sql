-- progress_tx: see src/queue/sqlite/lifecycle.rs
update download_jobs
   set progress_bytes = ?1,
       progress_total = ?2,
       progress_at    = ?3
 where id = ?4 and lease_id = ?5 and worker_id = ?6 and status = 'running'
returning video_id
