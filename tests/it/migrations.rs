//! The PostgreSQL migrations: from nothing, over the old worker's schema, idempotent, and
//! locked to service_role.

use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::migrate::{self, POSTGRES};
use sqlx::{PgPool, Row};

use fakes::pg::{fresh_pg_empty, init_tracing};

/// A description of the schema that any change to a table, index, function, trigger or
/// grant alters.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let rows = sqlx::query(
        "select table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
                || ' default=' || coalesce(column_default, '')
           from information_schema.columns where table_schema = 'public'
          order by table_name, column_name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| r.get::<String, _>(0)));
    let rows = sqlx::query(
        "select indexdef from pg_indexes where schemaname = 'public' order by indexname",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| r.get::<String, _>(0)));
    let rows = sqlx::query(
        "select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                || pg_get_function_result(p.oid) || ' ' || md5(p.prosrc) || ' '
                || coalesce(p.proacl::text, 'default-acl')
           from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname = 'public' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| r.get::<String, _>(0)));
    let rows = sqlx::query(
        "select pg_get_triggerdef(t.oid) from pg_trigger t
           join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and not t.tgisinternal order by t.tgname",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| r.get::<String, _>(0)));
    out
}

/// Runs every migration file again, as pasting them into the SQL editor a second time would.
async fn reapply_all(pool: &PgPool) {
    sqlx::query("update public.douyin_worker_migrations set checksum = null")
        .execute(pool)
        .await
        .unwrap();
    let report = migrate::apply_postgres(pool).await.unwrap();
    assert_eq!(report.applied.len(), POSTGRES.len());
}

#[tokio::test]
async fn fresh_database_gets_the_whole_schema_and_a_second_run_changes_nothing() {
    init_tracing();
    let db = fresh_pg_empty().await;
    let report = migrate::apply_postgres(&db.pool).await.unwrap();
    assert_eq!(
        report.applied,
        POSTGRES.iter().map(|m| m.name).collect::<Vec<_>>()
    );
    let first = snapshot(&db.pool).await;

    let again = migrate::apply_postgres(&db.pool).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.unchanged.len(), POSTGRES.len());

    reapply_all(&db.pool).await;
    assert_eq!(snapshot(&db.pool).await, first);

    for f in [
        "claim_download_job(p_worker_id text)",
        "claim_download_jobs(p_worker_id text, p_limit integer, p_lease_seconds integer)",
        "get_worker_stats()",
        "ensure_videos_bucket()",
        "update_viral_metrics(p_video_id uuid, p_new_score numeric)",
        "cleanup_old_low_viral(p_days_no_increase integer, p_min_score numeric, p_age_days integer)",
        "get_download_video(p_video_id uuid)",
        "list_download_jobs(p_status text, p_limit integer, p_job_id uuid)",
        "retry_download_jobs(p_job_ids uuid[], p_all_failed boolean)",
        "get_download_queue_overview()",
        "list_wanted_object_keys(p_bucket text, p_after text, p_limit integer)",
    ] {
        let (name, args) = f.split_once('(').unwrap();
        let found: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                             where n.nspname = 'public' and p.proname = $1
                               and pg_get_function_arguments(p.oid) like $2)",
        )
        .bind(name)
        .bind(format!(
            "{}%",
            args.trim_end_matches(')').split(',').next().unwrap()
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(found, "{f} is missing");
    }
    let version: i32 = sqlx::query_scalar("select public.douyin_worker_schema_version()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(version, douyin_worker::queue::SCHEMA_VERSION);
    // The old functions answer in their old shapes.
    let stats = sqlx::query("select * from public.get_worker_stats()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let columns: Vec<&str> = stats.columns().iter().map(sqlx::Column::name).collect();
    assert_eq!(
        columns,
        [
            "total_jobs",
            "pending_jobs",
            "running_jobs",
            "completed_jobs",
            "failed_jobs",
            "active_workers"
        ]
    );
    sqlx::query("select public.ensure_videos_bucket()")
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn upgrades_the_old_workers_database_and_repairs_its_leftovers() {
    init_tracing();
    let db = fresh_pg_empty().await;
    sqlx::raw_sql(include_str!("../fixtures/old_schema.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    // What the old system leaves: a video with two active jobs (the old retry endpoint), a
    // job left `running` by a crashed worker, a job without a due time, and history.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "insert into public.videos (douyin_id, title, video_url)
         select '74000000000000000' || g, 'v' || g, 'https://www.douyin.com/video/74000000000000000' || g
           from generate_series(1, 4) g returning id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into public.download_jobs (video_id, status, created_at, scheduled_at) values
            ($1, 'pending', now() - interval '2 days', now() - interval '2 days'),
            ($1, 'pending', now() - interval '1 day', null),
            ($2, 'running', now() - interval '3 hours', null),
            ($3, 'pending', now() - interval '1 hour', null),
            ($4, 'failed',  now() - interval '5 days', null),
            ($4, 'completed', now() - interval '6 days', null)",
    )
    .bind(ids[0])
    .bind(ids[1])
    .bind(ids[2])
    .bind(ids[3])
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "update public.download_jobs set started_at = now() - interval '3 hours', worker_id = 'old-123'
          where status = 'running'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // The old defect: anyone could claim.
    let anon_acl: bool = sqlx::query_scalar(
        "select has_function_privilege('anon', 'public.claim_download_job(text)', 'execute')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(anon_acl);

    let report = migrate::apply_postgres(&db.pool).await.unwrap();
    assert_eq!(report.applied.len(), POSTGRES.len());
    let first = snapshot(&db.pool).await;
    reapply_all(&db.pool).await;
    assert_eq!(
        snapshot(&db.pool).await,
        first,
        "re-applying changed the upgraded schema"
    );

    // One active job per video: the newer duplicate failed with a reason.
    let dup: Vec<(String, Option<String>)> = sqlx::query_as(
        "select status, last_error_code from public.download_jobs where video_id = $1 order by created_at",
    )
    .bind(ids[0])
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(dup[0], ("pending".into(), None));
    assert_eq!(dup[1], ("failed".into(), Some("duplicate-job".into())));
    let dup_insert = sqlx::query("insert into public.download_jobs (video_id) values ($1)")
        .bind(ids[0])
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(
        dup_insert
            .to_string()
            .contains("download_jobs_one_active_per_video")
    );

    // Every job has a due time now.
    let missing: i64 =
        sqlx::query_scalar("select count(*) from public.download_jobs where scheduled_at is null")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(missing, 0);

    // The crashed worker's job comes back by itself.
    let rescued: Vec<(uuid::Uuid, String, Option<String>)> =
        sqlx::query_as("select job_id, outcome, worker_id from public.rescue_download_jobs(100)")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].1, "requeued");
    assert_eq!(rescued[0].2.as_deref(), Some("old-123"));

    // The old claim still works, with the old result columns, on the new queue.
    let row = sqlx::query("select * from public.claim_download_job('old-worker')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let columns: Vec<&str> = row.columns().iter().map(sqlx::Column::name).collect();
    assert_eq!(
        columns,
        [
            "id",
            "video_id",
            "status",
            "scheduled_at",
            "attempts",
            "payload"
        ]
    );
    assert_eq!(row.get::<String, _>("status"), "running");
    let lease: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select lease_expires_at from public.download_jobs where id = $1")
            .bind(row.get::<uuid::Uuid, _>("id"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(lease.is_some(), "the old claim must hand out a lease too");

    // Every column a fresh install has exists, with the same type, after the upgrade.
    let fresh = fresh_pg_empty().await;
    migrate::apply_postgres(&fresh.pool).await.unwrap();
    let columns = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String, String)>(
            "select table_name::text, column_name::text, data_type::text from information_schema.columns
              where table_schema = 'public' order by 1, 2",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let upgraded = columns(db.pool.clone()).await;
    for c in columns(fresh.pool.clone()).await {
        assert!(upgraded.contains(&c), "{c:?} missing after the upgrade");
    }
}

#[tokio::test]
async fn only_service_role_may_call_worker_functions_even_with_supabase_default_grants() {
    init_tracing();
    let db = fresh_pg_empty().await;
    // Supabase grants every new function in `public` to the API roles by default.
    sqlx::raw_sql(
        "alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
         grant usage on schema public to anon, authenticated, service_role;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    migrate::apply_postgres(&db.pool).await.unwrap();

    let calls = [
        "select * from public.claim_download_jobs('w', 1, 60)",
        "select * from public.claim_download_job('w')",
        "select * from public.complete_download_jobs('w', '[]')",
        "select * from public.fail_download_jobs('w', '[]')",
        "select * from public.release_download_jobs('w', '[]')",
        "select * from public.heartbeat_download_jobs('w', '[]', 60)",
        "select * from public.rescue_download_jobs(10)",
        "select * from public.enqueue_download_job(p_douyin_id => '7400000000000000001')",
        "select public.report_download_progress('w', gen_random_uuid(), gen_random_uuid(), 1, 2)",
        "select * from public.get_worker_stats()",
        "select * from public.get_download_job(gen_random_uuid())",
        "select public.cleanup_old_low_viral()",
        "select * from public.get_download_video(gen_random_uuid())",
        "select * from public.list_download_jobs()",
        "select * from public.retry_download_jobs(array[gen_random_uuid()])",
        "select * from public.get_download_queue_overview()",
        "select * from public.list_wanted_object_keys('videos')",
    ];
    for role in ["anon", "authenticated"] {
        for call in calls {
            let mut tx = db.pool.begin().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("set local role {role}")))
                .execute(&mut *tx)
                .await
                .unwrap();
            let err = sqlx::raw_sql(call).execute(&mut *tx).await.unwrap_err();
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{role}: {call}: {err}");
            assert!(err.to_string().contains("permission denied"), "{err}");
        }
    }
    for call in calls {
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::raw_sql("set local role service_role")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::raw_sql(call)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("service_role: {call}: {e}"));
    }
}

#[tokio::test]
async fn claimable_jobs_are_announced_with_their_due_time() {
    use douyin_worker::queue::postgres::PgQueue;
    use douyin_worker::queue::{EnqueueRequest, FailedAttempt, JobQueue};
    use std::time::Duration;
    init_tracing();
    let db = fakes::pg::fresh_pg().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener
        .listen(douyin_worker::queue::NOTIFY_CHANNEL)
        .await
        .unwrap();
    let q = PgQueue::from_pool(db.pool.clone());
    let lease = Duration::from_secs(60);

    // Inserted: due now.
    let r = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some("7400000000000000001".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let due = next_due(&mut listener).await;
    assert!((chrono::Utc::now() - due).num_seconds().abs() < 5);

    // Rescheduled after a failure: announced with the later due time.
    let job = q.claim("w", 1, lease).await.unwrap().remove(0);
    q.fail(
        "w",
        &[FailedAttempt {
            lease: job.lease,
            error: "boom".into(),
            code: "x".into(),
            class: douyin_worker::error::ErrorClass::Transient,
            retry_in: Some(Duration::from_secs(300)),
            forget_direct_url: None,
        }],
    )
    .await
    .unwrap();
    let due = next_due(&mut listener).await;
    let ahead = (due - chrono::Utc::now()).num_seconds();
    assert!((290..=310).contains(&ahead), "{ahead}");

    // Released: due now again.
    sqlx::query("update public.download_jobs set scheduled_at = now() where id = $1")
        .bind(r.job_id)
        .execute(&db.pool)
        .await
        .unwrap();
    next_due(&mut listener).await;
    let job = q.claim("w", 1, lease).await.unwrap().remove(0);
    q.release("w", &[job.lease]).await.unwrap();
    let due = next_due(&mut listener).await;
    assert!((chrono::Utc::now() - due).num_seconds().abs() < 5);

    // Claims and completions announce nothing.
    let job = q.claim("w", 1, lease).await.unwrap().remove(0);
    let _ = job;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn default_priority_follows_the_ranking_and_a_manual_retry_gets_its_attempts_back() {
    init_tracing();
    let db = fakes::pg::fresh_pg().await;
    let pool = &db.pool;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "insert into public.videos (douyin_id, viral_momentum, surge_detected) values
            ('7400000000000000001', 5, false),
            ('7400000000000000002', 900, false),
            ('7400000000000000003', 3, true)
         returning id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    // Inserted the way the old download API did: no priority, no due time.
    for id in &ids {
        sqlx::query(
            "insert into public.download_jobs (video_id, payload) values ($1, '{\"retry\": true}')",
        )
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    }
    let order: Vec<(String, i32)> = sqlx::query_as(
        "select v.douyin_id, c.priority from public.claim_download_jobs('w', 10, 60) c
           join public.videos v on v.id = c.video_id order by c.priority desc",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        order,
        vec![
            ("7400000000000000003".into(), 1_000_003),
            ("7400000000000000002".into(), 900),
            ("7400000000000000001".into(), 5),
        ]
    );

    // Fail one for good, then retry it by hand the way the old README says.
    sqlx::query(
        "update public.download_jobs set status = 'failed', attempts = 5, lease_id = null where video_id = $1",
    )
    .bind(ids[0])
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "update public.download_jobs set status = 'pending', last_error = null, scheduled_at = now()
          where video_id = $1",
    )
    .bind(ids[0])
    .execute(pool)
    .await
    .unwrap();
    let (attempts, worker): (i32, Option<String>) =
        sqlx::query_as("select attempts, worker_id from public.download_jobs where video_id = $1")
            .bind(ids[0])
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((attempts, worker), (0, None));
    let claimed: i64 =
        sqlx::query_scalar("select count(*) from public.claim_download_jobs('w2', 10, 60)")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(claimed, 1);
}

/// The due time announced by the next notification.
async fn next_due(listener: &mut sqlx::postgres::PgListener) -> chrono::DateTime<chrono::Utc> {
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    let ms: i64 = n.payload().parse().unwrap();
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}
