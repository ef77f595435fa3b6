-- enqueue_tx: see src/queue/sqlite/enqueue.rs
insert into download_jobs
    (id, video_id, status, payload, priority, max_attempts,
     scheduled_at, created_at, updated_at)
values (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?6, ?6)
