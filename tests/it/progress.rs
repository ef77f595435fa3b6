//! Progress writes are bounded: a worker process downloading one video from the loopback CDN
//! writes its progress at most once per whole percent and per half second, and always writes
//! the final 100 %. Every progress write the database receives is counted by a trigger.

use std::time::Duration;

use fakes::cdn::Serve;

use crate::system::Rig;

/// Records every progress write (`report_download_progress` sets `progress_at` of a running
/// job; completion sets it too, and is not counted) in `progress_writes`, in order.
const COUNT_WRITES: &str = "
create table public.progress_writes (
    n      bigserial primary key,
    bytes  bigint not null,
    total  bigint
);
create function public.count_progress_write() returns trigger language plpgsql as $$
begin
    if new.progress_at is distinct from old.progress_at and new.progress_bytes is not null
       and old.status = 'running' and new.status = 'running' then
        insert into public.progress_writes (bytes, total)
        values (new.progress_bytes, new.progress_total);
    end if;
    return new;
end $$;
create trigger count_progress_write after update on public.download_jobs
    for each row execute function public.count_progress_write();
";

/// Half of a file of `size` bytes at once, then 2.5 s crawling inside 50 % (ten pieces of
/// 0.05 %), then the rest: a worker that writes on a timer writes 50 % again and again.
pub(crate) fn crawling_at_half(size: u64) -> Serve {
    Serve::Trickle {
        after: size / 2,
        piece: size / 2_000,
        every: Duration::from_millis(250),
        count: 10,
    }
}

/// The whole percent of a write (100 only with every byte).
fn percent(bytes: i64, total: i64) -> i64 {
    if bytes >= total {
        100
    } else {
        bytes * 100 / total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_writes_its_progress_once_per_percent_and_half_second_and_the_final_hundred() {
    const ID: &str = "7412345678901239101";
    const SIZE: u64 = 2_000_000;
    let serve = crawling_at_half(SIZE);
    let rig = Rig::start(&[(ID, SIZE as usize, serve)]).await;
    sqlx::raw_sql(COUNT_WRITES)
        .execute(&rig.db.pool)
        .await
        .unwrap();
    let (_, elapsed) = rig.store_one(ID).await;

    let writes: Vec<(i64, Option<i64>)> =
        sqlx::query_as("select bytes, total from public.progress_writes order by n")
            .fetch_all(&rig.db.pool)
            .await
            .unwrap();
    assert!(!writes.is_empty(), "no progress written");
    let percents: Vec<i64> = writes
        .iter()
        .map(|(b, t)| percent(*b, t.expect("the total is known")))
        .collect();
    for pair in percents.windows(2) {
        assert_ne!(pair[0], pair[1], "one percent written twice: {percents:?}");
    }
    assert!(
        percents.len() as u128 <= elapsed.as_millis() / 500 + 2,
        "{} writes in {elapsed:?}: {percents:?}",
        percents.len()
    );
    assert_eq!(
        writes.last().unwrap().0,
        SIZE as i64,
        "the final 100 % is written: {percents:?}"
    );
    let progress: Option<i16> =
        sqlx::query_scalar("select download_progress from public.videos where douyin_id = $1")
            .bind(ID)
            .fetch_one(&rig.db.pool)
            .await
            .unwrap();
    assert_eq!(progress, Some(100));
}
