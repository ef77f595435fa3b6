//! The download API's events streams (`GET /api/videos/{id}/events`): heartbeats, lifetime,
//! caps, and how often processes that cannot LISTEN poll.

use std::time::Duration;

use clap::Args;

use super::ConfigError;
use super::field::{Fields, field};

/// `API_EVENTS_HEARTBEAT_SECONDS`, `API_EVENTS_MAX_SECONDS`, `API_EVENTS_PER_CLIENT`,
/// `API_EVENTS_MAX_STREAMS`, `API_EVENTS_POLL_MS`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: download API events streams")]
pub struct EventsArgs {
    /// Seconds between two heartbeat comments of an events stream (keeps proxies from closing
    /// it).
    #[arg(
        long,
        env = "API_EVENTS_HEARTBEAT_SECONDS",
        global = true,
        value_name = "S",
        default_value = "15"
    )]
    pub api_events_heartbeat_seconds: Option<String>,

    /// Longest life of one events stream, in seconds; then it ends and the browser reconnects
    /// with `Last-Event-ID`.
    #[arg(
        long,
        env = "API_EVENTS_MAX_SECONDS",
        global = true,
        value_name = "S",
        default_value = "1800"
    )]
    pub api_events_max_seconds: Option<String>,

    /// Events streams one client may hold open at once.
    #[arg(
        long,
        env = "API_EVENTS_PER_CLIENT",
        global = true,
        value_name = "N",
        default_value = "4"
    )]
    pub api_events_per_client: Option<String>,

    /// Events streams the process holds open at once, all clients together.
    #[arg(
        long,
        env = "API_EVENTS_MAX_STREAMS",
        global = true,
        value_name = "N",
        default_value = "1000"
    )]
    pub api_events_max_streams: Option<String>,

    /// Milliseconds between two reads of the watched videos where LISTEN cannot work (Supabase
    /// REST, a transaction-mode pooler).
    #[arg(
        long,
        env = "API_EVENTS_POLL_MS",
        global = true,
        value_name = "MS",
        default_value = "1000"
    )]
    pub api_events_poll_ms: Option<String>,
}

/// The events streams' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsSettings {
    /// Between two heartbeat comments.
    pub heartbeat: Duration,
    /// Longest life of a stream.
    pub max_lifetime: Duration,
    /// Open streams per client.
    pub per_client: usize,
    /// Open streams in all.
    pub max_streams: usize,
    /// Between two polls of the watched videos.
    pub poll_interval: Duration,
}

impl EventsArgs {
    /// The events settings.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<EventsSettings, ConfigError> {
        Ok(EventsSettings {
            heartbeat: field!(f, self.api_events_heartbeat_seconds).seconds(1, 300)?,
            max_lifetime: field!(f, self.api_events_max_seconds).seconds(1, 86_400)?,
            per_client: field!(f, self.api_events_per_client).number(1, 10_000)?,
            max_streams: field!(f, self.api_events_max_streams).number(1, 1_000_000)?,
            poll_interval: Duration::from_millis(
                field!(f, self.api_events_poll_ms).number(50, 600_000)?,
            ),
        })
    }
}

impl Default for EventsSettings {
    /// The declared defaults (what an empty command line and environment give).
    fn default() -> Self {
        EventsArgs::default()
            .resolve(&Fields::default())
            .expect("the declared defaults are valid")
    }
}
