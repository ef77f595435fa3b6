//! The Supabase project: its URL and service role key. They serve the queue (Supabase-only
//! mode, over the REST API) and the store (Supabase Storage).

use clap::Args;
use url::Url;

use super::field::{Fields, field};
use super::{ConfigError, Secret};

/// `SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared settings: Supabase")]
pub struct SupabaseArgs {
    /// Supabase project URL (Supabase mode, and Supabase Storage).
    #[arg(long, env = "SUPABASE_URL", global = true, value_name = "URL")]
    pub supabase_url: Option<String>,

    /// Supabase service role key (a legacy JWT or an `sb_secret_...` key). Never logged.
    #[arg(
        long,
        env = "SUPABASE_SERVICE_ROLE_KEY",
        global = true,
        value_name = "KEY",
        hide_env_values = true
    )]
    pub supabase_service_role_key: Option<String>,
}

/// A Supabase project the worker may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supabase {
    /// The project URL.
    pub url: Url,
    /// The service role key.
    pub key: Secret,
}

impl SupabaseArgs {
    /// Both settings or neither; a key that is recognisably not a service key is refused.
    pub(crate) fn resolve(&self, f: &Fields) -> Result<Option<Supabase>, ConfigError> {
        let url = field!(f, self.supabase_url).http_url()?;
        let key_f = field!(f, self.supabase_service_role_key);
        let key = match key_f.given() {
            Some(key) => {
                crate::supabase::check_service_key(key).map_err(|why| key_f.fail(why))?;
                Some(Secret::new(key))
            }
            None => None,
        };
        match (url, key) {
            (Some(url), Some(key)) => Ok(Some(Supabase { url, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError(
                "SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not: set both, or neither"
                    .into(),
            )),
            (None, Some(_)) => Err(ConfigError(
                "SUPABASE_SERVICE_ROLE_KEY is set but SUPABASE_URL is not: set both, or neither"
                    .into(),
            )),
        }
    }
}
