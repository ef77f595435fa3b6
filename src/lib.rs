//! douyin-worker: claims Douyin download jobs from a queue (PostgreSQL, Supabase or an
//! embedded SQLite file), turns each link into a direct watermark-free media URL, streams
//! the file down, validates it, stores it, and records every step in the database.
//!
//! # Layout
//! - [`cli`]: the command line; `main` only calls [`cli::main`].
//! - [`admin`]: the operator commands `stats`, `jobs`, `retry` and `gc`.
//! - [`config`]: settings from flags, environment and `.env`, validated at start-up.
//! - [`queue`]: the [`queue::JobQueue`] trait and its backends ([`queue::postgres`],
//!   [`queue::sqlite`], [`queue::rest`]); `migrations/` holds the reference SQL.
//! - [`worker`]: the loop that claims, runs and records jobs; graceful shutdown.
//! - [`stage`]: the stages' shared words (the job as the stages see it, the media source,
//!   the downloaded file, the job context) and the four stage traits.
//! - [`pipeline`]: extract → download → validate → upload, over one implementation of each.
//! - [`error`]: job errors that know whether a retry can help; [`exit`]: the exit codes.
//! - [`net`]: the network rules shared by extraction and download: which hosts are Douyin's
//!   and the `DOUYIN_UPSTREAM` rewrite ([`net::upstream`]), and the public-address guard on
//!   every URL, redirect hop and resolved address ([`net::guard`]).
//! - [`redact`]: upstream text made safe to log and store (secrets scrubbed, controls escaped).
//! - [`retry`]: exponential backoff with full jitter.
//! - [`workdir`]: per-job temp folders removed on every exit path.
//! - [`supabase`]: what kind a Supabase API key is.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` and the UI's download API ([`http::api`]).
//! - [`metrics`]: the Prometheus metric names and recorder.
//! - [`shutdown`], [`telemetry`]: signals and logging.

#![warn(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod download;
pub mod error;
pub mod exit;
pub mod extract;
pub mod get;
pub mod http;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod queue;
pub mod redact;
pub mod retry;
pub mod shutdown;
pub mod stage;
pub mod storage;
pub mod supabase;
pub mod telemetry;
pub mod validate;
pub mod workdir;
pub mod worker;
