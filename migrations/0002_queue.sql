-- douyin-worker migration 0002: the job life cycle as SQL functions.
--
-- One set of functions serves every backend: the direct PostgreSQL backend calls them over
-- its own connection, and the Supabase backend calls the same functions through the REST
-- API's RPC (`POST /rest/v1/rpc/<name>` with named arguments). Batch arguments are `jsonb`
-- arrays so that they travel over RPC unchanged.
--
-- Life cycle of a download_jobs row:
--   pending --claim--> running --complete--> completed
--                         |----fail (transient, attempts left)--> pending (scheduled later)
--                         |----fail (permanent / out of attempts)--> failed
--                         |----release (worker shutting down)--> pending (due now)
--                         '----rescue (lease expired)--> pending, or failed when out of attempts
-- A running job carries a lease: `lease_id` (a fencing token handed out by each claim) and
-- `lease_expires_at` (renewed by heartbeats). complete, fail, release and progress take the
-- lease id and change nothing when it no longer matches: a worker whose lease expired and
-- was taken over learns that from the `lease_lost` outcome.
--
-- Idempotent: every function is created with `create or replace`, every trigger is dropped
-- and created again.

-- Default priority of a new job, from the video's ranking: surging videos first, then by
-- viral momentum, so the most viral videos download first.
create or replace function public.download_job_default_priority(p_video_id uuid)
returns integer
language sql stable
set search_path = ''
as $$
    select coalesce(
        (select (case when coalesce(v.surge_detected, false) then 1000000 else 0 end)
                + greatest(least(round(coalesce(v.viral_momentum, 0)), 999999), 0)::integer
           from public.videos v
          where v.id = p_video_id),
        0)
$$;

-- Row defaults that a column default cannot express, for writers that are not this worker
-- (the crawler, the download API, the README's manual retry). Fires only when needed, so the
-- worker's own hot-path updates never run it.
create or replace function public.download_jobs_fill_defaults()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    if new.scheduled_at is null then
        new.scheduled_at := now();
    end if;
    if tg_op = 'INSERT' then
        if new.priority is null then
            new.priority := public.download_job_default_priority(new.video_id);
        end if;
    elsif old.status = 'failed' and new.status = 'pending' then
        -- A failed job put back by hand (`update ... set status = 'pending'`, as the old
        -- README advises) gets a full set of attempts again.
        new.attempts := 0;
        new.lease_id := null;
        new.lease_expires_at := null;
        new.worker_id := null;
    end if;
    return new;
end
$$;

drop trigger if exists download_jobs_fill_defaults_insert on public.download_jobs;
create trigger download_jobs_fill_defaults_insert
    before insert on public.download_jobs
    for each row
    when (new.scheduled_at is null or new.priority is null)
    execute function public.download_jobs_fill_defaults();

drop trigger if exists download_jobs_fill_defaults_update on public.download_jobs;
create trigger download_jobs_fill_defaults_update
    before update on public.download_jobs
    for each row
    when (new.scheduled_at is null or (old.status = 'failed' and new.status = 'pending'))
    execute function public.download_jobs_fill_defaults();

-- Wake listening workers when a job becomes claimable (inserted, rescheduled, released,
-- rescued, retried). The payload is the due time in unix milliseconds, so a worker can wait
-- exactly until a job scheduled for later is due. Identical notifications in one transaction
-- are delivered once.
create or replace function public.download_jobs_notify()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    perform pg_notify(
        'douyin_worker_jobs',
        floor(extract(epoch from new.scheduled_at) * 1000)::bigint::text);
    return null;
end
$$;

drop trigger if exists download_jobs_notify_insert on public.download_jobs;
create trigger download_jobs_notify_insert
    after insert on public.download_jobs
    for each row
    when (new.status = 'pending')
    execute function public.download_jobs_notify();

drop trigger if exists download_jobs_notify_update on public.download_jobs;
create trigger download_jobs_notify_update
    after update on public.download_jobs
    for each row
    when (new.status = 'pending'
          and (old.status is distinct from new.status
               or old.scheduled_at is distinct from new.scheduled_at))
    execute function public.download_jobs_notify();

-- claim --------------------------------------------------------------------------------------
-- Claims up to p_limit due jobs in claim order (priority, due time, age), skipping rows that
-- other workers are claiming at the same moment, and hands each a fresh lease. The video row
-- follows: `downloading`, with `download_started_at` and `in_progress_by`. Returns what the
-- pipeline needs from both rows, so no second round trip is needed.
create or replace function public.claim_download_jobs(
    p_worker_id     text,
    p_limit         integer default 1,
    p_lease_seconds integer default 300)
returns table (
    id                  uuid,
    video_id            uuid,
    lease_id            uuid,
    lease_expires_at    timestamptz,
    attempts            integer,
    max_attempts        integer,
    priority            integer,
    payload             jsonb,
    scheduled_at        timestamptz,
    created_at          timestamptz,
    douyin_id           text,
    video_url           text,
    title               text,
    thumbnail_url       text,
    video_url_direct    text,
    video_url_meta      jsonb,
    marked_for_deletion boolean)
language plpgsql
set search_path = ''
-- One plan for every call: a custom plan per call costs more than the claim itself. The
-- `= any (array(...))` look-ups keep the generic plan on indexes whatever p_limit is.
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
    if p_worker_id is null or length(p_worker_id) = 0 then
        raise exception 'claim_download_jobs: p_worker_id must not be empty';
    end if;
    if p_limit is null or p_limit < 1 then
        return;
    end if;
    return query
    with picked as (
        select j.id
          from public.download_jobs j
         where j.status = 'pending' and j.scheduled_at <= now()
         order by j.priority desc, j.scheduled_at, j.created_at
         limit p_limit
           for update skip locked
    ), claimed as (
        update public.download_jobs j
           set status           = 'running',
               worker_id        = p_worker_id,
               started_at       = now(),
               finished_at      = null,
               attempts         = j.attempts + 1,
               lease_id         = gen_random_uuid(),
               lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 1)),
               heartbeat_at     = now(),
               progress_bytes   = null,
               progress_total   = null,
               progress_at      = null,
               updated_at       = now()
         where j.id = any (array(select p.id from picked p))
        returning j.id, j.video_id, j.lease_id, j.lease_expires_at, j.attempts, j.max_attempts,
                  j.priority, j.payload, j.scheduled_at, j.created_at
    ), touched as (
        update public.videos v
           set status              = 'downloading',
               download_started_at = now(),
               in_progress_by      = p_worker_id,
               in_progress_at      = now(),
               attempts            = (select c.attempts from claimed c where c.video_id = v.id),
               last_attempt_at     = now(),
               download_progress   = 0,
               next_attempt_at     = null,
               updated_at          = now()
         where v.id = any (array(select c.video_id from claimed c))
        returning v.id, v.douyin_id, v.video_url, v.title, v.thumbnail_url, v.video_url_direct,
                  v.video_url_meta, v.marked_for_deletion
    )
    select c.id, c.video_id, c.lease_id, c.lease_expires_at, c.attempts, c.max_attempts,
           c.priority, c.payload, c.scheduled_at, c.created_at,
           t.douyin_id, t.video_url, t.title, t.thumbnail_url, t.video_url_direct,
           t.video_url_meta, t.marked_for_deletion
      from claimed c
      join touched t on t.id = c.video_id;
end
$$;

-- heartbeat ----------------------------------------------------------------------------------
-- Renews the leases a worker still holds. p_leases: [{"job_id": uuid, "lease_id": uuid}, ...].
-- Returns the renewed leases; a lease missing from the result was lost (rescued and maybe
-- claimed by another worker), and the worker should stop working on that job.
create or replace function public.heartbeat_download_jobs(
    p_worker_id     text,
    p_leases        jsonb,
    p_lease_seconds integer default 300)
returns table (job_id uuid, lease_id uuid, lease_expires_at timestamptz)
language sql
set search_path = ''
as $$
    update public.download_jobs j
       set lease_expires_at = now() + make_interval(secs => greatest(p_lease_seconds, 1)),
           heartbeat_at     = now()
      from jsonb_to_recordset(coalesce(p_leases, '[]'::jsonb)) as x(job_id uuid, lease_id uuid)
     where j.id = x.job_id
       and j.lease_id = x.lease_id
       and j.worker_id = p_worker_id
       and j.status = 'running'
    returning j.id, j.lease_id, j.lease_expires_at
$$;

-- complete -----------------------------------------------------------------------------------
-- Records finished jobs and points their videos at the stored objects, in one transaction.
-- p_results: [{"job_id", "lease_id", "bucket", "object_key", "storage_etag", "filesize",
--              "mime_type", "storage_provider", "storage_metadata",
--              optional "douyin_id", "title", "thumbnail_url", "video_url_direct",
--              "video_url_meta"}, ...]
-- Title and thumbnail are filled only when the video row has none.
-- Outcome per job: `completed`, or `lease_lost` when the lease no longer matches.
create or replace function public.complete_download_jobs(
    p_worker_id text,
    p_results   jsonb)
returns table (job_id uuid, outcome text)
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
#variable_conflict use_column
begin
    if exists (
        select 1
          from jsonb_to_recordset(coalesce(p_results, '[]'::jsonb))
               as x(bucket text, object_key text)
         where coalesce(x.bucket, '') = '' or coalesce(x.object_key, '') = '') then
        raise exception 'complete_download_jobs: every result needs a bucket and an object_key';
    end if;

    return query
    with r as (
        select *
          from jsonb_to_recordset(coalesce(p_results, '[]'::jsonb)) as x(
               job_id uuid, lease_id uuid, bucket text, object_key text, storage_etag text,
               filesize bigint, mime_type text, storage_provider text, storage_metadata jsonb,
               douyin_id text, title text, thumbnail_url text, video_url_direct text,
               video_url_meta jsonb)
    ), done as (
        update public.download_jobs j
           set status           = 'completed',
               finished_at      = now(),
               lease_id         = null,
               lease_expires_at = null,
               last_error       = null,
               last_error_code  = null,
               last_error_class = null,
               progress_bytes   = coalesce(r.filesize, j.progress_bytes),
               progress_total   = coalesce(r.filesize, j.progress_total),
               progress_at      = now(),
               updated_at       = now()
          from r
         where j.id = r.job_id
           and j.lease_id = r.lease_id
           and j.worker_id = p_worker_id
           and j.status = 'running'
        returning j.id, j.video_id
    ), videos_done as (
        update public.videos v
           set status              = 'ready',
               bucket              = r.bucket,
               object_key          = r.object_key,
               storage_etag        = r.storage_etag,
               filesize            = r.filesize,
               mime_type           = r.mime_type,
               storage_provider    = r.storage_provider,
               storage_metadata    = r.storage_metadata,
               downloaded_at       = now(),
               in_progress_by      = null,
               in_progress_at      = null,
               last_error          = null,
               download_progress   = 100,
               next_attempt_at     = null,
               douyin_id           = coalesce(nullif(v.douyin_id, ''), r.douyin_id),
               title               = coalesce(nullif(v.title, ''), r.title),
               thumbnail_url       = coalesce(nullif(v.thumbnail_url, ''), r.thumbnail_url),
               video_url_direct    = coalesce(r.video_url_direct, v.video_url_direct),
               video_url_meta      = coalesce(r.video_url_meta, v.video_url_meta),
               updated_at          = now()
          from done d
          join r on r.job_id = d.id
         where v.id = d.video_id
        returning v.id
    )
    select r.job_id,
           case when d.id is null then 'lease_lost' else 'completed' end
      from r
      left join done d on d.id = r.job_id;
end
$$;

-- fail ---------------------------------------------------------------------------------------
-- Records failed attempts. p_failures: [{"job_id", "lease_id", "error", "error_code",
-- "error_class", "retry_in_seconds"}, ...]. error_class is `transient`, `permanent` or
-- `drift`. A transient or drift failure with attempts left and a retry_in_seconds goes back
-- to pending, due after that delay (the worker computes the backoff with jitter); anything
-- else fails the job for good. The video row shows the attempt count, the last error and
-- the next try. Outcome per job: `retry_scheduled`, `failed` or `lease_lost`.
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
               x.retry_in_seconds
          from jsonb_to_recordset(coalesce(p_failures, '[]'::jsonb)) as x(
               job_id uuid, lease_id uuid, error text, error_code text, error_class text,
               retry_in_seconds double precision)
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
        returning j.id, j.video_id, j.status, j.scheduled_at, j.attempts, j.last_error
    ), videos_updated as (
        update public.videos v
           set status            = case when u.status = 'failed' then 'failed' else 'pending' end,
               last_error        = u.last_error,
               attempts          = u.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = null,
               next_attempt_at   = case when u.status = 'failed' then null else u.scheduled_at end,
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
-- Puts jobs back in the queue, due now, without counting the attempt: a worker that shuts
-- down calls this for the jobs it could not finish. p_leases: [{"job_id", "lease_id"}, ...].
-- Outcome per job: `released` or `lease_lost`.
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
           set status            = 'pending',
               attempts          = r.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = null,
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
-- Any worker may call this, e.g. at each poll: running jobs whose lease expired (their worker
-- crashed, was killed, or lost its network) go back to pending, due now, or fail when they
-- are out of attempts. Rows another worker is rescuing at the same moment are skipped.
-- Outcome per job: `requeued` or `failed`; worker_id is the worker that held the lease.
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
           set status            = case when r.status = 'failed' then 'failed' else 'pending' end,
               last_error        = r.last_error,
               attempts          = r.attempts,
               in_progress_by    = null,
               in_progress_at    = null,
               download_progress = null,
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

-- progress -----------------------------------------------------------------------------------
-- Bytes done and total of a running job (total may be null when unknown). The video row gets
-- a percentage for the UI, held below 100 until the job completes. Returns false when the
-- lease no longer matches.
create or replace function public.report_download_progress(
    p_worker_id   text,
    p_job_id      uuid,
    p_lease_id    uuid,
    p_bytes_done  bigint,
    p_bytes_total bigint default null)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
    v_video_id uuid;
begin
    update public.download_jobs j
       set progress_bytes = greatest(p_bytes_done, 0),
           progress_total = p_bytes_total,
           progress_at    = now()
     where j.id = p_job_id
       and j.lease_id = p_lease_id
       and j.worker_id = p_worker_id
       and j.status = 'running'
    returning j.video_id into v_video_id;
    if v_video_id is null then
        return false;
    end if;
    if p_bytes_total is not null and p_bytes_total > 0 then
        update public.videos v
           set download_progress = least(greatest(floor(p_bytes_done * 100.0 / p_bytes_total), 0), 99)::smallint
         where v.id = v_video_id;
    end if;
    return true;
end
$$;

-- enqueue ------------------------------------------------------------------------------------
-- Queues a download for a video given by id, or by Douyin link / id (creating the videos row
-- when no row has that Douyin id or link yet). At most one active job per video: enqueueing
-- a video that already has one reports it instead of adding a second. A video that is already
-- stored is reported as `ready` unless p_force; one marked for deletion is never queued.
-- Outcome: `queued`, `duplicate`, `ready`, `marked_for_deletion` or `not_found`.
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
        -- Serialise enqueues of the same video so two callers cannot both create its row.
        perform pg_advisory_xact_lock(hashtextextended('douyin-worker:' || coalesce(v_id, v_url), 0));
        if v_id is not null then
            select * into v_video from public.videos v
             where v.douyin_id = v_id
             order by v.created_at limit 1;
        end if;
        if v_video.id is null and v_url is not null then
            select * into v_video from public.videos v
             where v.video_url = v_url
             order by v.created_at limit 1;
        end if;
        if v_video.id is null then
            insert into public.videos (douyin_id, video_url, status)
            values (v_id, coalesce(v_url, 'https://www.douyin.com/video/' || v_id), 'queued')
            returning * into v_video;
        end if;
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
     where v.id = v_video.id and v.status not in ('downloading', 'running');

    return query select v_job.id, v_video.id, 'queued'::text, v_job.status;
end
$$;

-- inspect ------------------------------------------------------------------------------------
-- One job with its video's download fields, for the CLI and for tests over any backend.
create or replace function public.get_download_job(p_job_id uuid)
returns table (
    id                uuid,
    video_id          uuid,
    status            text,
    worker_id         text,
    attempts          integer,
    max_attempts      integer,
    priority          integer,
    scheduled_at      timestamptz,
    lease_expires_at  timestamptz,
    last_error        text,
    last_error_code   text,
    last_error_class  text,
    progress_bytes    bigint,
    progress_total    bigint,
    created_at        timestamptz,
    finished_at       timestamptz,
    video_status      text,
    video_attempts    integer,
    video_last_error  text,
    video_next_attempt_at timestamptz,
    video_download_progress smallint,
    video_in_progress_by text,
    video_object_key  text)
language sql stable
set search_path = ''
as $$
    select j.id, j.video_id, j.status, j.worker_id, j.attempts, j.max_attempts, j.priority,
           j.scheduled_at, j.lease_expires_at, j.last_error, j.last_error_code,
           j.last_error_class, j.progress_bytes, j.progress_total, j.created_at, j.finished_at,
           v.status, v.attempts, v.last_error, v.next_attempt_at, v.download_progress,
           v.in_progress_by, v.object_key
      from public.download_jobs j
      join public.videos v on v.id = j.video_id
     where j.id = p_job_id
$$;

insert into public.douyin_worker_migrations (version, name)
values (2, '0002_queue.sql')
on conflict (version) do nothing;
