-- douyin-worker SQLite schema: the embedded default's queue.
--
-- The same tables, columns and indexes as the PostgreSQL migrations (0001_schema.sql; one
-- index more, on videos.video_url), in SQLite types, and the trigger behaviour of
-- 0002_queue.sql (row defaults, the manual retry). The life cycle itself is implemented in
-- `src/queue/sqlite.rs`; this file only holds the data.
--
-- Types: uuids are TEXT (hyphenated, lower case); timestamps are TEXT in ONE canonical form,
-- `%Y-%m-%dT%H:%M:%fZ` (UTC, milliseconds, e.g. `2025-01-31T08:00:00.000Z`), so that text
-- comparison orders them; jsonb is TEXT holding JSON; booleans are INTEGER 0/1; numeric is
-- REAL. Writers other than the worker must use the same forms: CHECK constraints refuse ids
-- and the compared job times in any other form.
--
-- Idempotent: every statement is `if not exists`, so applying the file twice changes nothing.

-- videos: written by the crawler; the worker updates the download fields ----------------------
create table if not exists videos (
    id                    text primary key not null default (lower(
                              hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                              || substr(hex(randomblob(2)), 2) || '-'
                              || substr('89ab', 1 + (abs(random()) % 4), 1)
                              || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    douyin_id             text,
    title                 text,
    video_url             text,
    thumbnail_url         text,
    stats                 text,
    created_at            text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- cache of the direct media URL
    video_url_direct      text,
    video_url_meta        text,
    -- download fields
    status                text not null default 'new',
    attempts              integer not null default 0,
    last_attempt_at       text,
    last_error            text,
    download_started_at   text,
    downloaded_at         text,
    storage_provider      text,
    bucket                text,
    object_key            text,
    storage_etag          text,
    storage_metadata      text,
    public_url_expires_at text,
    public_url_meta       text,
    filesize              integer,
    mime_type             text,
    created_by            text,
    updated_at            text default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_by            text,
    in_progress_by        text,
    in_progress_at        text,
    -- ranking fields
    viral_score           real,
    viral_momentum        real,
    momentum_24h          real,
    momentum_7d           real,
    viral_score_history   text,
    surge_detected        integer,
    surge_factor          real,
    last_increase_at      text,
    last_surge_at         text,
    max_viral_score       real,
    marked_for_deletion   integer not null default 0,
    deleted_at            text,
    -- progress in percent and the next retry time
    download_progress     integer,
    next_attempt_at       text,
    -- a uuid bound as a 16-byte blob (sqlx's default for `Uuid`) would never match
    check (typeof(id) = 'text' and length(id) = 36 and id = lower(id))
);

create index if not exists videos_douyin_id_idx on videos (douyin_id);
-- Enqueueing a link without a recognisable id (short links) looks the video up by its link.
-- Not in 0001_schema.sql, where that look-up scans the table.
create index if not exists videos_video_url_idx on videos (video_url);

-- download_jobs -------------------------------------------------------------------------------
create table if not exists download_jobs (
    id               text primary key not null default (lower(
                         hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                         || substr(hex(randomblob(2)), 2) || '-'
                         || substr('89ab', 1 + (abs(random()) % 4), 1)
                         || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))),
    video_id         text not null references videos (id) on delete cascade,
    status           text not null default 'pending',
    worker_id        text,
    -- A null (inserted or updated) becomes "now", as the PostgreSQL trigger does.
    scheduled_at     text not null on conflict replace
                         default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at       text,
    finished_at      text,
    attempts         integer not null default 0,
    last_error       text,
    payload          text,
    created_at       text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- claim order: priority (higher first), then due time, then age. Left null by an insert,
    -- it is filled from the video's ranking by download_jobs_default_priority below.
    priority         integer,
    max_attempts     integer not null default 5,
    -- the lease of a running job: a fencing token and an expiry renewed by heartbeats
    lease_id         text,
    lease_expires_at text,
    heartbeat_at     text,
    -- machine-readable failure: a kebab-case code and its class (transient, permanent, drift)
    last_error_code  text,
    last_error_class text,
    -- download progress
    progress_bytes   integer,
    progress_total   integer,
    progress_at      text,
    -- Uuids as hyphenated lower-case text, and the times the queue compares in the canonical
    -- form: a uuid bound as a blob or a time in another format would silently never match or
    -- sort wrongly, so such writes fail instead.
    check (typeof(id) = 'text' and length(id) = 36 and id = lower(id)),
    check (typeof(video_id) = 'text'),
    check (lease_id is null or (typeof(lease_id) = 'text' and length(lease_id) = 36
                                and lease_id = lower(lease_id))),
    check (scheduled_at glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
    check (created_at glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
    check (lease_expires_at is null or lease_expires_at glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z')
);

-- At most one pending or running job per video.
create unique index if not exists download_jobs_one_active_per_video
    on download_jobs (video_id)
    where status in ('pending', 'running');

-- Claiming walks this index in claim order and stops after the limit.
create index if not exists download_jobs_claim_idx
    on download_jobs (priority desc, scheduled_at, created_at)
    where status = 'pending';

-- The rescue looks only at running jobs, oldest lease first.
create index if not exists download_jobs_lease_idx
    on download_jobs (lease_expires_at)
    where status = 'running';

-- Foreign-key cascades and per-video look-ups.
create index if not exists download_jobs_video_id_idx on download_jobs (video_id);

-- Row defaults a column default cannot express, for writers that are not this worker ----------
-- (the worker itself always sets the priority, so these never fire on its hot path).

-- Default priority of a new job, from the video's ranking: surging videos first, then by
-- viral momentum (download_job_default_priority in 0002_queue.sql).
create trigger if not exists download_jobs_default_priority
after insert on download_jobs
for each row when new.priority is null
begin
    update download_jobs
       set priority = coalesce(
               (select (case when coalesce(v.surge_detected, 0) then 1000000 else 0 end)
                       + cast(max(min(round(coalesce(v.viral_momentum, 0)), 999999), 0) as integer)
                  from videos v
                 where v.id = new.video_id),
               0)
     where rowid = new.rowid;
end;

-- A failed job put back by hand (`update download_jobs set status = 'pending' where ...`)
-- gets a full set of attempts again, and no stale lease.
create trigger if not exists download_jobs_manual_retry
after update of status on download_jobs
for each row when old.status = 'failed' and new.status = 'pending'
begin
    update download_jobs
       set attempts         = 0,
           lease_id         = null,
           lease_expires_at = null,
           worker_id        = null
     where rowid = new.rowid;
end;
