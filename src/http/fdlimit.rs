//! File descriptors: the process raises its own limit, and the HTTP server keeps to a share.
//!
//! Every connection the HTTP server holds is a descriptor, and so is every database
//! connection, download, temp file and store connection of the jobs. Distributions start
//! processes with a soft limit of 1024 (or less) below a much higher hard limit, so the
//! worker raises its soft limit to the hard one at start-up. The HTTP server then holds at
//! most `HTTP_SHARE` of the limit, split between its listeners: connections beyond it
//! could only take descriptors the jobs need, and a cap above what the limit allows would
//! protect nothing.

/// The share of the descriptor limit the HTTP server's connections may hold: a quarter. The
/// rest is for the jobs (database pool, downloads, temp files, the store, the browser).
pub(crate) const HTTP_SHARE: u64 = 4;

/// The soft descriptor limit before and after [`raise_nofile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now (the hard limit, unless raising it failed).
    pub after: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to 1,048,576 when the hard limit is
/// unlimited). Errors (a sandbox refusing `setrlimit`) are reported with the limit kept.
pub fn raise_nofile() -> Result<NoFile, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given; nothing else is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "cannot read the descriptor limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    let before: u64 = lim.rlim_cur;
    let hard: u64 = lim.rlim_max;
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        hard
    };
    if before >= target {
        return Ok(NoFile {
            before,
            after: before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!(
            "cannot raise the descriptor limit from {before} to {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(NoFile {
        before,
        after: target,
        hard,
    })
}

/// The current soft descriptor limit, if it can be read.
pub(crate) fn current_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in raise_nofile.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// The connection cap of each of `listeners` listeners: the setting, lowered to its part of
/// [`HTTP_SHARE`] of the descriptor limit `nofile` (at least 1). Pure, for the tests.
pub(crate) fn connection_cap(setting: usize, nofile: Option<u64>, listeners: usize) -> usize {
    let Some(nofile) = nofile else {
        return setting.max(1);
    };
    let share = nofile / HTTP_SHARE / listeners.max(1) as u64;
    setting.min(share.min(usize::MAX as u64) as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_to_a_quarter_of_the_descriptors_split_between_listeners() {
        assert_eq!(connection_cap(512, Some(1_048_576), 2), 512);
        assert_eq!(connection_cap(512, Some(1024), 1), 256);
        assert_eq!(connection_cap(512, Some(256), 2), 32);
        assert_eq!(connection_cap(512, Some(3), 2), 1);
        assert_eq!(connection_cap(100, None, 2), 100);
    }

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_limit() {
        let raised = raise_nofile().unwrap();
        assert!(raised.after >= raised.before);
        assert_eq!(current_nofile(), Some(raised.after));
    }
}
