//! Per-job temp folders: created on first use, owner-only, removed when the job ends on
//! every path (success, error, cancellation, panic) because removal is a `Drop`.
//!
//! Names carry the process id (`douyin-worker-{pid}-{job id}`), so a worker starting up can
//! remove the folders of processes that died without cleaning up (`kill -9`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use uuid::Uuid;

const PREFIX: &str = "douyin-worker-";

/// A job's temp folder.
#[derive(Debug)]
pub(crate) struct JobWorkdir {
    path: PathBuf,
    created: OnceLock<()>,
}

impl JobWorkdir {
    /// The folder for `job_id` under `root`; nothing is created yet.
    pub fn new(root: &Path, job_id: Uuid) -> Self {
        Self {
            path: root.join(format!(
                "{PREFIX}{}-{}",
                std::process::id(),
                job_id.simple()
            )),
            created: OnceLock::new(),
        }
    }

    /// The folder, created (mode 0700) on first call.
    pub fn path(&self) -> io::Result<&Path> {
        if self.created.get().is_none() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)?;
            let _ = self.created.set(());
        }
        Ok(&self.path)
    }

    /// Where the folder is (or would be).
    pub fn location(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobWorkdir {
    fn drop(&mut self) {
        if self.created.get().is_some()
            && let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove job temp folder");
        }
    }
}

/// Removes the job folders under `root` left by worker processes that no longer run.
/// Returns how many were removed.
pub(crate) fn remove_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 == std::process::id() || process_alive(pid) {
            continue;
        }
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // Signal 0 checks existence; EPERM means it exists under another user.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_lazily_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = JobWorkdir::new(root.path(), Uuid::new_v4());
        assert!(!dir.location().exists());
        let p = dir.path().unwrap().to_path_buf();
        std::fs::write(p.join("part"), b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(dir);
        assert!(!p.exists());
    }

    #[test]
    fn stale_folders_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().unwrap();
        // A pid far above pid_max never runs.
        let dead = root.path().join(format!("{PREFIX}999999999-abc"));
        let mine = root
            .path()
            .join(format!("{PREFIX}{}-def", std::process::id()));
        let other = root.path().join("unrelated");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        assert_eq!(remove_stale(root.path()), 1);
        assert!(!dead.exists());
        assert!(mine.exists());
        assert!(other.exists());
    }
}
