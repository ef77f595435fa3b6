-- enqueue_tx: see src/queue/sqlite/enqueue.rs
-- The row by id, else by Douyin id (not a merged row), else by link; a merged row stands for
-- the row it was merged into. The last column says whether the row found by link has no
-- Douyin id yet (it then learns the one given).
with hit as (
    select h.id, h.merged_into,
           h.merged_into is null and coalesce(h.douyin_id, '') = '' as without_id
      from videos h
     where h.rowid = coalesce(
               (select rowid from videos where id = ?1),
               (select rowid from videos where douyin_id = ?2 and merged_into is null
                 order by created_at, rowid limit 1),
               (select rowid from videos where video_url = ?3
                 order by merged_into is null desc, created_at, rowid limit 1))
)
select v.id, v.status, v.object_key,
      coalesce(v.marked_for_deletion, 0) <> 0,
      -- download_job_default_priority
      (case when coalesce(v.surge_detected, 0) then 1000000 else 0 end)
        + cast(max(min(round(coalesce(v.viral_momentum, 0)), 999999), 0)
               as integer),
      (select j.id from download_jobs j
        where j.video_id = v.id and j.status in ('pending', 'running')
        limit 1),
      hit.without_id
 from hit
 join videos v on v.id = coalesce(hit.merged_into, hit.id)
