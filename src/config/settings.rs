//! The raw settings shared by every subcommand: the groups' clap arguments flattened into one
//! command line, each also read from its environment variable. Values stay strings here; each
//! group's `resolve` parses them so an error can name where a bad value came from.

use clap::Args;

use super::browser::BrowserArgs;
use super::download::DownloadArgs;
use super::events::EventsArgs;
use super::extract::ExtractArgs;
use super::http::HttpArgs;
use super::log::LogArgs;
use super::net::NetArgs;
use super::queue::QueueArgs;
use super::storage::StorageArgs;
use super::supabase::SupabaseArgs;
use super::worker::WorkerArgs;

/// The settings shared by every subcommand, as raw strings, in groups.
#[derive(Args, Debug, Clone, Default)]
pub struct RawSettings {
    /// The Supabase project.
    #[command(flatten)]
    pub supabase: SupabaseArgs,
    /// Where the queue lives.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The worker loop.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Extraction.
    #[command(flatten)]
    pub extract: ExtractArgs,
    /// The browser strategy.
    #[command(flatten)]
    pub browser: BrowserArgs,
    /// The network rules.
    #[command(flatten)]
    pub net: NetArgs,
    /// Downloads.
    #[command(flatten)]
    pub download: DownloadArgs,
    /// Storage.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The HTTP server and the download API.
    #[command(flatten)]
    pub http: HttpArgs,
    /// The download API's events streams.
    #[command(flatten)]
    pub events: EventsArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}
