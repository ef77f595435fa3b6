//! Supabase Realtime: migration 0007 adds `public.videos` to the publication
//! `supabase_realtime` where it exists (created empty before `migrate`, as Supabase does),
//! once however often `migrate` runs, and nothing happens where it does not exist. On a
//! cluster with `wal_level=logical`, a logical decoding slot sees the `videos` updates of one
//! download within the bound of the progress writes.

use std::time::Duration;

use douyin_worker::queue::migrate::apply_postgres;
use fakes::pg::{PrivateCluster, TestDb, fresh_pg_empty, pool_for};
use sqlx::PgPool;

use crate::system::Rig;

/// The `videos` updates decoded since the last read (consumed).
async fn read_slot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select data from pg_logical_slot_get_changes('dw_realtime', null, null)
          where data like 'table public.videos: UPDATE:%'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Tables `supabase_realtime` publishes.
async fn published(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select schemaname || '.' || tablename from pg_publication_tables
          where pubname = 'supabase_realtime' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrate_adds_videos_to_supabase_realtime_once_and_only_where_it_exists() {
    // Without the publication: migrate works and creates none.
    let plain = fresh_pg_empty().await;
    apply_postgres(&plain.pool).await.unwrap();
    let pubs: i64 = sqlx::query_scalar("select count(*) from pg_publication")
        .fetch_one(&plain.pool)
        .await
        .unwrap();
    assert_eq!(pubs, 0);

    // With it, empty, as a new Supabase project has it.
    let db = fresh_pg_empty().await;
    sqlx::raw_sql("create publication supabase_realtime")
        .execute(&db.pool)
        .await
        .unwrap();
    apply_postgres(&db.pool).await.unwrap();
    assert_eq!(published(&db.pool).await, ["public.videos"]);
    // Again, and the file itself again (as pasted into the SQL editor twice).
    let again = apply_postgres(&db.pool).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    let file = douyin_worker::queue::migrate::POSTGRES
        .iter()
        .find(|m| m.name == "0007_video_events.sql")
        .unwrap();
    sqlx::raw_sql(file.sql).execute(&db.pool).await.unwrap();
    assert_eq!(published(&db.pool).await, ["public.videos"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_slot_sees_the_video_updates_of_one_download_within_the_progress_bound() {
    const ID: &str = "7412345678901239301";
    const SIZE: u64 = 2_000_000;
    let cluster =
        tokio::task::spawn_blocking(|| PrivateCluster::start_with("-c wal_level=logical"))
            .await
            .unwrap();
    let pool = pool_for(&cluster.url, 5).await;
    sqlx::raw_sql("create publication supabase_realtime")
        .execute(&pool)
        .await
        .unwrap();
    apply_postgres(&pool).await.unwrap();
    assert_eq!(published(&pool).await, ["public.videos"]);
    sqlx::query("select pg_create_logical_replication_slot('dw_realtime', 'test_decoding')")
        .execute(&pool)
        .await
        .unwrap();

    let serve = crate::progress::crawling_at_half(SIZE);
    let db = TestDb {
        pool: pool.clone(),
        url: cluster.url.clone(),
        name: "postgres".into(),
    };
    let rig = Rig::start_on(db, &[(ID, SIZE as usize, serve)]).await;
    rig.store_one(ID).await;

    // The server has `synchronous_commit=off`: the slot decodes up to the flushed WAL, which
    // may trail the last commit by a moment. Read until the completion arrives.
    let mut changes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !changes
        .iter()
        .any(|c: &String| c.contains("status[text]:'ready'"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no completion in the slot: {changes:#?}"
        );
        changes.extend(read_slot(&pool).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_50 = changes
        .iter()
        .filter(|c| c.contains("download_progress[smallint]:50 "))
        .count();
    assert_eq!(at_50, 1, "50 % is written once: {changes:#?}");
    // Claim, at most 101 progress writes, completion.
    assert!(changes.len() <= 103, "{} updates", changes.len());
    assert!(
        changes
            .last()
            .is_some_and(|c| c.contains("status[text]:'ready'")),
        "{changes:#?}"
    );
    sqlx::query("select pg_drop_replication_slot('dw_realtime')")
        .execute(&pool)
        .await
        .unwrap();
}
