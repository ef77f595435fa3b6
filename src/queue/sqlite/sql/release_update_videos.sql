-- release_tx: see src/queue/sqlite/lifecycle.rs
update videos as v
  set status            = case when coalesce(v.object_key, '') <> '' then 'ready'
                               else 'pending' end,
      attempts          = x.attempts,
      in_progress_by    = null,
      in_progress_at    = null,
      download_progress = case when coalesce(v.object_key, '') <> '' then 100 end,
      next_attempt_at   = null,
      updated_at        = ?1
 from (select value ->> 'id' as id, value ->> 'attempts' as attempts
         from json_each(?2)) as x
where v.id = x.id
