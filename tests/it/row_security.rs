//! Row-level security and table privileges after `migrate`, on databases set up like
//! Supabase's: the API roles `anon`, `authenticated` and `service_role` (BYPASSRLS, from
//! `tests/support/pg-cluster.sh`) and Supabase's default privileges, which grant the API roles
//! everything on every new table and function in `public`.
//!
//! The whole matrix role × table × operation is asserted on a fresh install, after an upgrade
//! of the old worker's schema, and with the tables owned by an ordinary (not superuser) role,
//! as a direct `DATABASE_URL` on Supabase is; an app's own read policy on `videos` survives.

use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::migrate;
use douyin_worker::queue::postgres::PgQueue;
use douyin_worker::queue::{
    CompleteOutcome, Completion, EnqueueOutcome, EnqueueRequest, JobQueue, StoredObject,
    VideoUpdate,
};
use sqlx::PgPool;
use std::time::Duration;

use fakes::pg::{TestDb, fresh_pg_empty, pool_for, url_with_database};

/// Supabase's default privileges for objects the migrating role creates in `public`.
const SUPABASE_DEFAULTS: &str = "
    grant usage on schema public to anon, authenticated, service_role;
    alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
    alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
    alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;";

/// The operations tried on each table; `{video}` is an existing video's id.
fn operations(table: &str) -> Vec<(&'static str, String)> {
    match table {
        "videos" => vec![
            ("select", "select count(*) from public.videos".into()),
            (
                "insert",
                "insert into public.videos (douyin_id) values ('7400000000000000999')".into(),
            ),
            (
                "update",
                "update public.videos set status = 'failed', object_key = 'elsewhere/x.mp4'".into(),
            ),
            ("delete", "delete from public.videos".into()),
            ("truncate", "truncate public.videos cascade".into()),
        ],
        "download_jobs" => vec![
            ("select", "select count(*) from public.download_jobs".into()),
            (
                "insert",
                "insert into public.download_jobs (video_id, status, priority)
                 select id, 'completed', 1000 from public.videos limit 1"
                    .into(),
            ),
            (
                "update",
                "update public.download_jobs set status = 'failed'".into(),
            ),
            ("delete", "delete from public.download_jobs".into()),
            ("truncate", "truncate public.download_jobs".into()),
        ],
        "douyin_worker_migrations" => vec![
            (
                "select",
                "select count(*) from public.douyin_worker_migrations".into(),
            ),
            (
                "insert",
                "insert into public.douyin_worker_migrations (version, name) values (999, 'x')"
                    .into(),
            ),
            (
                "update",
                "update public.douyin_worker_migrations set checksum = 'x'".into(),
            ),
            (
                "delete",
                "delete from public.douyin_worker_migrations".into(),
            ),
            (
                "truncate",
                "truncate public.douyin_worker_migrations".into(),
            ),
        ],
        other => panic!("no operations for {other}"),
    }
}

const TABLES: [&str; 3] = ["videos", "download_jobs", "douyin_worker_migrations"];

/// What one operation did: rows affected (or counted, for a select), or the SQLSTATE.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Rows(i64),
    Refused(String),
}

/// Runs `sql` as `role` (`None`: the connecting role) in a transaction that is rolled back.
async fn attempt(pool: &PgPool, role: Option<&str>, sql: &str) -> Outcome {
    let mut tx = pool.begin().await.unwrap();
    if let Some(role) = role {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("set local role {role}")))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let outcome = if sql.starts_with("select") {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *tx)
            .await
            .map(Outcome::Rows)
    } else {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut *tx)
            .await
            .map(|r| Outcome::Rows(r.rows_affected() as i64))
    };
    let _ = tx.rollback().await;
    outcome.unwrap_or_else(|e| {
        Outcome::Refused(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| format!("not a database error: {e}")),
        )
    })
}

/// A video with a finished job and a pending one (rows for every table to show or hide).
async fn seed_rows(pool: &PgPool) {
    let q = PgQueue::from_pool(pool.clone());
    for id in ["7400000000000000101", "7400000000000000102"] {
        let r = q
            .enqueue(&EnqueueRequest {
                douyin_id: Some(id.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r.outcome, EnqueueOutcome::Queued);
    }
}

/// Asserts the whole matrix: the API roles may only read `videos`; `service_role` and the
/// owner (`None`) may do everything, and see every row.
async fn assert_matrix(pool: &PgPool, owner: Option<&str>) {
    let mut wrong = Vec::new();
    for table in TABLES {
        for (op, sql) in operations(table) {
            for role in ["anon", "authenticated"] {
                let got = attempt(pool, Some(role), &sql).await;
                let ok = match (table, op) {
                    ("videos", "select") => got == Outcome::Rows(2),
                    _ => got == Outcome::Refused("42501".into()),
                };
                if !ok {
                    wrong.push(format!("{role} {op} on {table}: {got:?}"));
                }
            }
            // Truncate is a table privilege, not row security: not part of the worker's needs.
            if op == "truncate" {
                continue;
            }
            for role in [Some("service_role"), owner] {
                let got = attempt(pool, role, &sql).await;
                if !matches!(got, Outcome::Rows(n) if n >= 1) {
                    wrong.push(format!(
                        "{} {op} on {table}: {got:?}",
                        role.unwrap_or("the owner")
                    ));
                }
            }
        }
        let rls: bool = sqlx::query_scalar(
            "select relrowsecurity from pg_class where oid = ('public.' || $1)::regclass",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        if !rls {
            wrong.push(format!("row-level security is off on {table}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}

async fn supabase_like() -> TestDb {
    let db = fresh_pg_empty().await;
    sqlx::raw_sql(SUPABASE_DEFAULTS)
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// Names of the policies on `public.videos`, with their commands and roles.
async fn video_policies(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select policyname::text, cmd, roles::text from pg_policies
          where schemaname = 'public' and tablename = 'videos' order by policyname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

const OUR_POLICY: &str = "douyin_worker: videos are readable";

#[tokio::test]
async fn after_migrate_the_api_roles_may_only_read_videos() {
    let db = supabase_like().await;
    migrate::apply_postgres(&db.pool).await.unwrap();
    seed_rows(&db.pool).await;
    assert_matrix(&db.pool, None).await;
    assert_eq!(
        video_policies(&db.pool).await,
        [(
            OUR_POLICY.to_string(),
            "SELECT".to_string(),
            "{anon,authenticated}".to_string()
        )]
    );
}

#[tokio::test]
async fn an_upgraded_old_database_keeps_the_ui_reads_and_nothing_more() {
    let db = supabase_like().await;
    // The old worker's schema, created under Supabase's default grants.
    sqlx::raw_sql(include_str!("../fixtures/old_schema.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "insert into public.videos (douyin_id, title) values
            ('7400000000000000101', 'a'), ('7400000000000000102', 'b');
         insert into public.download_jobs (video_id, status)
            select id, 'completed' from public.videos;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // The old defect: the anon key could rewrite the queue.
    assert_eq!(
        attempt(
            &db.pool,
            Some("anon"),
            "update public.download_jobs set status = 'failed'"
        )
        .await,
        Outcome::Rows(2)
    );
    migrate::apply_postgres(&db.pool).await.unwrap();
    assert_matrix(&db.pool, None).await;
}

#[tokio::test]
async fn an_ordinary_owner_runs_the_migrations_and_the_queue_with_row_security_on() {
    let db = supabase_like().await;
    // Supabase's `postgres` is not a superuser: run as an ordinary role owning the database.
    let owner = format!("owner_{}", &db.name[5..17]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create role {owner} login nosuperuser nobypassrls;
         grant anon, authenticated, service_role to {owner};
         alter database {db} owner to {owner};
         alter default privileges for role {owner} in schema public
             grant all on tables to anon, authenticated, service_role;
         alter default privileges for role {owner} in schema public
             grant all on functions to anon, authenticated, service_role;",
        db = db.name
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let url = url_with_database(&db.url, &db.name).replacen("postgres@", &format!("{owner}@"), 1);
    let pool = pool_for(&url, 5).await;
    let report = migrate::apply_postgres(&pool).await.unwrap();
    assert_eq!(report.applied.len(), migrate::POSTGRES.len());

    // The worker's whole life cycle as that owner.
    let q = PgQueue::from_pool(pool.clone());
    seed_rows(&pool).await;
    let claimed = q.claim("w1", 5, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let stored = StoredObject {
        storage_provider: "local".into(),
        bucket: "videos".into(),
        object_key: "7400000000000000101/7400000000000000101.mp4".into(),
        storage_etag: None,
        filesize: 10,
        mime_type: "video/mp4".into(),
        storage_metadata: serde_json::json!({}),
    };
    let done = q
        .complete(
            "w1",
            &[Completion {
                lease: claimed[0].lease,
                stored,
                video: VideoUpdate::default(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(done[0].1, CompleteOutcome::Completed);
    assert_eq!(q.stats().await.unwrap().completed_jobs, 1);
    assert_matrix(&pool, None).await;
}

#[tokio::test]
async fn the_apps_own_read_policy_on_videos_survives_migrate() {
    let db = supabase_like().await;
    sqlx::raw_sql(include_str!("../fixtures/old_schema.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    // The app shows only stored videos to visitors.
    sqlx::raw_sql(
        "alter table public.videos enable row level security;
         create policy \"app: stored videos are public\" on public.videos
             for select to anon using (status = 'ready');
         insert into public.videos (douyin_id, status) values
             ('7400000000000000101', 'ready'), ('7400000000000000102', 'new');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    migrate::apply_postgres(&db.pool).await.unwrap();
    let app_only = [(
        "app: stored videos are public".to_string(),
        "SELECT".to_string(),
        "{anon}".to_string(),
    )];
    assert_eq!(video_policies(&db.pool).await, app_only);
    assert_eq!(
        attempt(&db.pool, Some("anon"), "select count(*) from public.videos").await,
        Outcome::Rows(1),
        "the app's rule decides what visitors read"
    );
    assert_eq!(
        attempt(
            &db.pool,
            Some("anon"),
            "update public.videos set status = 'failed'"
        )
        .await,
        Outcome::Refused("42501".into())
    );
}

#[tokio::test]
async fn an_app_policy_added_later_replaces_ours_at_the_next_migrate() {
    let db = supabase_like().await;
    migrate::apply_postgres(&db.pool).await.unwrap();
    assert_eq!(video_policies(&db.pool).await[0].0, OUR_POLICY);
    sqlx::raw_sql(
        "create policy \"app: visitors read\" on public.videos
             for select to public using (coalesce(marked_for_deletion, false) = false);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // As pasting the files again, or a newer worker's `migrate`, would.
    sqlx::query("update public.douyin_worker_migrations set checksum = null")
        .execute(&db.pool)
        .await
        .unwrap();
    migrate::apply_postgres(&db.pool).await.unwrap();
    let names: Vec<String> = video_policies(&db.pool)
        .await
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(names, ["app: visitors read"]);
}
