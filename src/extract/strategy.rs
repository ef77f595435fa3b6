//! The HTTP strategies, tried in order behind one trait. Each returns the same record (the
//! aweme) or says why not; Douyin kills one of them every few months, so the chain keeps
//! going while any answers.
//!
//! 1. [`SharePage`]: the mobile share page's `_ROUTER_DATA` (`videoInfoRes`), often absent
//!    since August 2026.
//! 2. `ItemInfo`: the H5 item-info API, with the share page's reflow tokens and cookies.
//! 3. `SlidesInfo`: the slides-info API.
//!
//! The browser strategy ([`super::browser`], behind the `browser` feature) joins the end of
//! the chain when it is enabled; it hands the page's cookies and User-Agent to the downloader
//! through [`Context::handoff`].

use async_trait::async_trait;
use url::Url;

use super::aweme::{self, Aweme, ParseError};
use super::client::{FetchError, Page, Session};
use super::link::PostKind;
use super::reflow;

/// What to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The aweme id.
    pub aweme_id: String,
    /// The kind the link said, if it said.
    pub kind: Option<PostKind>,
}

impl Target {
    /// The share page of the target (`/share/note/` for notes and slides, else `/share/video/`).
    pub(crate) fn share_page_url(&self) -> Url {
        let kind = match self.kind {
            Some(PostKind::Note) | Some(PostKind::Slides) => "note",
            _ => "video",
        };
        Url::parse(&format!(
            "https://www.iesdouyin.com/share/{kind}/{}/",
            self.aweme_id
        ))
        .expect("a valid URL")
    }
}

/// Why a strategy gave no record.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StrategyError {
    /// The answer was parsed and says why (captcha, unavailable, drift, ...).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// No answer (network, timeout, redirects).
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// An HTTP error status.
    #[error("HTTP {status} from {host}")]
    Status {
        /// The status.
        status: u16,
        /// The host that answered.
        host: String,
    },
    /// The strategy cannot run on this machine (no browser installed): the chain goes on.
    #[error("skipped: {0}")]
    Skipped(String),
}

/// What the downloader must send instead of the HTTP session's headers, when the record came
/// from a strategy with its own identity (the browser: its cookies and User-Agent).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The Cookie header for Douyin hosts. A secret: never logged.
    pub cookie: Option<String>,
    /// The User-Agent that fetched the record.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("cookie", &self.cookie.as_ref().map(|_| "<redacted>"))
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// What the strategies share within one extraction: the session and the share page.
pub struct Context<'s, 'c> {
    /// Requests and cookies.
    pub session: &'s mut Session<'c>,
    /// Cookies and User-Agent for the downloader, set by the strategy that answered when they
    /// differ from the session's.
    pub handoff: Option<Handoff>,
    share_page: Option<String>,
}

impl<'s, 'c> Context<'s, 'c> {
    /// A context over `session`.
    pub fn new(session: &'s mut Session<'c>) -> Self {
        Self {
            session,
            handoff: None,
            share_page: None,
        }
    }

    /// The Cookie header and User-Agent the downloader must send: the handoff of the strategy
    /// that answered, else the session's cookies (and the HTTP strategies' User-Agent).
    pub(crate) fn take_identity(&mut self) -> (Option<String>, Option<String>) {
        match self.handoff.take() {
            Some(handoff) => (handoff.cookie, handoff.user_agent),
            None => (self.session.cookie_header(), None),
        }
    }

    /// The share page's HTML, fetched once per extraction (or again with `fresh`).
    pub async fn share_page(
        &mut self,
        target: &Target,
        fresh: bool,
    ) -> Result<String, StrategyError> {
        if !fresh && let Some(html) = &self.share_page {
            return Ok(html.clone());
        }
        let page = self.session.get(&target.share_page_url(), &[]).await?;
        let html = ok_body(page)?;
        self.share_page = Some(html.clone());
        Ok(html)
    }
}

/// The body of a 2xx answer; other statuses are errors. The captcha page is recognised
/// whatever the status.
fn ok_body(page: Page) -> Result<String, StrategyError> {
    if aweme::is_captcha_page(&page.body) {
        return Err(ParseError::Captcha.into());
    }
    if !(200..300).contains(&page.status) {
        return Err(StrategyError::Status {
            status: page.status,
            host: page.url.host_str().unwrap_or("?").to_string(),
        });
    }
    Ok(page.body)
}

/// GET of a JSON API as the share page's scripts make it: the page as Referer, its cookies.
async fn api_get(
    cx: &mut Context<'_, '_>,
    target: &Target,
    url: &Url,
) -> Result<String, StrategyError> {
    let referer = target.share_page_url();
    let page = cx
        .session
        .get(
            url,
            &[
                ("Referer", referer.as_str()),
                ("Accept", "application/json"),
            ],
        )
        .await?;
    ok_body(page)
}

/// One way of getting the record.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// Its name in logs and metrics.
    fn name(&self) -> &'static str;

    /// Gets the record of `target`.
    async fn fetch(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
    ) -> Result<Aweme, StrategyError>;
}

/// Strategy 1: `window._ROUTER_DATA` of the share page.
pub struct SharePage;

#[async_trait]
impl Strategy for SharePage {
    fn name(&self) -> &'static str {
        "share_page"
    }

    async fn fetch(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
    ) -> Result<Aweme, StrategyError> {
        let html = cx.share_page(target, false).await?;
        Ok(aweme::share_page_record(&html, &target.aweme_id)?)
    }
}

/// Strategy 2: the H5 item-info API with the share page's reflow tokens.
pub(crate) struct ItemInfo;

impl ItemInfo {
    async fn once(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
        fresh: bool,
    ) -> Result<Aweme, StrategyError> {
        let html = cx.share_page(target, fresh).await?;
        let tokens = aweme::reflow_tokens(&html).ok_or_else(|| ParseError::Drift {
            what: "share page without reflow tokens".into(),
            excerpt: excerpt(&html),
        })?;
        let reflow_id =
            reflow::reflow_id(&tokens.xsstoken, &tokens.web_id).map_err(|e| ParseError::Drift {
                what: "reflow tokens".into(),
                excerpt: e.to_string(),
            })?;
        let mut url = Url::parse("https://www.iesdouyin.com/web/api/v2/aweme/iteminfo/")
            .expect("a valid URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("reflow_source", "reflow_page")
                .append_pair("web_id", &tokens.web_id)
                .append_pair("device_id", &tokens.web_id)
                .append_pair("use_new_select_scope", "0")
                .append_pair("item_ids", &target.aweme_id)
                .append_pair("reflow_id", &reflow_id);
            if let Some(cip) = &tokens.user_cip {
                q.append_pair("user_cip", cip);
            }
        }
        let body = api_get(cx, target, &url).await?;
        Ok(aweme::iteminfo_record(&body, &target.aweme_id)?)
    }
}

#[async_trait]
impl Strategy for ItemInfo {
    fn name(&self) -> &'static str {
        "h5_iteminfo"
    }

    async fn fetch(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
    ) -> Result<Aweme, StrategyError> {
        match self.once(target, cx, false).await {
            // The tokens were stale: fetch the page again, once.
            Err(StrategyError::Parse(ParseError::EncryptDataMiss)) => {
                self.once(target, cx, true).await
            }
            other => other,
        }
    }
}

/// Strategy 3: the slides-info API (no signature needed).
pub(crate) struct SlidesInfo;

#[async_trait]
impl Strategy for SlidesInfo {
    fn name(&self) -> &'static str {
        "slidesinfo"
    }

    async fn fetch(
        &self,
        target: &Target,
        cx: &mut Context<'_, '_>,
    ) -> Result<Aweme, StrategyError> {
        let mut url = Url::parse("https://www.iesdouyin.com/web/api/v2/aweme/slidesinfo/")
            .expect("a valid URL");
        url.query_pairs_mut()
            .append_pair("aweme_ids", &format!("[{}]", target.aweme_id))
            .append_pair("request_source", "200");
        let body = api_get(cx, target, &url).await?;
        Ok(aweme::slidesinfo_record(&body, &target.aweme_id)?)
    }
}

/// At most 200 characters of `text`, on one line, safe to print ([`crate::redact::excerpt`]).
pub fn excerpt(text: &str) -> String {
    crate::redact::excerpt(text, 200)
}

/// The default chain, in order.
pub(crate) fn default_chain() -> Vec<Box<dyn Strategy>> {
    vec![
        Box::new(SharePage),
        Box::new(ItemInfo),
        Box::new(SlidesInfo),
    ]
}
