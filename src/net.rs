//! The network rules shared by the stages that fetch for a job (extraction and download):
//!
//! - [`upstream`]: which hosts are Douyin's (cookies go only there), and the
//!   `DOUYIN_UPSTREAM` rewrite that sends their requests to a local stand-in;
//! - [`guard`]: the public-address guard on every URL, redirect hop and resolved address.

pub mod guard;
pub mod upstream;
