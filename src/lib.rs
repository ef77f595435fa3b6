//! douyin-worker: claims Douyin download jobs from a queue (PostgreSQL, Supabase or an
//! embedded SQLite file), turns each link into a direct watermark-free media URL, streams
//! the file down, validates it, stores it, and records every step in the database.
//!
//! # Layout
//!
//! A job's way, from the stages down:
//! - [`stage`]: the stages' shared words (the job as the stages see it, the media source,
//!   the downloaded file, the job context) and the four stage traits.
//! - [`extract`]: a Douyin link to a media URL (link forms, the strategy chain, the browser).
//! - [`download`]: the media streamed into the job's temp folder, resumed and checked.
//! - [`validate`]: the file is what it claims to be (MP4, images, MP3).
//! - [`storage`]: the file stored under its key (Supabase Storage, S3/GCS/Azure, a folder).
//! - [`cover`]: each video's cover picture stored beside it, for thumbnails that last.
//! - [`pipeline`]: extract → download → validate → upload, over one implementation of each.
//! - [`worker`]: the loop that claims jobs, runs the pipeline, records outcomes; shutdown.
//! - [`queue`]: [`queue::JobQueue`] (the worker's lease life cycle) and [`queue::QueueAdmin`]
//!   (the commands' and the API's), with a backend each for PostgreSQL, Supabase REST and
//!   SQLite, and the migrations.
//!
//! Around them:
//! - [`cli`]: the command line, the wiring of `run` and `get` (one link to a local file);
//!   `main` only calls [`cli::main`].
//!   [`admin`]: `stats`, `jobs`, `retry`, `gc`. [`doctor`]: what works, each part checked
//!   live with `run`'s configuration.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` and the UI's download API ([`http::api`]).
//! - [`config`]: the settings in groups, from flags, environment and `.env`.
//!
//! The ground floor (imports nothing above it):
//! - [`net`]: the network rules shared by extraction and download: which hosts are Douyin's
//!   and the `DOUYIN_UPSTREAM` rewrite ([`net::upstream`]), and the public-address guard on
//!   every URL, redirect hop and resolved address ([`net::guard`]).
//! - [`error`]: job errors that know whether a retry can help; [`exit`]: the exit codes.
//! - [`redact`]: upstream text made safe to log and store (secrets scrubbed, controls escaped).
//! - [`retry`]: [`retry::RetryPolicy`] between a job's attempts, `retry::Backoff` in the
//!   in-process retry loops.
//! - [`workdir`]: per-job temp folders removed on every exit path; [`disk`]: the temp
//!   folder's checks and free space, a full disk, the mode of shared files.
//! - [`supabase`]: what kind a Supabase API key is.
//! - [`metrics`]: the Prometheus metric names and recorder; [`telemetry`]: logging;
//!   [`shutdown`]: signals; [`readiness`]: the named reasons `/readyz` reports.

#![warn(missing_docs)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod cover;
pub mod disk;
pub mod doctor;
pub mod download;
pub mod error;
pub mod exit;
pub mod extract;
pub mod http;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod queue;
pub mod readiness;
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
