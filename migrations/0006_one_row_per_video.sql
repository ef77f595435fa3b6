-- douyin-worker migration 0006: a stored video stays available, and one row per video.
--
-- * A job that fails, is released or is rescued on a video that has a stored object
--   (`object_key` set: a forced re-download, or a retry of a video whose file went missing)
--   leaves the video `ready`: the file is still there, and the job row keeps the failure.
-- * A failed attempt may ask to forget the cached direct URL (`forget_direct_url`: the URL
--   whose file failed the size check or validation), so the next attempt extracts afresh.
-- * `videos.merged_into`: a row queued by a short link whose Douyin id turned out to be
--   another row's points at that row (status `merged`). `learn_douyin_id` records what a
--   worker's extraction learnt and merges; enqueue, the download API's look-up and retry
--   follow the pointer, so duplicates are reported, not doubled.
--
-- Idempotent: `add column if not exists`, `create or replace` throughout.

alter table public.videos
    add column if not exists merged_into uuid references public.videos (id) on delete set null;

-- fail ---------------------------------------------------------------------------------------
-- As in 0002_queue.sql, plus: p_failures items may carry "forget_direct_url" (the cached
-- direct URL the attempt used, whose file failed the size check or validation): the video
-- row's cache is cleared when it still holds that URL. A video with a stored object stays
-- `ready` (download progress 100, its own last_error untouched); the job row records the
-- failure.
create or replace function public.fail_download_jobs(
    p_worker_id text,
    p_failures  jsonb)
returns table (job_id uuid, outcome text, scheduled_at timestamptz)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
    return query
    with f as (
        select x.job_id, x.lease_id,
               coalesce(nullif(x.error, ''), 'unknown error') as error,
               x.error_code,
               coalesce(x.error_class, 'transient') as error_class,
               x.retry_in_seconds,
               nullif(x.forget_direct_url, '') as forget_direct_url
          from jsonb_to_recordset(coalesce(p_failures, '[]'::jsonb)) as x(
               job_id uuid, lease_id uuid, error text, error_code text, error_class text,
               retry_in_seconds double precision, forget_direct_url text)
    ), decided as (
        select f.*, j.video_id,
               (f.error_class = 'permanent'
                or f.retry_in_seconds is null
                or j.attempts >= j.max_attempts) as final
          from f
          join public.download_jobs j
            on j.id = f.job_id
           and j.lease_id = f.lease_id
           and j.worker_id = p_worker_id
           and j.status = 'running'
    ), updated as (
        update public.download_jobs j
           set status           = case when d.final then 'failed' else 'pending' end,
               worker_id        = case when d.final then j.worker_id else null end,
               finished_at      = case when d.final then now() else null end,
               scheduled_at     = case when d.final then j.scheduled_at
                                       else now() + make_interval(secs => greatest(d.retry_in_seconds, 0))
                                  end,
               lease_id         = null,
               lease_expires_at = null,
               last_error       = d.error,
               last_error_code  = d.error_code,
               last_error_class = d.error_class,
               updated_at       = now()
          from decided d
         where j.id = d.job_id
           and j.lease_id = d.lease_id
           and j.worker_id = p_worker_id
           and j.status = 'running'
        returning j.id, j.video_id, j.status, j.scheduled_at, j.attempts, j.last_error,
                  d.forget_direct_url
    ), videos_updated as (
        update public.videos v
           set status            = case when coalesce(v.object_key, '') <> '' then 'ready'
                                        when u.status = 'failed' then 'failed'
                                        else 'pending' end,
               last_error        = case when coalesce(v.object_key, '') <> '' then v.last_error
                                        else u.last_error end,
               attempts          = u.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = case when coalesce(v.object_key, '') <> '' then 100 end,
               next_attempt_at   = case when u.status = 'failed' then null else u.scheduled_at end,
               video_url_direct  = case when v.video_url_direct = u.forget_direct_url then null
                                        else v.video_url_direct end,
               video_url_meta    = case when v.video_url_direct = u.forget_direct_url then null
                                        else v.video_url_meta end,
               updated_at        = now()
          from updated u
         where v.id = u.video_id
        returning v.id
    )
    select f.job_id,
           case when u.id is null then 'lease_lost'
                when u.status = 'failed' then 'failed'
                else 'retry_scheduled' end,
           case when u.status = 'pending' then u.scheduled_at end
      from f
      left join updated u on u.id = f.job_id;
end
$$;

-- release ------------------------------------------------------------------------------------
-- As in 0002_queue.sql; a video with a stored object goes back to `ready`.
create or replace function public.release_download_jobs(
    p_worker_id text,
    p_leases    jsonb)
returns table (job_id uuid, outcome text)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
    return query
    with l as (
        select x.job_id, x.lease_id
          from jsonb_to_recordset(coalesce(p_leases, '[]'::jsonb)) as x(job_id uuid, lease_id uuid)
    ), released as (
        update public.download_jobs j
           set status           = 'pending',
               worker_id        = null,
               scheduled_at     = now(),
               attempts         = greatest(j.attempts - 1, 0),
               lease_id         = null,
               lease_expires_at = null,
               progress_bytes   = null,
               progress_total   = null,
               updated_at       = now()
          from l
         where j.id = l.job_id
           and j.lease_id = l.lease_id
           and j.worker_id = p_worker_id
           and j.status = 'running'
        returning j.id, j.video_id, j.attempts
    ), videos_released as (
        update public.videos v
           set status            = case when coalesce(v.object_key, '') <> '' then 'ready'
                                        else 'pending' end,
               attempts          = r.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = case when coalesce(v.object_key, '') <> '' then 100 end,
               next_attempt_at   = null,
               updated_at        = now()
          from released r
         where v.id = r.video_id
        returning v.id
    )
    select l.job_id, case when r.id is null then 'lease_lost' else 'released' end
      from l
      left join released r on r.id = l.job_id;
end
$$;

-- rescue -------------------------------------------------------------------------------------
-- As in 0002_queue.sql; a video with a stored object goes back to `ready`.
create or replace function public.rescue_download_jobs(p_limit integer default 500)
returns table (job_id uuid, outcome text, worker_id text, video_id uuid, douyin_id text)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
    return query
    with expired as (
        select j.id, j.worker_id
          from public.download_jobs j
         where j.status = 'running' and j.lease_expires_at < now()
         order by j.lease_expires_at
         limit greatest(coalesce(p_limit, 500), 1)
           for update skip locked
    ), rescued as (
        update public.download_jobs j
           set status           = case when j.attempts >= j.max_attempts then 'failed' else 'pending' end,
               worker_id        = case when j.attempts >= j.max_attempts then j.worker_id end,
               finished_at      = case when j.attempts >= j.max_attempts then now() end,
               scheduled_at     = now(),
               lease_id         = null,
               lease_expires_at = null,
               last_error       = 'lease expired: worker ' || coalesce(j.worker_id, '?')
                                  || ' stopped renewing it during attempt ' || j.attempts
                                  || ' of ' || j.max_attempts,
               last_error_code  = 'lease-expired',
               last_error_class = 'transient',
               updated_at       = now()
          from expired e
         where j.id = e.id
        returning j.id, j.video_id, j.status, j.attempts, j.last_error
    ), videos_rescued as (
        update public.videos v
           set status            = case when coalesce(v.object_key, '') <> '' then 'ready'
                                        when r.status = 'failed' then 'failed'
                                        else 'pending' end,
               last_error        = case when coalesce(v.object_key, '') <> '' then v.last_error
                                        else r.last_error end,
               attempts          = r.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = case when coalesce(v.object_key, '') <> '' then 100 end,
               updated_at        = now()
          from rescued r
         where v.id = r.video_id
        returning v.id, v.douyin_id
    )
    select r.id,
           case when r.status = 'failed' then 'failed' else 'requeued' end,
           e.worker_id,
           r.video_id,
           vr.douyin_id
      from rescued r
      join expired e on e.id = r.id
      left join videos_rescued vr on vr.id = r.video_id;
end
$$;

-- enqueue ------------------------------------------------------------------------------------
-- As in 0002_queue.sql, plus: a row merged into another (`merged_into`) stands for that
-- other row, whichever way it was found (video id, Douyin id or link); and a row found by
-- its link that has no Douyin id yet learns the one given (the enqueue command resolves
-- short links first).
create or replace function public.enqueue_download_job(
    p_video_id     uuid    default null,
    p_url          text    default null,
    p_douyin_id    text    default null,
    p_payload      jsonb   default null,
    p_priority     integer default null,
    p_max_attempts integer default null,
    p_force        boolean default false)
returns table (job_id uuid, video_id uuid, outcome text, job_status text)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    v_video  public.videos%rowtype;
    v_id     text := nullif(btrim(p_douyin_id), '');
    v_url    text := nullif(btrim(p_url), '');
    v_job    public.download_jobs%rowtype;
begin
    if p_video_id is null and v_url is null and v_id is null then
        raise exception 'enqueue_download_job: give p_video_id, p_url or p_douyin_id';
    end if;

    if p_video_id is not null then
        select * into v_video from public.videos v where v.id = p_video_id;
        if not found then
            return query select null::uuid, p_video_id, 'not_found'::text, null::text;
            return;
        end if;
    else
        -- A Douyin id from the common link forms; short links keep only the URL until the
        -- worker resolves them.
        if v_id is null and v_url ~ '^\s*[0-9]{8,25}\s*$' then
            v_id := btrim(v_url);
        end if;
        if v_id is null then
            v_id := substring(v_url from '(?:/(?:video|note|slides)/|[?&](?:modal_id|vid)=)([0-9]{8,25})');
        end if;
        -- Serialise enqueues of the same video so two callers cannot both create its row
        -- (learn_douyin_id takes the same lock).
        perform pg_advisory_xact_lock(hashtextextended('douyin-worker:' || coalesce(v_id, v_url), 0));
        if v_id is not null then
            select * into v_video from public.videos v
             where v.douyin_id = v_id and v.merged_into is null
             order by v.created_at, v.id limit 1;
        end if;
        if v_video.id is null and v_url is not null then
            select * into v_video from public.videos v
             where v.video_url = v_url
             order by v.merged_into is null desc, v.created_at, v.id limit 1;
            if v_video.id is not null and v_id is not null and v_video.merged_into is null
               and coalesce(v_video.douyin_id, '') = '' then
                update public.videos v set douyin_id = v_id, updated_at = now()
                 where v.id = v_video.id
                returning * into v_video;
            end if;
        end if;
        if v_video.id is null then
            insert into public.videos (douyin_id, video_url, status)
            values (v_id, coalesce(v_url, 'https://www.douyin.com/video/' || v_id), 'queued')
            returning * into v_video;
        end if;
    end if;

    -- A merged row stands for the row it was merged into.
    if v_video.merged_into is not null then
        select * into v_video from public.videos v where v.id = v_video.merged_into;
    end if;

    if v_video.marked_for_deletion then
        return query select null::uuid, v_video.id, 'marked_for_deletion'::text, null::text;
        return;
    end if;

    select * into v_job from public.download_jobs j
     where j.video_id = v_video.id and j.status in ('pending', 'running')
     limit 1;
    if found then
        return query select v_job.id, v_video.id, 'duplicate'::text, v_job.status;
        return;
    end if;

    if not coalesce(p_force, false)
       and v_video.status in ('ready', 'uploaded', 'processed')
       and v_video.object_key is not null then
        return query select null::uuid, v_video.id, 'ready'::text, null::text;
        return;
    end if;

    insert into public.download_jobs (video_id, status, payload, priority, max_attempts)
    values (v_video.id, 'pending', p_payload, p_priority, coalesce(p_max_attempts, 5))
    on conflict (video_id) where status in ('pending', 'running') do nothing
    returning * into v_job;
    if v_job.id is null then
        -- Lost a race with another enqueue of the same video.
        select * into v_job from public.download_jobs j
         where j.video_id = v_video.id and j.status in ('pending', 'running')
         limit 1;
        return query select v_job.id, v_video.id, 'duplicate'::text, v_job.status;
        return;
    end if;

    update public.videos v
       set status = 'queued', last_error = null, next_attempt_at = null, updated_at = now()
     where v.id = v_video.id and v.status not in ('downloading', 'running')
       and not (v.status in ('ready', 'uploaded', 'processed') and coalesce(v.object_key, '') <> '');

    return query select v_job.id, v_video.id, 'queued'::text, v_job.status;
end
$$;

-- learn --------------------------------------------------------------------------------------
-- A worker's extraction learnt the Douyin id of a running job's video. p_job_id and
-- p_lease_id must be the caller's lease (else `lease_lost`). Outcome:
--   kept    the video row had a Douyin id already, or no other row has this one: it now
--           has it (video_id: the job's video)
--   moved   another row (the oldest not merged) has this Douyin id, with no active job and
--           no stored object: the job's row is merged into it (`merged_into`, status
--           `merged`) and the job carries on for that row (video_id: that row)
--   merged  the same, but that row is stored, marked for deletion or has a job of its own:
--           the job ends `completed` with last_error_code `merged` and a note naming that row
--           in last_error; nothing more is downloaded (video_id: that row)
--   lease_lost
-- Serialised with enqueue_download_job by the same advisory lock, so of two rows that learn
-- the same id at once, one keeps it and the other is merged into it.
create or replace function public.learn_douyin_id(
    p_worker_id text,
    p_job_id    uuid,
    p_lease_id  uuid,
    p_douyin_id text)
returns table (outcome text, video_id uuid)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    v_id     text := nullif(btrim(p_douyin_id), '');
    v_job    public.download_jobs%rowtype;
    v_video  public.videos%rowtype;
    v_into   public.videos%rowtype;
    v_active uuid;
    v_reason text;
begin
    if v_id is null or v_id !~ '^[0-9]{8,25}$' then
        raise exception 'learn_douyin_id: p_douyin_id must be 8 to 25 digits (got %)',
            coalesce(quote_literal(p_douyin_id), 'null');
    end if;
    perform pg_advisory_xact_lock(hashtextextended('douyin-worker:' || v_id, 0));

    select * into v_job from public.download_jobs j
     where j.id = p_job_id and j.lease_id = p_lease_id and j.worker_id = p_worker_id
       and j.status = 'running'
       for update;
    if not found then
        return query select 'lease_lost'::text, null::uuid;
        return;
    end if;
    select * into v_video from public.videos v where v.id = v_job.video_id for update;
    if coalesce(v_video.douyin_id, '') <> '' then
        return query select 'kept'::text, v_video.id;
        return;
    end if;

    select * into v_into from public.videos v
     where v.douyin_id = v_id and v.id <> v_video.id and v.merged_into is null
     order by v.created_at, v.id limit 1
       for update;
    if v_into.id is null then
        update public.videos v set douyin_id = v_id, updated_at = now() where v.id = v_video.id;
        return query select 'kept'::text, v_video.id;
        return;
    end if;

    update public.videos v
       set merged_into       = v_into.id,
           douyin_id         = v_id,
           status            = 'merged',
           in_progress_by    = null,
           in_progress_at    = null,
           download_progress = null,
           next_attempt_at   = null,
           last_error        = null,
           updated_at        = now()
     where v.id = v_video.id;

    select a.id into v_active from public.download_jobs a
     where a.video_id = v_into.id and a.status in ('pending', 'running')
     limit 1;
    if v_into.marked_for_deletion then
        v_reason := 'it is marked for deletion';
    elsif v_active is not null then
        v_reason := 'its job ' || v_active || ' downloads it';
    elsif v_into.status in ('ready', 'uploaded', 'processed') and coalesce(v_into.object_key, '') <> '' then
        v_reason := 'it is already stored';
    else
        begin
            update public.download_jobs j
               set video_id = v_into.id, updated_at = now()
             where j.id = v_job.id;
        exception when unique_violation then
            -- An enqueue of that row got in first.
            v_reason := 'it has a job of its own';
        end;
    end if;

    if v_reason is null then
        update public.videos v
           set status              = 'downloading',
               download_started_at = now(),
               in_progress_by      = p_worker_id,
               in_progress_at      = now(),
               attempts            = v_job.attempts,
               last_attempt_at     = now(),
               download_progress   = 0,
               next_attempt_at     = null,
               updated_at          = now()
         where v.id = v_into.id;
        return query select 'moved'::text, v_into.id;
        return;
    end if;

    update public.download_jobs j
       set status           = 'completed',
           finished_at      = now(),
           lease_id         = null,
           lease_expires_at = null,
           last_error       = 'merged into video ' || v_into.id || ' (Douyin id ' || v_id
                              || '): ' || v_reason,
           last_error_code  = 'merged',
           last_error_class = null,
           updated_at       = now()
     where j.id = v_job.id;
    return query select 'merged'::text, v_into.id;
end
$$;

-- get_download_video -------------------------------------------------------------------------
-- As in 0004_admin.sql, but a merged row answers as the row it was merged into.
create or replace function public.get_download_video(p_video_id uuid)
returns table (
    id                  uuid,
    douyin_id           text,
    title               text,
    status              text,
    attempts            integer,
    last_error          text,
    download_progress   smallint,
    marked_for_deletion boolean,
    bucket              text,
    object_key          text,
    filesize            bigint,
    mime_type           text,
    active_job_id       uuid,
    latest_job_status   text,
    latest_error_class  text,
    latest_job_id       uuid,
    latest_job_created_at timestamptz,
    latest_error_code   text)
language sql stable
set search_path = ''
as $$
    select v.id, v.douyin_id, v.title, v.status, v.attempts, v.last_error,
           v.download_progress, v.marked_for_deletion, v.bucket, v.object_key, v.filesize,
           v.mime_type,
           (select a.id from public.download_jobs a
             where a.video_id = v.id and a.status in ('pending', 'running')
             limit 1),
           l.status, l.last_error_class, l.id, l.created_at, l.last_error_code
      from public.videos v
      left join lateral (
           select j.id, j.status, j.last_error_class, j.last_error_code, j.created_at
             from public.download_jobs j
            where j.video_id = v.id
            order by (j.status in ('pending', 'running')) desc, j.created_at desc, j.id desc
            limit 1) l on true
     where v.id = coalesce(
               (select m.merged_into from public.videos m where m.id = p_video_id),
               p_video_id)
$$;

-- retry --------------------------------------------------------------------------------------
-- As in 0004_admin.sql; `p_all_failed` leaves out rows merged into another (their row is
-- retried through enqueue_download_job, which follows the pointer, when asked by job id).
create or replace function public.retry_download_jobs(
    p_job_ids    uuid[]  default null,
    p_all_failed boolean default false)
returns table (job_id uuid, video_id uuid, new_job_id uuid, outcome text)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    v_ids     uuid[];
    v_id      uuid;
    v_job     public.download_jobs%rowtype;
    v_marked  boolean;
    v_active  uuid;
    v_new_id  uuid;
    v_outcome text;
begin
    if coalesce(p_all_failed, false) then
        if coalesce(cardinality(p_job_ids), 0) > 0 then
            raise exception 'retry_download_jobs: give p_job_ids or p_all_failed, not both';
        end if;
        select coalesce(array_agg(j.id order by j.created_at, j.id), '{}') into v_ids
          from public.download_jobs j
          join public.videos v on v.id = j.video_id
         where j.status = 'failed'
           and not v.marked_for_deletion
           and v.merged_into is null
           and not (v.status in ('ready', 'uploaded', 'processed') and v.object_key is not null)
           and not exists (
               select 1 from public.download_jobs n
                where n.video_id = j.video_id and n.id <> j.id
                  and (n.created_at > j.created_at or n.status in ('pending', 'running')));
    else
        v_ids := coalesce(p_job_ids, '{}');
    end if;

    foreach v_id in array v_ids loop
        select * into v_job from public.download_jobs j where j.id = v_id;
        if not found then
            return query select v_id, null::uuid, null::uuid, 'not_found'::text;
            continue;
        end if;
        if v_job.status <> 'failed' then
            return query select v_id, v_job.video_id, null::uuid, 'not_failed'::text;
            continue;
        end if;
        select v.marked_for_deletion into v_marked from public.videos v where v.id = v_job.video_id;
        if v_marked then
            return query select v_id, v_job.video_id, null::uuid, 'marked_for_deletion'::text;
            continue;
        end if;
        select a.id into v_active from public.download_jobs a
         where a.video_id = v_job.video_id and a.status in ('pending', 'running')
         limit 1;
        if v_active is not null then
            return query select v_id, v_job.video_id, v_active, 'duplicate'::text;
            continue;
        end if;
        if exists (select 1 from public.download_jobs n
                    where n.video_id = v_job.video_id and n.id <> v_id
                      and n.created_at > v_job.created_at) then
            return query select v_id, v_job.video_id, null::uuid, 'superseded'::text;
            continue;
        end if;
        select e.job_id, e.outcome into v_new_id, v_outcome
          from public.enqueue_download_job(
                   p_video_id     => v_job.video_id,
                   p_payload      => case when jsonb_typeof(v_job.payload) = 'object'
                                          then v_job.payload else '{}'::jsonb end
                                     || jsonb_build_object('retry', true, 'retry_of', v_id),
                   p_priority     => v_job.priority,
                   p_max_attempts => v_job.max_attempts) e;
        return query select v_id, v_job.video_id,
                            v_new_id,
                            case v_outcome when 'ready' then 'superseded' else v_outcome end;
    end loop;
end
$$;

-- The schema version this file set leaves; workers check it at start-up (also over REST).
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 6 $$;

-- Who may call what: service_role only, as in 0003_compat_and_grants.sql.
do $$
declare
    fn   text;
    role text;
begin
    foreach fn in array array[
        'public.learn_douyin_id(text, uuid, uuid, text)',
        'public.douyin_worker_schema_version()'
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
values (6, '0006_one_row_per_video.sql')
on conflict (version) do nothing;
