//! The Supabase project: its URL and service role key. They serve the queue (Supabase-only
//! mode, over the REST API) and the store (Supabase Storage). The anon key, optional, serves
//! only `doctor`, which checks live that it can call none of the worker's functions.

use clap::Args;
use url::Url;

use super::field::{Fields, field};
use super::{ConfigError, Secret};

/// `SUPABASE_URL`, `SUPABASE_SERVICE_ROLE_KEY`, `SUPABASE_ANON_KEY`.
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

    /// The project's anon (public) key: `doctor` checks that it can call none of the worker's
    /// functions. Nothing else uses it. Never logged.
    #[arg(
        long,
        env = "SUPABASE_ANON_KEY",
        global = true,
        value_name = "KEY",
        hide_env_values = true
    )]
    pub supabase_anon_key: Option<String>,
}

/// A Supabase project the worker may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Supabase {
    /// The project URL.
    pub url: Url,
    /// The service role key.
    pub key: Secret,
    /// The anon key (`SUPABASE_ANON_KEY`), for `doctor`'s check of what it may not do.
    pub anon_key: Option<Secret>,
}

impl SupabaseArgs {
    /// Both settings or neither; a key that is recognisably not a service key is refused, and
    /// so is an anon key that is recognisably a service key, or one without the project.
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
        let anon_f = field!(f, self.supabase_anon_key);
        let anon_key = match anon_f.given() {
            Some(anon) => {
                check_anon_key(anon).map_err(|why| anon_f.fail(why))?;
                Some(Secret::new(anon))
            }
            None => None,
        };
        match (url, key) {
            (Some(url), Some(key)) => Ok(Some(Supabase { url, key, anon_key })),
            (None, None) if anon_key.is_some() => Err(ConfigError(
                "SUPABASE_ANON_KEY is set but SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are \
                 not: the anon key is checked against the project they name"
                    .into(),
            )),
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

/// Refuses an anon key that is recognisably a service key: checking that it is refused would
/// prove nothing, and a service key has no business in a setting meant to be public.
fn check_anon_key(key: &str) -> Result<(), String> {
    use crate::supabase::{KeyKind, key_kind};
    match key_kind(key) {
        KeyKind::Secret | KeyKind::ServiceRoleJwt => Err(
            "this is a service key, not the anon key: use the project's anon (legacy JWT) or \
             publishable (sb_publishable_…) key"
                .into(),
        ),
        _ => Ok(()),
    }
}
