//! The browser of the browser strategy: found (`CHROMIUM_PATH`, or the usual names on
//! `PATH`), launched, its version, and one extraction of the video through it. No browser is
//! no failure unless the configuration asks for it (`BROWSER_ENABLED=true` given): the HTTP
//! strategies run without it.

use std::time::Duration;

use super::{Check, Outcome};
use crate::config::Config;

const NAME: &str = "browser";

/// The browser's check; `aweme_id` is the video's id when Douyin's check learnt it.
pub async fn check(
    config: &Config,
    aweme_id: Option<&str>,
    video: &str,
    budget: Duration,
) -> Check {
    if !config.browser.enabled {
        return Check::new(NAME, 0, Outcome::skip("BROWSER_ENABLED=false"));
    }
    run(config, aweme_id, video, budget).await
}

#[cfg(not(feature = "browser"))]
async fn run(config: &Config, _: Option<&str>, _: &str, _: Duration) -> Check {
    Check::new(
        NAME,
        0,
        missing(
            config,
            "this build has no browser strategy (the `browser` feature is off)",
        ),
    )
}

/// Not there: skipped, or a failure when the configuration asks for it.
fn missing(config: &Config, why: &str) -> Outcome {
    if config.browser.required {
        Outcome::fail(
            format!("not available: {why}"),
            "install Debian's `chromium` or set CHROMIUM_PATH; or set BROWSER_ENABLED=false",
        )
    } else {
        Outcome::skip(format!(
            "not available ({why}); not needed: the HTTP strategies run without it"
        ))
    }
}

#[cfg(feature = "browser")]
async fn run(config: &Config, aweme_id: Option<&str>, video: &str, budget: Duration) -> Check {
    use crate::extract::browser::BrowserPool;
    use crate::extract::strategy::Target;

    let opts =
        crate::extract::ExtractOptions::new(&config.extract, &config.browser, &config.net, 1);
    let pool = BrowserPool::new(opts.browser, opts.client);
    let exe = match pool.find_executable() {
        Ok(exe) => exe,
        Err(why) => return Check::new(NAME, 0, missing(config, &why)),
    };
    let aweme_id =
        aweme_id
            .map(str::to_string)
            .or_else(|| match crate::extract::link::parse(video) {
                Ok(crate::extract::link::Link::Id { aweme_id, .. }) => Some(aweme_id),
                _ => None,
            });
    let Some(aweme_id) = aweme_id else {
        return Check::new(
            NAME,
            0,
            Outcome::skip(format!(
                "{} found; the video's id is unknown, so nothing to extract",
                exe.display()
            )),
        );
    };
    let target = Target {
        aweme_id,
        kind: None,
    };
    let required = config.browser.required;
    let budget = budget.max(config.browser.timeout + Duration::from_secs(5));
    let check = super::report::timed(NAME, budget, async {
        let result = pool.extract(&target).await;
        let version = pool.version().await;
        let shown = format!(
            "{} ({})",
            exe.display(),
            version.as_deref().unwrap_or("version unknown")
        );
        match result {
            Ok(answer) => Outcome::pass(format!(
                "{shown}: launched, found {} through it",
                answer
                    .record
                    .aweme_id
                    .as_deref()
                    .unwrap_or(&target.aweme_id)
            )),
            Err(e @ crate::extract::browser::BrowserError::Launch(_)) => Outcome::fail_if(
                required,
                e.to_string(),
                "Chromium does not start here: run it by hand with --headless to see why, or set \
                 BROWSER_ENABLED=false",
            ),
            Err(e) => Outcome::fail_if(
                required,
                format!("{shown}: launched, but the extraction failed: {e}"),
                "see Douyin's checks; a captcha wants DOUYIN_COOKIE",
            ),
        }
    })
    .await;
    pool.shutdown().await;
    check
}
