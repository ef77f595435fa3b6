-- douyin-worker migration 0005: row-level security on the worker's tables.
--
-- On Supabase the app's anon key is public, and Supabase grants `anon` and `authenticated`
-- every privilege on new tables in `public` by default. Without row-level security, anyone
-- holding the anon key could add jobs, mark everything failed, delete every video or point a
-- video at another object. After this file:
--
--   * `videos`: row-level security on; `anon` and `authenticated` may only read it (a
--     `select` policy, unless the app has its own select policy for them; their insert,
--     update, delete and truncate privileges are revoked). The UI reads it as before.
--   * `download_jobs`, `douyin_worker_migrations`: row-level security on, no policy for the
--     API roles, and every table privilege revoked from them.
--   * `service_role` (the worker's key; it bypasses row-level security) and the tables'
--     owner (a direct `DATABASE_URL`) keep working, and so does every SQL function: the
--     functions run with their caller's rights, and only `service_role` may call them.
--
-- Policies the app made are never dropped or replaced. Idempotent; can be pasted into the
-- Supabase SQL editor as it is.

alter table public.videos enable row level security;
alter table public.download_jobs enable row level security;
alter table public.douyin_worker_migrations enable row level security;

do $$
declare
    role      text;
    app_read  boolean;
    api_roles text;
begin
    -- The API roles exist on Supabase (and in databases set up like it); elsewhere there is
    -- nobody to keep out but PUBLIC, which has no table privileges.
    foreach role in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = role) then
            execute format('revoke all on table public.download_jobs from %I', role);
            execute format('revoke all on table public.douyin_worker_migrations from %I', role);
            execute format('revoke insert, update, delete, truncate, references, trigger
                              on table public.videos from %I', role);
            execute format('grant select on table public.videos to %I', role);
        end if;
    end loop;

    select string_agg(quote_ident(rolname), ', ' order by rolname) into api_roles
      from pg_roles where rolname in ('anon', 'authenticated');
    if api_roles is null then
        return;
    end if;

    -- Does the app have a read policy of its own on videos for the API roles (or for
    -- everyone)? Then its rules decide what they may read, and ours would only widen them.
    select exists (
        select 1 from pg_policies p
         where p.schemaname = 'public' and p.tablename = 'videos'
           and p.policyname <> 'douyin_worker: videos are readable'
           and p.cmd in ('SELECT', 'ALL')
           and p.permissive = 'PERMISSIVE'
           and p.roles && array['public', 'anon', 'authenticated']::name[]
    ) into app_read;

    if app_read then
        -- Ours may date from before the app's own: leave the app's rules alone.
        drop policy if exists "douyin_worker: videos are readable" on public.videos;
    elsif not exists (select 1 from pg_policies
                       where schemaname = 'public' and tablename = 'videos'
                         and policyname = 'douyin_worker: videos are readable') then
        execute format('create policy "douyin_worker: videos are readable" on public.videos
                          for select to %s using (true)', api_roles);
    end if;
end
$$;

-- The schema version this file set leaves; workers check it at start-up (also over REST).
create or replace function public.douyin_worker_schema_version()
returns integer
language sql immutable
set search_path = ''
as $$ select 5 $$;

insert into public.douyin_worker_migrations (version, name)
values (5, '0005_row_security.sql')
on conflict (version) do nothing;
