-- claim_tx: see src/queue/sqlite/lifecycle.rs
select id from download_jobs
where status = 'pending' and scheduled_at <= ?1
order by priority desc, scheduled_at, created_at
limit ?2
