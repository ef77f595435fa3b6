-- fail_tx: see src/queue/sqlite/lifecycle.rs
update videos as v
  set status            = x.status,
      last_error        = x.error,
      attempts          = x.attempts,
      in_progress_by    = null,
      in_progress_at    = null,
      download_progress = null,
      next_attempt_at   = x.next,
      updated_at        = ?1
 from (select value ->> 'id' as id, value ->> 'status' as status,
              value ->> 'error' as error, value ->> 'attempts' as attempts,
              value ->> 'next' as next
         from json_each(?2)) as x
where v.id = x.id
