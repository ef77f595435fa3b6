//! The temp folder: a folder this process can write in (created when missing, as `run`
//! does; a few kilobytes written, so a full disk shows), and its free space against
//! `MIN_FREE_DISK`, below which `run` claims no job.

use std::io::Write;
use std::time::Instant;

use super::{Check, Outcome};
use crate::admin::table::bytes;
use crate::config::WorkerSettings;

/// Bytes written by the probe: enough for a full file system to refuse them.
const PROBE_BYTES: usize = 64 * 1024;

/// The temp folder's checks: `temp folder` and `free space`.
pub fn checks(worker: &WorkerSettings) -> Vec<Check> {
    let started = Instant::now();
    let writable = writable(worker);
    let ms = started.elapsed().as_millis() as u64;
    let usable = writable.status == super::Status::Pass;
    let writable = Check::new("temp folder", ms, writable);
    let started = Instant::now();
    let free = if usable {
        free_space(worker)
    } else {
        Outcome::skip("the temp folder cannot be used")
    };
    vec![
        writable,
        Check::new("free space", started.elapsed().as_millis() as u64, free),
    ]
}

fn writable(worker: &WorkerSettings) -> Outcome {
    let dir = &worker.temp_dir;
    let shown = dir.display();
    let advice = "set TEMP_DIR to a folder this user can write in, on a disk with room";
    if let Err(why) = crate::disk::check_temp_dir(dir) {
        return Outcome::fail(format!("TEMP_DIR={shown}: {why}"), advice);
    }
    let written = tempfile::Builder::new()
        .prefix(".douyin-worker-doctor-")
        .tempfile_in(dir)
        .and_then(|mut f| {
            f.write_all(&[0u8; PROBE_BYTES])?;
            f.as_file().sync_all()
        });
    match written {
        Ok(()) => Outcome::pass(format!("TEMP_DIR={shown} is writable")),
        Err(e) if crate::disk::is_full(&e) => {
            Outcome::fail(format!("TEMP_DIR={shown}: the disk is full ({e})"), advice)
        }
        Err(e) => Outcome::fail(
            format!("TEMP_DIR={shown}: cannot write in it ({e})"),
            advice,
        ),
    }
}

fn free_space(worker: &WorkerSettings) -> Outcome {
    let min = worker.min_free_disk;
    match crate::disk::free_bytes(&worker.temp_dir) {
        Ok(free) if free >= min => Outcome::pass(format!(
            "{} free, MIN_FREE_DISK={}",
            bytes(free),
            bytes(min)
        )),
        Ok(free) => Outcome::fail(
            format!(
                "{} free, below MIN_FREE_DISK={}: `run` would claim no job",
                bytes(free),
                bytes(min)
            ),
            "free some space under TEMP_DIR, move TEMP_DIR to a larger disk, or lower MIN_FREE_DISK",
        ),
        Err(e) => Outcome::fail(
            format!("cannot measure the free space of TEMP_DIR ({e})"),
            "check TEMP_DIR",
        ),
    }
}
