//! The HTTP listeners (`HTTP_ADDR`, `API_ADDR`): each address bound and released at once, so
//! a port another process holds shows before `run` fails on it.

use std::time::Instant;

use super::{Check, Outcome};
use crate::config::HttpSettings;

/// One check per listener.
pub async fn checks(http: &HttpSettings) -> Vec<Check> {
    let mut checks = Vec::new();
    for (setting, addr) in [("HTTP_ADDR", http.http_addr), ("API_ADDR", http.api_addr)] {
        let name = format!("listener {setting}");
        let Some(addr) = addr else {
            let why = if setting == "HTTP_ADDR" {
                "HTTP_ADDR=off: no health or metrics server"
            } else if http.api_enabled {
                "the download API shares HTTP_ADDR"
            } else {
                "API_ADDR is not set: no download API listener"
            };
            checks.push(Check::new(name, 0, Outcome::skip(why)));
            continue;
        };
        let started = Instant::now();
        let outcome = match crate::http::bind(addr, setting).await {
            Ok(listener) => {
                drop(listener);
                Outcome::pass(format!("{addr} is free"))
            }
            Err(why) => Outcome::fail(
                why,
                "is another worker running on this machine? give each process its own port",
            ),
        };
        checks.push(Check::new(
            name,
            started.elapsed().as_millis() as u64,
            outcome,
        ));
    }
    checks
}
