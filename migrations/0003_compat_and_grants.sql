-- douyin-worker migration 0003: the old worker's functions, and who may call what.
--
-- The functions that the UI, the crawler and the monitoring SQL of the old worker use keep
-- their names, argument names and result columns. `claim_download_job` and
-- `get_worker_stats` are the worker's and are rebuilt on the new queue; the ranking and
-- bucket functions belong to the application and are created only where they are missing.

-- The old one-job claim, kept for old workers still running during a roll-out. It uses the
-- new claim, with a lease long enough for a worker that never sends heartbeats.
do $$
begin
    if pg_get_function_result(to_regprocedure('public.claim_download_job(text)'))
           <> 'TABLE(id uuid, video_id uuid, status text, scheduled_at timestamp with time zone, attempts integer, payload jsonb)'
    then
        drop function public.claim_download_job(text);
    end if;
end
$$;

create or replace function public.claim_download_job(p_worker_id text)
returns table (id uuid, video_id uuid, status text, scheduled_at timestamptz, attempts integer, payload jsonb)
language sql
set search_path = ''
as $$
    select c.id, c.video_id, 'running'::text, c.scheduled_at, c.attempts, c.payload
      from public.claim_download_jobs(p_worker_id, 1, 3600) c
$$;

create or replace function public.get_worker_stats()
returns table (total_jobs bigint, pending_jobs bigint, running_jobs bigint,
               completed_jobs bigint, failed_jobs bigint, active_workers bigint)
language sql stable
set search_path = ''
as $$
    select count(*),
           count(*) filter (where j.status = 'pending'),
           count(*) filter (where j.status = 'running'),
           count(*) filter (where j.status = 'completed'),
           count(*) filter (where j.status = 'failed'),
           count(distinct j.worker_id) filter (where j.status = 'running')
      from public.download_jobs j
$$;

-- The schema version this file set leaves; workers check it at start-up (also over REST).
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 3 $$;

do $do$
begin
    if to_regprocedure('public.ensure_videos_bucket()') is null then
        execute $fn$
        create function public.ensure_videos_bucket()
        returns void
        language plpgsql
        set search_path = ''
        as $body$
        begin
            -- Storage policies exist only on Supabase; elsewhere there is nothing to set up.
            if to_regclass('storage.objects') is null then
                raise notice 'ensure_videos_bucket: no storage.objects table here (not Supabase); nothing to do';
                return;
            end if;
            if not exists (select 1 from pg_policies
                            where schemaname = 'storage' and tablename = 'objects'
                              and policyname = 'videos public read') then
                execute $p$create policy "videos public read" on storage.objects
                           for select using (bucket_id = 'videos')$p$;
            end if;
            if not exists (select 1 from pg_policies
                            where schemaname = 'storage' and tablename = 'objects'
                              and policyname = 'videos service upload') then
                execute $p$create policy "videos service upload" on storage.objects
                           for insert to service_role with check (bucket_id = 'videos')$p$;
            end if;
        end
        $body$
        $fn$;
    end if;

    if to_regprocedure('public.update_viral_metrics(uuid, numeric)') is null then
        execute $fn$
        create function public.update_viral_metrics(p_video_id uuid, p_new_score numeric)
        returns void
        language plpgsql
        set search_path = ''
        as $body$
        declare
            v public.videos%rowtype;
            v_history jsonb;
            v_score_24h numeric;
            v_score_7d numeric;
        begin
            select * into v from public.videos where id = p_video_id for update;
            if not found then
                return;
            end if;
            v_history := coalesce(v.viral_score_history, '[]'::jsonb)
                         || jsonb_build_array(jsonb_build_object('at', now(), 'score', p_new_score));
            select (e->>'score')::numeric into v_score_24h
              from jsonb_array_elements(v_history) e
             where (e->>'at')::timestamptz >= now() - interval '24 hours'
             order by (e->>'at')::timestamptz limit 1;
            select (e->>'score')::numeric into v_score_7d
              from jsonb_array_elements(v_history) e
             where (e->>'at')::timestamptz >= now() - interval '7 days'
             order by (e->>'at')::timestamptz limit 1;
            update public.videos
               set viral_score         = p_new_score,
                   viral_momentum      = p_new_score - coalesce(v.viral_score, p_new_score),
                   momentum_24h        = p_new_score - coalesce(v_score_24h, p_new_score),
                   momentum_7d         = p_new_score - coalesce(v_score_7d, p_new_score),
                   viral_score_history = v_history,
                   max_viral_score     = greatest(coalesce(v.max_viral_score, p_new_score), p_new_score),
                   last_increase_at    = case when p_new_score > coalesce(v.viral_score, 0)
                                              then now() else v.last_increase_at end,
                   surge_factor        = case when coalesce(v.viral_score, 0) > 0
                                              then p_new_score / v.viral_score end,
                   surge_detected      = coalesce(v.viral_score, 0) > 0 and p_new_score >= 2 * v.viral_score,
                   last_surge_at       = case when coalesce(v.viral_score, 0) > 0 and p_new_score >= 2 * v.viral_score
                                              then now() else v.last_surge_at end,
                   updated_at          = now()
             where id = p_video_id;
        end
        $body$
        $fn$;
    end if;

    if to_regprocedure('public.cleanup_old_low_viral(integer, numeric, integer)') is null then
        execute $fn$
        create function public.cleanup_old_low_viral(
            p_days_no_increase integer default 14,
            p_min_score        numeric default 10,
            p_age_days         integer default 7)
        returns integer
        language plpgsql
        set search_path = ''
        as $body$
        declare
            v_count integer;
        begin
            -- Deletes the rows only; their stored objects are left for `douyin-worker gc`.
            delete from public.videos
             where created_at < now() - make_interval(days => p_age_days)
               and coalesce(viral_score, 0) < p_min_score
               and coalesce(last_increase_at, created_at) < now() - make_interval(days => p_days_no_increase);
            get diagnostics v_count = row_count;
            return v_count;
        end
        $body$
        $fn$;
    end if;
end
$do$;

-- Who may call what ----------------------------------------------------------------------------
-- Every function that reads or writes the queue is for the worker only. On Supabase, new
-- functions in `public` are executable by anon and authenticated through default privileges,
-- so revoking from PUBLIC alone is not enough: revoke from every API role, then grant to
-- service_role (the key the worker uses). Roles that do not exist (plain PostgreSQL) are
-- skipped. The tables get the privileges service_role needs when it exists.
do $$
declare
    fn   text;
    role text;
begin
    foreach fn in array array[
        'public.claim_download_jobs(text, integer, integer)',
        'public.heartbeat_download_jobs(text, jsonb, integer)',
        'public.complete_download_jobs(text, jsonb)',
        'public.fail_download_jobs(text, jsonb)',
        'public.release_download_jobs(text, jsonb)',
        'public.rescue_download_jobs(integer)',
        'public.report_download_progress(text, uuid, uuid, bigint, bigint)',
        'public.enqueue_download_job(uuid, text, text, jsonb, integer, integer, boolean)',
        'public.get_download_job(uuid)',
        'public.claim_download_job(text)',
        'public.get_worker_stats()',
        'public.douyin_worker_schema_version()',
        'public.ensure_videos_bucket()',
        'public.update_viral_metrics(uuid, numeric)',
        'public.cleanup_old_low_viral(integer, numeric, integer)'
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

    if exists (select 1 from pg_roles where rolname = 'service_role') then
        grant usage on schema public to service_role;
        grant select, insert, update, delete on public.videos, public.download_jobs,
              public.douyin_worker_migrations to service_role;
    end if;
end
$$;

insert into public.douyin_worker_migrations (version, name)
values (3, '0003_compat_and_grants.sql')
on conflict (version) do nothing;
