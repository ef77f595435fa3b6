-- enqueue_tx: see src/queue/sqlite/enqueue.rs
select v.id, v.status, v.object_key,
      coalesce(v.marked_for_deletion, 0) <> 0,
      -- download_job_default_priority
      (case when coalesce(v.surge_detected, 0) then 1000000 else 0 end)
        + cast(max(min(round(coalesce(v.viral_momentum, 0)), 999999), 0)
               as integer),
      (select j.id from download_jobs j
        where j.video_id = v.id and j.status in ('pending', 'running')
        limit 1)
 from videos v
where v.rowid = coalesce(
          (select rowid from videos where id = ?1),
          (select rowid from videos where douyin_id = ?2
            order by created_at, rowid limit 1),
          (select rowid from videos where video_url = ?3
            order by created_at, rowid limit 1))
