//! Extraction benchmark: 1,000 extractions against the loopback Douyin fixture server
//! (through `DOUYIN_UPSTREAM`), one after another, for the old share page (record in the
//! page) and the new one (page, then the item-info API). Prints links per second and
//! p50 / p99 latency; asserts nothing. `cargo bench --bench extract`; `BENCH_LINKS` sets the
//! count.

use std::time::{Duration, Instant};

use douyin_worker::extract::client::ClientOptions;
use douyin_worker::extract::{DouyinExtractor, ExtractOptions};
use douyin_worker::net::upstream::Upstream;
use fakes::douyin::{Behaviour, DouyinServer, video_post};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let links: usize = std::env::var("BENCH_LINKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let old = "7412345678901234567";
    let new = "7412345678901234568";
    let server = DouyinServer::start(vec![
        video_post(old, Behaviour::OldSharePage),
        video_post(new, Behaviour::NewSharePage),
    ])
    .await;
    server.add_short_link(
        "iRNBho6u",
        &format!("https://www.iesdouyin.com/share/video/{new}/?region=CN"),
    );
    let x = DouyinExtractor::new(ExtractOptions {
        client: ClientOptions {
            upstream: Upstream::rewrite_to(server.url.parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    println!("douyin-worker extraction benchmark (loopback fixture server, sequential)");
    println!("| case | links | links/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (case, input) in [
        ("old share page (record in page)", old.to_string()),
        ("new share page + H5 item info", new.to_string()),
        (
            "short link + new page + item info",
            "https://v.douyin.com/iRNBho6u/".to_string(),
        ),
    ] {
        // Warm the connection pool.
        x.extract(&input).await.expect("extraction");
        let mut lat = Vec::with_capacity(links);
        let t0 = Instant::now();
        for _ in 0..links {
            let t = Instant::now();
            x.extract(&input).await.expect("extraction");
            lat.push(t.elapsed());
        }
        let total = t0.elapsed();
        lat.sort();
        println!(
            "| {case} | {links} | {:.0} | {:.2} ms | {:.2} ms |",
            links as f64 / total.as_secs_f64(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
}
