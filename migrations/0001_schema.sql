-- douyin-worker migration 0001: tables and columns.
--
-- Sets up `public.videos` and `public.download_jobs` on an empty database, or upgrades a
-- database that the old worker's migrations (001_add_download_fields.sql,
-- 002_ranking_and_cleanup.sql, 003_worker_functions.sql) already set up. Every statement is
-- idempotent: running this file twice changes nothing. It can be pasted into the Supabase SQL
-- editor as it is; `douyin-worker migrate` runs the same file.

create table if not exists public.douyin_worker_migrations (
    version    integer primary key,
    name       text not null,
    checksum   text,
    applied_at timestamptz not null default now()
);

-- videos: written by the crawler; the worker updates the download fields ----------------------
create table if not exists public.videos (
    id            uuid primary key default gen_random_uuid(),
    douyin_id     text,
    title         text,
    video_url     text,
    thumbnail_url text,
    stats         jsonb,
    created_at    timestamptz not null default now()
);

alter table public.videos
    -- cache of the direct media URL (the old worker read and wrote it)
    add column if not exists video_url_direct      text,
    add column if not exists video_url_meta        jsonb,
    -- download fields (old migration 001)
    add column if not exists status                text not null default 'new',
    add column if not exists attempts              integer not null default 0,
    add column if not exists last_attempt_at       timestamptz,
    add column if not exists last_error            text,
    add column if not exists download_started_at   timestamptz,
    add column if not exists downloaded_at         timestamptz,
    add column if not exists storage_provider      text,
    add column if not exists bucket                text,
    add column if not exists object_key            text,
    add column if not exists storage_etag          text,
    add column if not exists storage_metadata      jsonb,
    add column if not exists public_url_expires_at timestamptz,
    add column if not exists public_url_meta       jsonb,
    add column if not exists filesize              bigint,
    add column if not exists mime_type             text,
    add column if not exists created_by            uuid,
    add column if not exists updated_at            timestamptz default now(),
    add column if not exists updated_by            uuid,
    add column if not exists in_progress_by        text,
    add column if not exists in_progress_at        timestamptz,
    -- ranking fields (old migration 002)
    add column if not exists viral_score           numeric,
    add column if not exists viral_momentum        numeric,
    add column if not exists momentum_24h          numeric,
    add column if not exists momentum_7d           numeric,
    add column if not exists viral_score_history   jsonb,
    add column if not exists surge_detected        boolean,
    add column if not exists surge_factor          numeric,
    add column if not exists last_increase_at      timestamptz,
    add column if not exists last_surge_at         timestamptz,
    add column if not exists max_viral_score       numeric,
    add column if not exists marked_for_deletion   boolean not null default false,
    add column if not exists deleted_at            timestamptz,
    -- new: progress in percent (the download API already reads it) and the next retry time
    add column if not exists download_progress     smallint,
    add column if not exists next_attempt_at       timestamptz;

-- Enqueueing by Douyin id or by link looks the video up by either.
create index if not exists videos_douyin_id_idx on public.videos (douyin_id);
create index if not exists videos_video_url_idx on public.videos (video_url);

-- download_jobs -------------------------------------------------------------------------------
create table if not exists public.download_jobs (
    id           uuid primary key default gen_random_uuid(),
    video_id     uuid not null references public.videos (id) on delete cascade,
    status       text not null default 'pending',
    worker_id    text,
    scheduled_at timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz,
    attempts     integer not null default 0,
    last_error   text,
    payload      jsonb,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

alter table public.download_jobs
    -- claim order: priority (higher first), then due time, then age
    add column if not exists priority         integer,
    add column if not exists max_attempts     integer not null default 5,
    -- the lease of a running job: a fencing token and an expiry renewed by heartbeats
    add column if not exists lease_id         uuid,
    add column if not exists lease_expires_at timestamptz,
    add column if not exists heartbeat_at     timestamptz,
    -- machine-readable failure: a kebab-case code and its class (transient, permanent, drift)
    add column if not exists last_error_code  text,
    add column if not exists last_error_class text,
    -- download progress
    add column if not exists progress_bytes   bigint,
    add column if not exists progress_total   bigint,
    add column if not exists progress_at      timestamptz;

-- Backfill what the old worker left: jobs without a due time are due since they were created,
-- and jobs without a priority get the neutral one.
update public.download_jobs
   set scheduled_at = coalesce(created_at, now())
 where scheduled_at is null;
update public.download_jobs set priority = 0 where priority is null;
alter table public.download_jobs
    alter column scheduled_at set default now(),
    alter column priority set not null;

-- The old worker left `running` jobs behind when it crashed or stopped, with nothing to tell
-- whether anyone still works on them. Give them a lease that has already run for an hour
-- from their start, so the rescue puts them back in the queue (or fails them when out of
-- attempts) instead of leaving them `running` forever.
update public.download_jobs
   set lease_expires_at = coalesce(started_at, updated_at, created_at, now()) + interval '1 hour'
 where status = 'running' and lease_expires_at is null;

-- At most one pending or running job per video. The old download API's retry endpoint could
-- insert a second active job for a video; keep the most advanced one (running before pending,
-- then the oldest) and fail the others with a reason, before the unique index is created.
do $$
begin
    if to_regclass('public.download_jobs_one_active_per_video') is null then
        with ranked as (
            select id,
                   row_number() over (
                       partition by video_id
                       order by (status = 'running') desc, created_at, id
                   ) as rn
              from public.download_jobs
             where status in ('pending', 'running')
        )
        update public.download_jobs j
           set status           = 'failed',
               finished_at      = now(),
               updated_at       = now(),
               lease_id         = null,
               lease_expires_at = null,
               last_error       = 'superseded: another active job exists for this video',
               last_error_code  = 'duplicate-job',
               last_error_class = 'permanent'
          from ranked
         where ranked.id = j.id and ranked.rn > 1;
    end if;
end
$$;

create unique index if not exists download_jobs_one_active_per_video
    on public.download_jobs (video_id)
    where status in ('pending', 'running');

-- Claiming walks this index in claim order and stops after p_limit rows, so it stays fast
-- however many completed or failed rows the table holds.
create index if not exists download_jobs_claim_idx
    on public.download_jobs (priority desc, scheduled_at, created_at)
    where status = 'pending';

-- The rescue looks only at running jobs, oldest lease first.
create index if not exists download_jobs_lease_idx
    on public.download_jobs (lease_expires_at)
    where status = 'running';

-- Foreign-key cascades and per-video look-ups.
create index if not exists download_jobs_video_id_idx on public.download_jobs (video_id);

insert into public.douyin_worker_migrations (version, name)
values (1, '0001_schema.sql')
on conflict (version) do nothing;
