//! The HTTP listeners (`HTTP_ADDR`, `API_ADDR`): each address bound and released at once, so
//! a port another process holds shows before `run` fails on it. A port held by a worker that
//! is running (its health route answers) is a warning, not a failure: `doctor` run next to
//! the deployment it checks (a cron job) finds it there, and that worker is what works.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Check, Outcome};
use crate::config::HttpSettings;

/// How long the running worker's health route may take to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// One check per listener.
pub async fn checks(http: &HttpSettings) -> Vec<Check> {
    let mut checks = Vec::new();
    let listeners = [
        ("HTTP_ADDR", http.http_addr, "/healthz"),
        ("API_ADDR", http.api_addr, "/health"),
    ];
    for (setting, addr, health) in listeners {
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
            Err(_) if worker_answers(addr, health).await => Outcome::warn(
                format!("{addr} is in use by a running worker (GET {health} answers ok)"),
                format!("a second process on this machine needs its own {setting}"),
            ),
            Err(why) => Outcome::fail(
                why,
                "is another program or worker using it? give each process its own port",
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

/// Whether a douyin-worker answers its health route at `addr` (`{"status":"ok"}`).
async fn worker_answers(addr: SocketAddr, path: &str) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(HEALTH_TIMEOUT)
        .build()
    else {
        return false;
    };
    let Ok(answer) = client.get(format!("http://{target}{path}")).send().await else {
        return false;
    };
    if !answer.status().is_success() {
        return false;
    }
    answer
        .json::<serde_json::Value>()
        .await
        .is_ok_and(|body| body["status"] == "ok")
}
