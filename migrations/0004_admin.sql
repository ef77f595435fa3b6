-- douyin-worker migration 0004: what operators and the download API ask of the queue.
--
-- Functions behind the admin commands (`stats`, `jobs`, `retry`, `gc`) and the UI's download
-- API, for every backend: the direct PostgreSQL backend calls them over its connection, the
-- Supabase backend through the REST API's RPC. Like the others they are executable by
-- service_role only. Idempotent: `create or replace` throughout.

-- One video's download state, as the download API shows it: the video row's download fields,
-- its active (pending or running) job, and its latest job: the active one if any, else the
-- most recently created. `latest_error_class` is that job's `last_error_class` (a pending job
-- being retried keeps the class of its last failure; a completed job has none).
do $$
begin
    -- An earlier version of this file returned fewer columns; a function's result type
    -- cannot be replaced in place.
    if pg_get_function_result(to_regprocedure('public.get_download_video(uuid)'))
           <> 'TABLE(id uuid, douyin_id text, title text, status text, attempts integer, last_error text, download_progress smallint, marked_for_deletion boolean, bucket text, object_key text, filesize bigint, mime_type text, active_job_id uuid, latest_job_status text, latest_error_class text, latest_job_id uuid, latest_job_created_at timestamp with time zone, latest_error_code text)'
    then
        drop function public.get_download_video(uuid);
    end if;
end
$$;

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
     where v.id = p_video_id
$$;

-- Jobs with their videos' download fields, newest first (the columns of get_download_job
-- and the video's Douyin id): up to p_limit of them, only those with status p_status when
-- given, or only the job p_job_id when given.
create or replace function public.list_download_jobs(
    p_status text    default null,
    p_limit  integer default 50,
    p_job_id uuid    default null)
returns table (
    id                      uuid,
    video_id                uuid,
    status                  text,
    worker_id               text,
    attempts                integer,
    max_attempts            integer,
    priority                integer,
    scheduled_at            timestamptz,
    lease_expires_at        timestamptz,
    last_error              text,
    last_error_code         text,
    last_error_class        text,
    progress_bytes          bigint,
    progress_total          bigint,
    created_at              timestamptz,
    finished_at             timestamptz,
    video_status            text,
    video_attempts          integer,
    video_last_error        text,
    video_next_attempt_at   timestamptz,
    video_download_progress smallint,
    video_in_progress_by    text,
    video_object_key        text,
    video_douyin_id         text)
language plpgsql stable
set search_path = ''
as $$
#variable_conflict use_column
begin
    if p_status is not null and p_status not in ('pending', 'running', 'completed', 'failed') then
        raise exception 'list_download_jobs: unknown status %: expected pending, running, completed or failed',
            quote_literal(p_status);
    end if;
    if p_limit is not null and p_limit < 0 then
        raise exception 'list_download_jobs: p_limit must not be negative (got %)', p_limit;
    end if;
    -- Two queries rather than `p_job_id is null or j.id = p_job_id`, so that the look-up of
    -- one job uses the primary key.
    if p_job_id is not null then
        return query
        select j.id, j.video_id, j.status, j.worker_id, j.attempts, j.max_attempts, j.priority,
               j.scheduled_at, j.lease_expires_at, j.last_error, j.last_error_code,
               j.last_error_class, j.progress_bytes, j.progress_total, j.created_at,
               j.finished_at, v.status, v.attempts, v.last_error, v.next_attempt_at,
               v.download_progress, v.in_progress_by, v.object_key, v.douyin_id
          from public.download_jobs j
          join public.videos v on v.id = j.video_id
         where j.id = p_job_id
           and (p_status is null or j.status = p_status);
        return;
    end if;
    return query
    select j.id, j.video_id, j.status, j.worker_id, j.attempts, j.max_attempts, j.priority,
           j.scheduled_at, j.lease_expires_at, j.last_error, j.last_error_code,
           j.last_error_class, j.progress_bytes, j.progress_total, j.created_at,
           j.finished_at, v.status, v.attempts, v.last_error, v.next_attempt_at,
           v.download_progress, v.in_progress_by, v.object_key, v.douyin_id
      from public.download_jobs j
      join public.videos v on v.id = j.video_id
     where p_status is null or j.status = p_status
     order by j.created_at desc, j.id desc
     limit coalesce(p_limit, 50);
end
$$;

-- Retries failed jobs: for each, a new pending job for its video (the failed row stays as
-- history), queued through enqueue_download_job with the failed job's payload plus
-- {"retry": true, "retry_of": <job id>}, priority and max_attempts; enqueue_download_job's
-- insert notifies the workers. Never a second active job for a video.
-- p_job_ids: these jobs, in this order. p_all_failed: every failed job that is the latest job
-- of its video, whose video is neither stored nor marked for deletion, oldest first.
-- Outcome per job:
--   queued               a new job (new_job_id)
--   duplicate            the video already has an active job (new_job_id is that job)
--   not_failed           the job is pending, running or completed
--   marked_for_deletion  the video is marked for deletion
--   superseded           the video was stored since, or has a newer job
--   not_found            no such job
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

-- The queue at a glance: the get_worker_stats() figures, the pending jobs due now, how long
-- the oldest of them has waited since it became due (seconds; null when none is due), and
-- the running jobs per worker, busiest first ([{"worker_id", "running"}, ...]).
create or replace function public.get_download_queue_overview()
returns table (
    total_jobs         bigint,
    pending_jobs       bigint,
    running_jobs       bigint,
    completed_jobs     bigint,
    failed_jobs        bigint,
    active_workers     bigint,
    due_jobs           bigint,
    oldest_due_seconds double precision,
    workers            jsonb)
language sql stable
set search_path = ''
as $$
    select s.total_jobs, s.pending_jobs, s.running_jobs, s.completed_jobs, s.failed_jobs,
           s.active_workers, d.due_jobs, d.oldest_due_seconds, w.workers
      from public.get_worker_stats() s
     cross join (
           select count(*) as due_jobs,
                  extract(epoch from now() - min(j.scheduled_at))::double precision
                      as oldest_due_seconds
             from public.download_jobs j
            where j.status = 'pending' and j.scheduled_at <= now()) d
     cross join (
           select coalesce(jsonb_agg(jsonb_build_object('worker_id', x.worker_id,
                                                        'running', x.running)
                                     order by x.running desc, x.worker_id), '[]'::jsonb)
                      as workers
             from (select coalesce(j.worker_id, '(unknown)') as worker_id, count(*) as running
                     from public.download_jobs j
                    where j.status = 'running'
                    group by 1) x) w
$$;

-- The object keys that videos still want in bucket p_bucket: every distinct videos.object_key
-- of a video in that bucket (or with no bucket recorded) that is not marked for deletion,
-- whatever its status. `douyin-worker gc` deletes stored objects that are not in this list.
-- In key order (byte order); p_after and p_limit page through it (keyset pagination: call
-- again with the last key until an empty page comes back, which stays correct when the REST
-- API caps the rows of an answer). A null p_bucket means every bucket.
create or replace function public.list_wanted_object_keys(
    p_bucket text,
    p_after  text    default null,
    p_limit  integer default null)
returns table (object_key text)
language sql stable
set search_path = ''
as $$
    select k.object_key
      from (select distinct v.object_key collate "C" as object_key
              from public.videos v
             where v.object_key is not null
               and not v.marked_for_deletion
               and (p_bucket is null or v.bucket is null or v.bucket = p_bucket)) k
     where p_after is null or k.object_key > (p_after collate "C")
     order by k.object_key
     limit p_limit
$$;

-- The schema version this file set leaves; workers check it at start-up (also over REST).
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 4 $$;

-- Who may call what: service_role only, as in 0003_compat_and_grants.sql.
do $$
declare
    fn   text;
    role text;
begin
    foreach fn in array array[
        'public.get_download_video(uuid)',
        'public.list_download_jobs(text, integer, uuid)',
        'public.retry_download_jobs(uuid[], boolean)',
        'public.get_download_queue_overview()',
        'public.list_wanted_object_keys(text, text, integer)',
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

-- Room on each page for the worker's updates of a video row (status, progress, lease
-- holder: no indexed column) to stay on the page as heap-only tuples, without new index
-- entries. Applies to pages written from now on.
alter table public.videos set (fillfactor = 85);

insert into public.douyin_worker_migrations (version, name)
values (4, '0004_admin.sql')
on conflict (version) do nothing;
