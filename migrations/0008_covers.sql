-- douyin-worker migration 0008: covers that last.
--
-- * A completion may carry "stored_thumbnail_url": the lasting URL of the cover the worker
--   stored beside the video (the public object URL, or the download API's
--   `/api/videos/{id}/thumbnail`). It replaces `videos.thumbnail_url` whatever that held
--   (Douyin's signed cover URLs expire); the worker keeps the URL it replaced in
--   `storage_metadata.cover.replaced_thumbnail_url`. Without it, the thumbnail is filled only
--   when the row has none, as before.
-- * `list_wanted_object_keys` also wants the objects stored with a video besides its main
--   one: the cover (`storage_metadata.cover.key`) and the further files of an image post
--   (`storage_metadata.parts[].key`), so `gc` keeps them while the video lives.
-- * `get_video_cover(p_video_id)`: where a video's cover is stored, for the download API's
--   `/api/videos/{id}/thumbnail`.
--
-- Signatures are unchanged; idempotent (`create or replace` throughout).

-- complete -----------------------------------------------------------------------------------
-- As in 0002_queue.sql, plus the optional "stored_thumbnail_url" of each result (see above).
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
               video_url_meta jsonb, stored_thumbnail_url text)
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
               thumbnail_url       = coalesce(nullif(r.stored_thumbnail_url, ''),
                                              nullif(v.thumbnail_url, ''), r.thumbnail_url),
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

-- wanted keys --------------------------------------------------------------------------------
-- As in 0004_admin.sql, plus each wanted video's cover and image-post parts (see above).
create or replace function public.list_wanted_object_keys(
    p_bucket text,
    p_after  text    default null,
    p_limit  integer default null)
returns table (object_key text)
language sql stable
set search_path = ''
as $$
    select k.object_key
      from (select distinct w.key collate "C" as object_key
              from public.videos v
             cross join lateral (
                   select v.object_key as key
                   union all
                   select v.storage_metadata #>> '{cover,key}'
                   union all
                   select p.part ->> 'key'
                     from jsonb_array_elements(
                            case jsonb_typeof(v.storage_metadata -> 'parts')
                                 when 'array' then v.storage_metadata -> 'parts'
                                 else '[]'::jsonb end) as p(part)) w
             where v.object_key is not null
               and coalesce(w.key, '') <> ''
               and not v.marked_for_deletion
               and (p_bucket is null or v.bucket is null or v.bucket = p_bucket)) k
     where p_after is null or k.object_key > (p_after collate "C")
     order by k.object_key
     limit p_limit
$$;

-- cover --------------------------------------------------------------------------------------
-- Where a video's cover is stored (`storage_metadata.cover.key`, in `bucket`): no row for an
-- unknown video, a null key for one without a stored cover. A merged row answers as the row
-- it was merged into, as get_download_video does.
create or replace function public.get_video_cover(p_video_id uuid)
returns table (id uuid, bucket text, cover_key text, marked_for_deletion boolean)
language sql stable
set search_path = ''
as $$
    select v.id, v.bucket, nullif(v.storage_metadata #>> '{cover,key}', ''),
           v.marked_for_deletion
      from public.videos v
     where v.id = coalesce(
               (select m.merged_into from public.videos m where m.id = p_video_id),
               p_video_id)
$$;

-- The schema version this file set leaves; workers check it at start-up (also over REST).
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 8 $$;

-- Who may call what: service_role only, as in 0003_compat_and_grants.sql.
do $$
declare
    fn   text;
    role text;
begin
    foreach fn in array array[
        'public.complete_download_jobs(text, jsonb)',
        'public.list_wanted_object_keys(text, text, integer)',
        'public.get_video_cover(uuid)',
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
values (8, '0008_covers.sql')
on conflict (version) do nothing;
