//! Download progress of the jobs a worker runs, and the rule that bounds how often it is
//! written to the queue.
//!
//! Every chunk a download receives updates the [`ProgressBoard`] (in memory, cheap). The
//! worker's progress flusher asks the board for what is due ([`ProgressBoard::take`]) and
//! writes only that. The rule (`write_due`), per job (one job per video at a time): a write
//! when the whole percent changed **and** at least `MIN_WRITE_GAP` (500 ms) passed since the
//! job's last write; the final 100 % (every byte of a known total) is always written, at once.
//! So a download costs at most one write per whole percent and per half second, whatever the
//! file size and speed: 101 writes at most, and about 2 a second at most. Without a known
//! total there is no percent: a write at most every `UNKNOWN_TOTAL_GAP`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::queue::Lease;

/// Least time between two progress writes of one job.
pub(crate) const MIN_WRITE_GAP: Duration = Duration::from_millis(500);

/// Least time between two progress writes of a job whose total size is unknown.
pub(crate) const UNKNOWN_TOTAL_GAP: Duration = Duration::from_secs(5);

/// What was last written for a job (or, before any write, what the claim wrote: 0 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// When.
    pub at: Instant,
    /// Bytes done.
    pub done: u64,
    /// Whole percent (`None` when the total was unknown).
    pub percent: Option<u8>,
}

/// The whole percent of `done` out of `total`: 100 only when every byte is there.
pub fn percent(done: u64, total: Option<u64>) -> Option<u8> {
    let total = total.filter(|t| *t > 0)?;
    if done >= total {
        return Some(100);
    }
    Some(((u128::from(done) * 100 / u128::from(total)).min(99)) as u8)
}

/// Whether progress `done` of `total` at `now` is to be written, given the last write: the
/// final 100 % always (once); otherwise a new whole percent at least [`MIN_WRITE_GAP`] after
/// the last write; without a total, new bytes at least [`UNKNOWN_TOTAL_GAP`] after it.
pub(crate) fn write_due(last: Written, now: Instant, done: u64, total: Option<u64>) -> bool {
    let since = now.saturating_duration_since(last.at);
    match percent(done, total) {
        Some(100) => last.percent != Some(100),
        Some(p) => last.percent != Some(p) && since >= MIN_WRITE_GAP,
        None => done != last.done && since >= UNKNOWN_TOTAL_GAP,
    }
}

/// A progress update handed out by [`ProgressBoard::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// The job.
    pub lease: Lease,
    /// Bytes done.
    pub done: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
    /// The rule says to write it to the queue (else it is only news for the log).
    pub write: bool,
}

/// Latest progress of the jobs a worker runs; see the module doc for when it is written.
#[derive(Debug, Default)]
pub struct ProgressBoard {
    entries: Mutex<HashMap<Lease, Entry>>,
    /// Wakes the flusher when a download reaches its final byte.
    finished: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    done: u64,
    total: Option<u64>,
    /// Changed since the last [`ProgressBoard::take`].
    dirty: bool,
    written: Written,
}

impl ProgressBoard {
    /// Records progress; cheap enough to call for every chunk. The first call for a job counts
    /// as a write of 0 % at that moment (the claim wrote it).
    pub fn set(&self, lease: Lease, done: u64, total: Option<u64>) {
        let final_byte = total.is_some_and(|t| t > 0 && done >= t);
        {
            let mut map = self.lock();
            let entry = map.entry(lease).or_insert_with(|| Entry {
                done: 0,
                total,
                dirty: false,
                written: Written {
                    at: Instant::now(),
                    done: 0,
                    percent: Some(0),
                },
            });
            entry.done = done;
            entry.total = total;
            entry.dirty = true;
        }
        if final_byte {
            self.finished.notify_one();
        }
    }

    /// Forgets a finished job.
    pub fn remove(&self, lease: &Lease) {
        self.lock().remove(lease);
    }

    /// The entries changed since the last call, each marked whether it is to be written now
    /// (see `write_due`); those marked count as written at `now`. An entry not due stays
    /// pending: a later call writes it once the rule allows.
    pub fn take(&self, now: Instant) -> Vec<ProgressUpdate> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for (lease, e) in map.iter_mut() {
            let write = write_due(e.written, now, e.done, e.total);
            if !e.dirty && !write {
                continue;
            }
            e.dirty = false;
            if write {
                e.written = Written {
                    at: now,
                    done: e.done,
                    percent: percent(e.done, e.total),
                };
            }
            out.push(ProgressUpdate {
                lease: *lease,
                done: e.done,
                total: e.total,
                write,
            });
        }
        out
    }

    /// Returns when a download reaches its final byte (or at once if one did since the last
    /// wait), so the final 100 % is written without waiting for the next check.
    pub(crate) async fn final_byte(&self) {
        self.finished.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Lease, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            job_id: uuid::Uuid::new_v4(),
            lease_id: uuid::Uuid::new_v4(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_percent_is_written_only_half_a_second_after_the_last_write() {
        let t0 = Instant::now();
        let last = Written {
            at: t0,
            done: 10,
            percent: Some(10),
        };
        // Same percent: never, however long after.
        assert!(!write_due(last, t0 + ms(10_000), 109, Some(1000)));
        // A new percent: not before 500 ms, then yes.
        assert!(!write_due(last, t0 + ms(499), 110, Some(1000)));
        assert!(write_due(last, t0 + ms(500), 110, Some(1000)));
        // Going back (a mirror restarted from 0) is a change too.
        assert!(write_due(last, t0 + ms(500), 0, Some(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_hundred_percent_is_written_at_once_and_once() {
        let t0 = Instant::now();
        let last = Written {
            at: t0,
            done: 999,
            percent: Some(99),
        };
        assert!(write_due(last, t0, 1000, Some(1000)));
        let after = Written {
            at: t0,
            done: 1000,
            percent: Some(100),
        };
        assert!(!write_due(after, t0 + ms(10_000), 1000, Some(1000)));
        // 99.99 % is not 100 %.
        assert_eq!(percent(9_999, Some(10_000)), Some(99));
        assert_eq!(percent(u64::MAX - 1, Some(u64::MAX)), Some(99));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_total_new_bytes_are_written_every_five_seconds() {
        let t0 = Instant::now();
        let last = Written {
            at: t0,
            done: 1,
            percent: None,
        };
        assert!(!write_due(last, t0 + ms(4_999), 2, None));
        assert!(write_due(last, t0 + UNKNOWN_TOTAL_GAP, 2, None));
        assert!(!write_due(last, t0 + ms(60_000), 1, None));
    }

    /// A download of 10 MB over 20 s in 1,000 chunks (20 ms apart), the board checked every
    /// 100 ms: at most one write per whole percent and per half second, plus the final 100 %.
    #[tokio::test(start_paused = true)]
    async fn a_steady_download_is_written_at_most_once_per_percent_and_half_second() {
        let board = ProgressBoard::default();
        let l = lease();
        let total = 10_000_000u64;
        let start = Instant::now();
        let mut writes: Vec<(Instant, u64)> = Vec::new();
        for chunk in 1..=1000u64 {
            tokio::time::advance(ms(20)).await;
            board.set(l, chunk * 10_000, Some(total));
            if chunk % 5 == 0 || chunk == 1000 {
                let now = Instant::now();
                for u in board.take(now) {
                    if u.write {
                        writes.push((now, u.done));
                    }
                }
            }
        }
        let elapsed = Instant::now() - start;
        assert!(writes.len() <= 101, "{} writes", writes.len());
        assert!(
            writes.len() as u128 <= elapsed.as_millis() / 500 + 2,
            "{} writes in {elapsed:?}",
            writes.len()
        );
        for pair in writes.windows(2) {
            // The final 100 % is the one write that does not wait for the gap.
            if pair[1].1 != total {
                assert!(pair[1].0 - pair[0].0 >= MIN_WRITE_GAP, "{pair:?}");
            }
            assert_ne!(
                percent(pair[0].1, Some(total)),
                percent(pair[1].1, Some(total))
            );
        }
        assert_eq!(
            writes.last().unwrap().1,
            total,
            "the final 100 % is written"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_download_is_written_once_at_the_end() {
        let board = ProgressBoard::default();
        let l = lease();
        for done in (0..=1000).step_by(10) {
            board.set(l, done, Some(1000));
        }
        let updates = board.take(Instant::now());
        assert_eq!(
            updates,
            vec![ProgressUpdate {
                lease: l,
                done: 1000,
                total: Some(1000),
                write: true
            }]
        );
        assert!(board.take(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_change_is_written_once_the_gap_has_passed() {
        let board = ProgressBoard::default();
        let l = lease();
        board.set(l, 50, Some(1000));
        let first = board.take(Instant::now());
        assert!(
            !first[0].write,
            "5 % at the claim's moment waits for the gap"
        );
        tokio::time::advance(ms(500)).await;
        // No new chunk arrived, yet the pending 5 % is now due.
        let later = board.take(Instant::now());
        assert_eq!(later.len(), 1);
        assert!(later[0].write);
        assert_eq!(later[0].done, 50);
        board.remove(&l);
        assert!(board.take(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_final_byte_wakes_the_flusher() {
        let board = ProgressBoard::default();
        let l = lease();
        board.set(l, 999, Some(1000));
        let woken = tokio::time::timeout(ms(10), board.final_byte()).await;
        assert!(woken.is_err(), "not yet the final byte");
        board.set(l, 1000, Some(1000));
        tokio::time::timeout(ms(10), board.final_byte())
            .await
            .expect("woken by the final byte");
    }
}
