//! The configuration: every setting valid (they were resolved before `doctor` started; here
//! the rules checked only when `run` starts: the object key template and the store's URL),
//! and which mode it selects.

use std::time::Instant;

use super::{CONFIGURATION, Check, Outcome};
use crate::config::{Config, QueueBackend, redact_url};

/// The mode's short name: `embedded`, `postgres` or `supabase`.
pub fn mode(config: &Config) -> &'static str {
    match config.queue.backend {
        QueueBackend::Sqlite { .. } => "embedded",
        QueueBackend::Postgres { .. } => "postgres",
        QueueBackend::Supabase => "supabase",
    }
}

/// The configuration's check: the mode, the queue and the store it names.
pub fn check(config: &Config) -> Check {
    let started = Instant::now();
    let outcome = outcome(config);
    Check::new(CONFIGURATION, started.elapsed().as_millis() as u64, outcome)
}

fn outcome(config: &Config) -> Outcome {
    let template = &config.storage.key_template;
    if let Err(why) = crate::storage::check_key_template(template) {
        return Outcome::fail(
            format!("OBJECT_KEY_TEMPLATE={template}: {why}"),
            "fix OBJECT_KEY_TEMPLATE (see the README's Configuration)",
        );
    }
    let store = match crate::storage::configured::backend(&config.storage, config.supabase.as_ref())
    {
        Ok(store) => store,
        Err(why) => {
            return Outcome::fail(
                why,
                "fix the storage setting named (see the README's Storage)",
            );
        }
    };
    let queue = match &config.queue.backend {
        QueueBackend::Sqlite { path } => format!("embedded: SQLite queue {}", path.display()),
        QueueBackend::Postgres { url } => format!(
            "PostgreSQL {} (pooler {})",
            redact_url(url.expose()),
            config.queue.db_pooler.as_str()
        ),
        QueueBackend::Supabase => format!(
            "Supabase only: queue over the REST API of {}",
            config
                .supabase
                .as_ref()
                .map(|s| s.url.as_str())
                .unwrap_or("?")
        ),
    };
    let where_ = match (&config.storage.url, store.provider()) {
        (None, "local") => format!(" in {}", config.storage.dir.display()),
        (Some(url), _) => format!(" at {url}"),
        _ => String::new(),
    };
    Outcome::pass(format!(
        "{queue}; store {} bucket {}{where_}",
        store.provider(),
        config.storage.bucket
    ))
}
