//! Child processes that obey file modes, as root too.

/// Drops every capability of the process about to run (root included, whom file modes
/// would not stop otherwise): out of the bounding set, so that `execve` does not grant them
/// back to uid 0. The child then obeys file modes like any user.
pub fn without_capabilities(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return; // a user without capabilities already
    }
    // SAFETY: only prctl(2), async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for cap in 0..64 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    let e = std::io::Error::last_os_error();
                    // EINVAL: past the last capability this kernel knows.
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
    }
}
