//! HTTP to Douyin: one shared client, one [`Session`] per extraction.
//!
//! A session keeps the cookies Douyin sets (the share page's cookies are what the item-info
//! API checks), adds the user's `DOUYIN_COOKIE` on Douyin hosts only, follows redirects
//! itself (so every hop goes through the `DOUYIN_UPSTREAM` rewrite and stays on allowed
//! schemes), and bounds every request by the extraction timeout. Every request and redirect
//! hop, and every address a name resolves to, passes the public-address [`crate::net::guard`]
//! (a Douyin page redirecting to a loopback or metadata address is refused before it is
//! asked), except the `DOUYIN_UPSTREAM` stand-in the operator configured. Cookie values are
//! secrets: they are never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use url::Url;

use crate::config::Secret;
use crate::net::upstream::{Upstream, is_douyin_host};

/// The User-Agent of the mobile share pages and APIs (an iPhone's Safari).
pub const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 5;

/// Settings of the Douyin client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Where Douyin requests go (`DOUYIN_UPSTREAM`).
    pub upstream: Upstream,
    /// The user's browser cookie string (`DOUYIN_COOKIE`), for Douyin hosts only.
    pub cookie: Option<Secret>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Lift the public-address guard (`ALLOW_PRIVATE_NETWORKS`, tests only).
    pub allow_private_networks: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            upstream: Upstream::direct(),
            cookie: None,
            timeout: Duration::from_secs(15),
            allow_private_networks: false,
        }
    }
}

/// The shared HTTP client (connection pools live here).
#[derive(Clone, Debug)]
pub(crate) struct DouyinClient {
    http: reqwest::Client,
    opts: ClientOptions,
}

/// Why a request failed before an answer arrived.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Network, TLS or timeout.
    #[error("{0}")]
    Network(String),
    /// Too many redirects, or a redirect to somewhere not allowed.
    #[error("{0}")]
    Redirect(String),
}

/// An answer.
#[derive(Clone)]
pub struct Page {
    /// The URL that answered, in its Douyin form (not the rewritten one).
    pub url: Url,
    /// HTTP status.
    pub status: u16,
    /// `Location` of a redirect that was not followed.
    pub location: Option<Url>,
    /// The response's headers, in order (`Set-Cookie` included: secret values).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl std::fmt::Debug for Page {
    /// Without header values or the body: cookies and tokens live there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("host", &self.url.host_str())
            .field("status", &self.status)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl DouyinClient {
    /// A client with these options.
    pub fn new(opts: ClientOptions) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(crate::net::guard::GuardedResolver::trusting(
                opts.allow_private_networks,
                opts.upstream.host(),
            ))
            .connect_timeout(Duration::from_secs(10))
            .timeout(opts.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { http, opts })
    }

    /// A new session with an empty cookie jar.
    pub fn session(&self) -> Session<'_> {
        Session {
            client: self,
            cookies: BTreeMap::new(),
            last: None,
        }
    }
}

/// One extraction's requests: cookies set by Douyin are kept and sent back.
#[derive(Debug)]
pub struct Session<'a> {
    client: &'a DouyinClient,
    cookies: BTreeMap<String, String>,
    /// The last answer, kept for a drift capture.
    last: Option<Page>,
}

impl Session<'_> {
    /// GET `url`, following redirects (up to five, each rewritten), with `headers`.
    pub async fn get(&mut self, url: &Url, headers: &[(&str, &str)]) -> Result<Page, FetchError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let page = self.get_once(&current, headers).await?;
            match page.location.clone() {
                Some(next) if (300..400).contains(&page.status) => current = next,
                _ => return Ok(page),
            }
        }
        Err(FetchError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects from {}",
            url.host_str().unwrap_or("?")
        )))
    }

    /// GET `url` once, without following a redirect (short links: read the `Location`).
    pub(crate) async fn get_once(
        &mut self,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<Page, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Redirect(format!(
                "refusing a {}:// URL",
                url.scheme()
            )));
        }
        let upstream = &self.client.opts.upstream;
        let target = upstream.apply(url);
        if !upstream.serves(&target) {
            crate::net::guard::check_url(&target, self.client.opts.allow_private_networks)
                .map_err(|why| FetchError::Redirect(format!("{}: {why}", host_of(url))))?;
        }
        let douyin = url.host_str().is_some_and(is_douyin_host);
        let mut request = self
            .client
            .http
            .get(target.clone())
            .header(header::USER_AGENT, IPHONE_UA)
            .header(header::ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if douyin && let Some(cookie) = self.cookie_header() {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.map_err(|e| network_error(url, &e))?;
        let status = response.status().as_u16();
        self.keep_cookies(response.headers());
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| target.join(l).ok())
            .map(|l| upstream.original(&l));
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.text().await.map_err(|e| network_error(url, &e))?;
        let page = Page {
            url: url.clone(),
            status,
            location,
            headers,
            body,
        };
        self.last = Some(page.clone());
        Ok(page)
    }

    /// The last answer of this session (what a drift capture keeps).
    pub(crate) fn last_answer(&self) -> Option<&Page> {
        self.last.as_ref()
    }

    /// The values of the cookies Douyin set in this session (secrets a capture removes).
    pub fn cookie_values(&self) -> impl Iterator<Item = &str> {
        self.cookies.values().map(String::as_str)
    }

    /// The cookies to send: the user's `DOUYIN_COOKIE`, then those Douyin set (which win).
    pub(crate) fn cookie_header(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(user) = &self.client.opts.cookie {
            let user = user.expose().trim().trim_end_matches(';');
            if !user.is_empty() {
                parts.push(user.to_string());
            }
        }
        parts.extend(self.cookies.iter().map(|(k, v)| format!("{k}={v}")));
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or_default();
            if let Some((name, val)) = pair.split_once('=') {
                let name = name.trim();
                if !name.is_empty() {
                    self.cookies
                        .insert(name.to_string(), val.trim().to_string());
                }
            }
        }
    }
}

fn host_of(url: &Url) -> &str {
    url.host_str().unwrap_or("?")
}

/// A reqwest error named by host only (queries may carry tokens).
fn network_error(url: &Url, e: &reqwest::Error) -> FetchError {
    let host = url.host_str().unwrap_or("?");
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    FetchError::Network(if detail.is_empty() {
        format!("{host}: {what}")
    } else {
        format!("{host}: {what}: {detail}")
    })
}
