//! The local disk: whether the temp folder (`TEMP_DIR`) can be used, how much room is left
//! under it (`MIN_FREE_DISK` pauses claiming below it), whether an I/O error means the disk
//! is full, and the mode of files meant to be read by others (the process umask honoured).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Checks that `dir` is a folder this process can write in, creating it (and its parents)
/// when missing. The error says what is wrong with it, without naming the setting.
pub(crate) fn check_temp_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err("not a folder (a file is there)".into()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it ({e})"))?;
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err("not a folder (a file is on its path)".into());
        }
        Err(e) => return Err(format!("cannot read it ({e})")),
    }
    tempfile::Builder::new()
        .prefix(".douyin-worker-probe-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot write in it ({e})"))
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub(crate) fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: `c` is a NUL-terminated path and `stat` a plain struct statvfs fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

/// The free-space rule of the temp folder: at least `min_free` bytes free under `dir`.
#[derive(Clone, Debug)]
pub struct FreeSpace {
    dir: PathBuf,
    min_free: u64,
}

/// Too little room under the temp folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowDisk {
    /// Bytes free.
    pub free: u64,
    /// `MIN_FREE_DISK`.
    pub min_free: u64,
}

impl fmt::Display for LowDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes free under TEMP_DIR, below MIN_FREE_DISK={}",
            self.free, self.min_free
        )
    }
}

impl FreeSpace {
    /// At least `min_free` bytes under `dir` (`0`: no rule).
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> Self {
        Self {
            dir: dir.into(),
            min_free,
        }
    }

    /// Measures the free space (and records it in the `douyin_temp_free_bytes` gauge);
    /// `Some` when it is below the rule. A folder that cannot be measured (removed since
    /// start-up) does not stop claiming: the job that needs it says what is wrong.
    pub fn low(&self) -> Option<LowDisk> {
        let free = match free_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot measure the free space of the temp folder");
                return None;
            }
        };
        metrics::gauge!(crate::metrics::TEMP_FREE_BYTES).set(free as f64);
        (free < self.min_free).then_some(LowDisk {
            free,
            min_free: self.min_free,
        })
    }
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)` would change it
/// for a moment under the other threads); `0o022` where that is not available.
pub fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// The mode of a file meant to be read by others (a served object, `get`'s output): what
/// `open(2)` gives a new file, `0o666` less the umask.
pub(crate) fn shared_file_mode() -> u32 {
    0o666 & !umask()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_a_path_under_a_file_is_no_temp_folder_and_a_missing_one_is_created() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_temp_dir(&file).unwrap_err().contains("not a folder"));
        let under = file.join("sub");
        assert!(check_temp_dir(&under).unwrap_err().contains("not a folder"));
        let missing = root.path().join("a/b");
        check_temp_dir(&missing).unwrap();
        assert!(missing.is_dir());
        assert_eq!(
            std::fs::read_dir(&missing).unwrap().count(),
            0,
            "the probe is gone"
        );
    }

    #[test]
    fn free_space_is_measured_and_compared_with_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert_eq!(FreeSpace::new(dir.path(), 0).low(), None);
        let low = FreeSpace::new(dir.path(), u64::MAX).low().unwrap();
        assert_eq!(low.min_free, u64::MAX);
        assert!(low.to_string().contains("below MIN_FREE_DISK="));
        assert_eq!(FreeSpace::new("/nonexistent/dir", u64::MAX).low(), None);
    }

    #[test]
    fn enospc_and_quota_errors_are_a_full_disk() {
        assert!(is_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
    }

    #[test]
    fn the_shared_mode_is_the_umask_applied_to_0666() {
        let mask = umask();
        assert_eq!(shared_file_mode(), 0o666 & !mask);
        // What open(2) gives a new file agrees.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::File::create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, shared_file_mode());
    }
}
