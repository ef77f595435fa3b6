-- release_tx: see src/queue/sqlite/lifecycle.rs
update videos as v
  set status            = 'pending',
      attempts          = x.attempts,
      in_progress_by    = null,
      in_progress_at    = null,
      download_progress = null,
      next_attempt_at   = null,
      updated_at        = ?1
 from (select value ->> 'id' as id, value ->> 'attempts' as attempts
         from json_each(?2)) as x
where v.id = x.id
