//! Douyin: each HTTP strategy run on its own against a known public video (`--video`) and
//! reported apart (found, unavailable, transient with the reason, drift), then the first bytes
//! of the file the worker would choose fetched from the CDN, as the downloader asks for it.
//!
//! `run` works while any strategy finds the record: a strategy that does not is a failure only
//! when none does (and Douyin did not say the video itself is gone); otherwise a warning.

use std::time::{Duration, Instant};

use super::{Check, Outcome};
use crate::config::Config;
use crate::download::{DownloadOptions, HttpDownloader};
use crate::extract::{
    DouyinExtractor, ExtractError, ExtractOptions, Extraction, Probe, ProbeOutcome, StrategyProbe,
};

/// Bytes asked of the CDN.
const FIRST_BYTES: u64 = 1024;

const ANOTHER_VIDEO: &str = "the video is gone or has no file: pass --video with a public video";

/// Douyin's checks, and the aweme id the video resolved to (for the browser's check).
pub(crate) struct DouyinChecks {
    /// One per strategy, then the CDN.
    pub checks: Vec<Check>,
    /// The video's aweme id, once known.
    pub aweme_id: Option<String>,
}

/// Douyin's checks with `video` (a link, share text or id).
pub async fn checks(config: &Config, video: &str, budget: Duration) -> DouyinChecks {
    let started = Instant::now();
    let mut opts = ExtractOptions::new(&config.extract, &config.browser, &config.net, 1);
    // The browser has a check of its own.
    opts.browser.enabled = false;
    // Each strategy has the budget; the whole, a margin for the short link and the rest.
    let whole = budget * 4;
    let probed = match DouyinExtractor::new(opts) {
        Ok(extractor) => tokio::time::timeout(whole, extractor.probe(video, budget))
            .await
            .map_err(|_| {
                Outcome::fail(
                    format!("no answer within {whole:?}"),
                    "Douyin hangs: check the network and proxy (HTTPS_PROXY)",
                )
            }),
        Err(why) => Err(Outcome::fail(why, "see the extraction settings")),
    };
    let ms = started.elapsed().as_millis() as u64;
    let probe = match probed {
        Ok(Ok(probe)) => probe,
        Ok(Err(e)) => return single(ms, unresolved(video, &e)),
        Err(outcome) => return single(ms, outcome),
    };
    let mut checks = strategy_checks(&probe);
    checks.push(cdn(config, &probe, budget).await);
    DouyinChecks {
        checks,
        aweme_id: Some(probe.aweme_id),
    }
}

fn single(ms: u64, outcome: Outcome) -> DouyinChecks {
    DouyinChecks {
        checks: vec![Check::new("douyin", ms, outcome)],
        aweme_id: None,
    }
}

/// The video could not even be named: not a Douyin link, or a short link not followed now.
fn unresolved(video: &str, e: &ExtractError) -> Outcome {
    match e {
        ExtractError::Unsupported(_) => Outcome::fail(
            format!("--video {video}: {e}"),
            "pass a Douyin link, share text or aweme id",
        ),
        _ => Outcome::fail(
            e.to_string(),
            "cannot reach Douyin: check the network and proxy",
        ),
    }
}

fn strategy_checks(probe: &Probe) -> Vec<Check> {
    let found = probe
        .strategies
        .iter()
        .any(|s| s.outcome == ProbeOutcome::Found);
    let gone = probe
        .strategies
        .iter()
        .any(|s| s.outcome == ProbeOutcome::Unavailable);
    let counted = !found && !gone;
    probe
        .strategies
        .iter()
        .map(|s| {
            let outcome = match s.outcome {
                ProbeOutcome::Found => Outcome::pass(format!("found {}", probe.aweme_id)),
                ProbeOutcome::Unavailable => {
                    Outcome::warn(format!("unavailable: {}", s.reason), ANOTHER_VIDEO)
                }
                ProbeOutcome::Skipped => Outcome::skip(s.reason.clone()),
                ProbeOutcome::Drift => Outcome::fail_if(
                    counted,
                    format!("drift: {}", s.reason),
                    "Douyin changed this answer: run `douyin-worker extract LINK --save DIR` and \
                     report it (README: When Douyin changes)",
                ),
                ProbeOutcome::Transient => Outcome::fail_if(
                    counted,
                    format!("transient ({}): {}", s.label, s.reason),
                    advice(s),
                ),
            };
            Check::new(format!("douyin {}", s.strategy), s.ms, outcome)
        })
        .collect()
}

fn advice(s: &StrategyProbe) -> &'static str {
    match s.label {
        "captcha" => {
            "Douyin answers this machine with a captcha: set DOUYIN_COOKIE from a \
                      logged-in browser"
        }
        "network" => "cannot reach Douyin: check the network, DNS and proxy (HTTPS_PROXY)",
        "http_status" => "Douyin refused the request: try again later, or set DOUYIN_COOKIE",
        "no_record" => {
            "this page or API had no record for the video (the share page's usual \
                        answer since August 2026); the other strategies stand in while one finds it"
        }
        _ => "may pass: try again later; if it stays, set DOUYIN_COOKIE",
    }
}

/// The first bytes of the chosen file, from the CDN.
async fn cdn(config: &Config, probe: &Probe, budget: Duration) -> Check {
    let extraction: &Extraction = match &probe.extraction {
        None => {
            return Check::new(
                "douyin CDN",
                0,
                Outcome::skip("no strategy found the video"),
            );
        }
        Some(Err(e)) => {
            return Check::new("douyin CDN", 0, Outcome::warn(e.to_string(), ANOTHER_VIDEO));
        }
        Some(Ok(x)) => x,
    };
    let source = match extraction.media_source() {
        Ok(source) => source,
        Err(e) => return Check::new("douyin CDN", 0, Outcome::warn(e.to_string(), ANOTHER_VIDEO)),
    };
    super::report::timed("douyin CDN", budget, async move {
        let downloader =
            match HttpDownloader::new(DownloadOptions::new(&config.download, &config.net)) {
                Ok(d) => d,
                Err(why) => return Outcome::fail(why, "see the download settings"),
            };
        match downloader.first_bytes(&source, FIRST_BYTES).await {
            Ok(first) if first.looks_like_mp4() || !source_is_video(extraction) => {
                Outcome::pass(format!(
                    "{} bytes of {} from mirror {} (HTTP {}, {})",
                    first.bytes.len(),
                    first.total.map_or("?".to_string(), |t| t.to_string()),
                    first.mirror,
                    first.status,
                    if first.looks_like_mp4() {
                        "an MP4"
                    } else {
                        "a picture"
                    }
                ))
            }
            Ok(first) => Outcome::fail(
                format!(
                    "mirror {} answered HTTP {} with {} bytes that are no MP4",
                    first.mirror,
                    first.status,
                    first.bytes.len()
                ),
                "the CDN serves something else (an error page?): try again later",
            ),
            Err(why) => Outcome::fail(
                format!("the CDN: {why}"),
                "cannot fetch Douyin's files from this machine: check the network and proxy",
            ),
        }
    })
    .await
}

fn source_is_video(x: &Extraction) -> bool {
    matches!(x.choice, crate::extract::media::Choice::Video { .. })
}
