-- douyin-worker migration 0007: change notifications for the download API's events stream
-- (`GET /api/videos/{id}/events`).
--
--   * Triggers send `NOTIFY douyin_worker_videos, '<video id>'` when a video's status,
--     progress, deletion mark or object changes, and when a job is queued for it or changes
--     status, whichever process or tool wrote it. Every worker process serving the API holds
--     one LISTEN on the channel and re-reads the videos its streams follow. A notification
--     costs nothing when nobody listens, and is sent at commit (several in one transaction
--     for one video arrive once).
--   * Supabase Realtime: where the publication `supabase_realtime` exists (every Supabase
--     project), `public.videos` joins it, so a page subscribed with supabase-js
--     (`postgres_changes`, `UPDATE` on `videos`, filter `id=eq.<uuid>`) receives the same
--     status and progress without the worker's API; row-level security (the read policy on
--     `videos`, migration 0005) decides who sees which rows. Nothing happens where the
--     publication does not exist, or already publishes the table (or all tables).
--   * `get_download_video_marks(uuid[])`: the status and progress of many videos in one call,
--     for processes that cannot LISTEN (Supabase REST, a transaction-mode pooler) and poll.
--
-- No existing function changes but `douyin_worker_schema_version()`, now 7. Idempotent.

create or replace function public.douyin_worker_notify_video_change()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if tg_table_name = 'videos' then
        perform pg_notify('douyin_worker_videos', new.id::text);
    else
        perform pg_notify('douyin_worker_videos', new.video_id::text);
    end if;
    return null;
end
$$;

drop trigger if exists douyin_worker_video_changed on public.videos;
create trigger douyin_worker_video_changed
    after update of status, download_progress, marked_for_deletion, object_key
    on public.videos
    for each row
    when (old.status is distinct from new.status
          or old.download_progress is distinct from new.download_progress
          or old.marked_for_deletion is distinct from new.marked_for_deletion
          or old.object_key is distinct from new.object_key)
    execute function public.douyin_worker_notify_video_change();

drop trigger if exists douyin_worker_job_queued on public.download_jobs;
create trigger douyin_worker_job_queued
    after insert on public.download_jobs
    for each row
    execute function public.douyin_worker_notify_video_change();

drop trigger if exists douyin_worker_job_changed on public.download_jobs;
create trigger douyin_worker_job_changed
    after update of status on public.download_jobs
    for each row
    when (old.status is distinct from new.status)
    execute function public.douyin_worker_notify_video_change();

create or replace function public.get_download_video_marks(p_video_ids uuid[])
returns table (
    id                uuid,
    status            text,
    download_progress smallint,
    active_job_status text)
language sql stable
set search_path = ''
as $$
    select v.id, v.status, v.download_progress,
           (select a.status from public.download_jobs a
             where a.video_id = v.id and a.status in ('pending', 'running')
             limit 1)
      from public.videos v
     where v.id = any(p_video_ids)
$$;

do $$
begin
    if exists (select 1 from pg_catalog.pg_publication
                where pubname = 'supabase_realtime' and not puballtables)
       and not exists (select 1 from pg_catalog.pg_publication_tables
                        where pubname = 'supabase_realtime'
                          and schemaname = 'public' and tablename = 'videos')
    then
        alter publication supabase_realtime add table public.videos;
    end if;
end
$$;

-- The version the worker checks at start-up.
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 7 $$;

do $$
declare
    fn   text;
    role text;
begin
    foreach fn in array array[
        'public.get_download_video_marks(uuid[])',
        'public.douyin_worker_notify_video_change()'
    ]
    loop
        execute format('revoke execute on function %s from public', fn);
        foreach role in array array['anon', 'authenticated'] loop
            if exists (select 1 from pg_roles where rolname = role) then
                execute format('revoke execute on function %s from %I', fn, role);
            end if;
        end loop;
        if exists (select 1 from pg_roles where rolname = 'service_role') then
            execute format('grant execute on function %s to service_role', fn);
        end if;
    end loop;
end
$$;

insert into public.douyin_worker_migrations (version, name)
values (7, '0007_video_events.sql')
on conflict (version) do nothing;
