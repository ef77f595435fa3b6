-- claim_tx: see src/queue/sqlite/lifecycle.rs
update videos as v
   set status              = 'downloading',
       download_started_at = ?1,
       in_progress_by      = ?2,
       in_progress_at      = ?1,
       attempts            = x.attempts,
       last_attempt_at     = ?1,
       download_progress   = 0,
       next_attempt_at     = null,
       updated_at          = ?1
  from (select value ->> 'id' as id, value ->> 'attempts' as attempts
          from json_each(?3)) as x
 where v.id = x.id
returning id, douyin_id, video_url, title, thumbnail_url, video_url_direct,
          video_url_meta,
          coalesce(marked_for_deletion, 0) <> 0 as marked_for_deletion
