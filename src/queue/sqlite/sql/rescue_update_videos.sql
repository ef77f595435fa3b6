-- rescue_tx: see src/queue/sqlite/lifecycle.rs
update videos as v
  set status            = case when coalesce(v.object_key, '') <> '' then 'ready'
                               else x.status end,
      last_error        = case when coalesce(v.object_key, '') <> '' then v.last_error
                               else x.error end,
      attempts          = x.attempts,
      in_progress_by    = null,
      in_progress_at    = null,
      download_progress = case when coalesce(v.object_key, '') <> '' then 100 end,
      updated_at        = ?1
 from (select value ->> 'id' as id, value ->> 'status' as status,
              value ->> 'error' as error, value ->> 'attempts' as attempts
         from json_each(?2)) as x
where v.id = x.id
