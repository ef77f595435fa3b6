//! The stand-ins and launchers douyin-worker's tests and benchmarks run against, apart from
//! the tests themselves (a dev-only crate of the workspace, not published).
//!
//! Stand-ins, where the real server cannot run here, each built from a wire contract:
//!
//! - [`douyin`]: Douyin's pages and APIs, answering the captured shapes of
//!   `tests/fixtures/douyin/` (reached through `DOUYIN_UPSTREAM`).
//! - [`cdn`]: a raw loopback CDN serving media with the faults a real one has (drops, stalls,
//!   lies about lengths, 403s).
//! - [`postgrest`]: Supabase's REST API's RPC (PostgREST), from `../shared/contracts/
//!   postgrest-rpc.md`, running each call on the real PostgreSQL under `SET ROLE`.
//! - [`storage_api`]: Supabase Storage (storage-api), from `../shared/contracts/
//!   supabase-storage.md`.
//!
//! Real servers:
//!
//! - [`pg`]: the throwaway PostgreSQL cluster and a database of its own per test.
//! - [`servers`]: s3s-fs, Azurite, fake-gcs-server and moto, and the one way to pick a free
//!   port and wait for a server.

pub mod cdn;
pub mod douyin;
pub mod pg;
pub mod postgrest;
pub mod servers;
pub mod storage_api;
