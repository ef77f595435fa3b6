//! What several test files share.
//!
//! - [`backends`]: the queue on every backend (PostgreSQL, SQLite, Supabase REST) and the
//!   suite-runner macro.
//! - [`stages`]: stage stand-ins for the worker and pipeline tests.
//! - [`privileges`]: child processes without capabilities (file modes stop root too).

pub mod backends;
pub mod privileges;
pub mod stages;
