//! The process's exit codes, shared by the commands (`cli`) and the operator commands
//! (`admin`).

/// Bad usage or configuration (a setting, a link that is not Douyin's): fix the input.
pub(crate) const USAGE: u8 = 2;
/// Something failed at run time.
pub(crate) const FAILURE: u8 = 1;
/// `extract` / `get`: the video is unavailable for good (deleted, private, region-blocked).
pub(crate) const PERMANENT: u8 = 3;
/// `extract` / `get`: a failure that may pass (network, captcha, rate limit).
pub(crate) const TRANSIENT: u8 = 4;
/// `extract` / `get`: Douyin answered in a shape no parser knows.
pub(crate) const DRIFT: u8 = 5;
/// `get`: stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it); nothing saved.
pub(crate) const INTERRUPTED: u8 = 130;
