-- rescue_tx: see src/queue/sqlite/lifecycle.rs
select j.id, j.video_id, j.worker_id, j.attempts, j.max_attempts, v.douyin_id
 from download_jobs j
 left join videos v on v.id = j.video_id
where j.status = 'running' and j.lease_expires_at < ?1
order by j.lease_expires_at
limit ?2
