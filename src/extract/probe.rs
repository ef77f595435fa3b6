//! Each strategy on its own, for `doctor`: every strategy of the chain runs against the same
//! post with a session of its own (nothing shared, so one strategy's cookies or page cannot
//! help another), and each outcome is reported apart, where an extraction stops at the first
//! record. The first record found is then made into the same [`Extraction`] as
//! [`DouyinExtractor::extract`] gives, so the file the worker would download can be fetched.

use super::*;

/// How one strategy fared on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// It gave the record.
    Found,
    /// Douyin says the post is gone, private or blocked (the strategy works; the post does
    /// not).
    Unavailable,
    /// No record now (network, HTTP status, captcha, a refused token): may pass.
    Transient,
    /// An answer in a shape no parser knows: the parser needs a fix.
    Drift,
    /// It cannot run on this machine (no browser).
    Skipped,
}

/// One strategy's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct StrategyProbe {
    /// The strategy.
    pub strategy: &'static str,
    /// Milliseconds it took.
    pub ms: u64,
    /// What came of it.
    pub outcome: ProbeOutcome,
    /// Its metrics label (`ok`, `captcha`, `network`, `http_status`, `drift`, ...).
    pub label: &'static str,
    /// Why it gave no record (empty when found).
    pub reason: String,
}

/// Every strategy's outcome, and what the first record found gives.
#[derive(Debug)]
pub struct Probe {
    /// The aweme id probed.
    pub aweme_id: String,
    /// Each strategy, in chain order.
    pub strategies: Vec<StrategyProbe>,
    /// The extraction of the first record found (`None` when no strategy found one).
    pub extraction: Option<Result<Extraction, ExtractError>>,
}

impl ProbeOutcome {
    fn of(result: &Result<aweme::Aweme, StrategyError>) -> Self {
        match result {
            Ok(_) => ProbeOutcome::Found,
            Err(StrategyError::Skipped(_)) => ProbeOutcome::Skipped,
            Err(StrategyError::Parse(p)) => match p.class() {
                ErrorClass::Permanent => ProbeOutcome::Unavailable,
                ErrorClass::Drift => ProbeOutcome::Drift,
                ErrorClass::Transient => ProbeOutcome::Transient,
            },
            Err(StrategyError::Fetch(_) | StrategyError::Status { .. }) => ProbeOutcome::Transient,
        }
    }
}

impl DouyinExtractor {
    /// Runs every strategy of the chain against `input` (a link, share text or id), each on
    /// its own and for at most `each` (then it counts as a network failure). Keeps no answer
    /// and counts nothing in the metrics: it is a check, not work. An error only when `input`
    /// names no post (or a short link cannot be followed now).
    pub async fn probe(&self, input: &str, each: Duration) -> Result<Probe, ExtractError> {
        let mut session = self.client.session();
        let (target, _) = self.target(input, &mut session).await?;
        let mut strategies = Vec::new();
        let mut extraction = None;
        for s in &self.chain {
            let mut session = self.client.session();
            let mut cx = Context::new(&mut session);
            let t = Instant::now();
            let result = tokio::time::timeout(each, s.fetch(&target, &mut cx))
                .await
                .unwrap_or_else(|_| {
                    Err(StrategyError::Fetch(client::FetchError::Network(format!(
                        "no answer within {each:?}"
                    ))))
                });
            strategies.push(StrategyProbe {
                strategy: s.name(),
                ms: t.elapsed().as_millis() as u64,
                outcome: ProbeOutcome::of(&result),
                label: strategy_result_label(&result),
                reason: result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            });
            if let (Ok(record), None) = (&result, &extraction) {
                let (cookie, user_agent) = cx.take_identity();
                extraction = Some(self.finish(&target, s.name(), record, cookie, user_agent));
            }
        }
        Ok(Probe {
            aweme_id: target.aweme_id,
            strategies,
            extraction,
        })
    }
}
