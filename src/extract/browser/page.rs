//! One extraction in one tab, driven by the page's own events: navigate, then take the first
//! of the web detail API's answer (the record the page's script fetched) or a record in the
//! page's HTML (`_ROUTER_DATA`, `RENDER_DATA`); the captcha page ends it at once. No sleeps:
//! the caller's deadline bounds the wait.

use std::collections::HashSet;

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::network::{
    CookieParam, EventLoadingFailed, EventLoadingFinished, EventResponseReceived, GetCookiesParams,
    GetResponseBodyParams, RequestId, ResourceType, SetCookiesParams, SetUserAgentOverrideParams,
};
use chromiumoxide::cdp::browser_protocol::page::{EventLoadEventFired, NavigateParams};
use futures::StreamExt;
use url::Url;

use super::capture;
use super::launch::Instance;
use super::{BrowserAnswer, BrowserError};
use crate::extract::aweme::{Aweme, ParseError};
use crate::extract::strategy::Target;

/// Loads `url` (the Douyin page of `target`, already rewritten) in `page` and returns the
/// record with the page's cookies and the browser's User-Agent.
pub(super) async fn extract(
    instance: &Instance,
    page: &Page,
    target: &Target,
    url: &Url,
    user_cookie: Option<&str>,
) -> Result<BrowserAnswer, BrowserError> {
    let cdp = |what: &'static str| {
        move |e: chromiumoxide::error::CdpError| match instance.dead.is_cancelled() {
            true => BrowserError::Crashed,
            false => BrowserError::Cdp(format!("{what}: {e}")),
        }
    };
    let mut responses = page
        .event_listener::<EventResponseReceived>()
        .await
        .map_err(cdp("listen"))?;
    let mut finished = page
        .event_listener::<EventLoadingFinished>()
        .await
        .map_err(cdp("listen"))?;
    let mut failed = page
        .event_listener::<EventLoadingFailed>()
        .await
        .map_err(cdp("listen"))?;
    let mut loaded = page
        .event_listener::<EventLoadEventFired>()
        .await
        .map_err(cdp("listen"))?;
    page.execute(SetUserAgentOverrideParams::new(instance.user_agent.clone()))
        .await
        .map_err(cdp("user agent"))?;
    if let Some(cookie) = user_cookie {
        let cookies: Vec<CookieParam> = capture::cookie_pairs(cookie)
            .into_iter()
            .map(|(name, value)| {
                let mut param = CookieParam::new(name, value);
                param.url = Some(url.to_string());
                param
            })
            .collect();
        if !cookies.is_empty() {
            page.execute(SetCookiesParams::new(cookies))
                .await
                .map_err(cdp("cookies"))?;
        }
    }
    let main_frame = page.mainframe().await.map_err(cdp("frame"))?;

    let navigate = page.execute(NavigateParams::new(url.as_str()));
    let mut navigate = std::pin::pin!(navigate);
    let mut navigated = false;
    let mut document: Option<(RequestId, i64)> = None;
    let mut details: HashSet<RequestId> = HashSet::new();
    // Each event kind has its own stream, so a request's `loadingFinished` may be read before
    // its `responseReceived`: a body is read once both have been seen.
    let mut done: HashSet<RequestId> = HashSet::new();
    let id = target.aweme_id.as_str();
    let record = loop {
        let ready: Option<RequestId> = tokio::select! {
            biased;
            _ = instance.dead.cancelled() => return Err(BrowserError::Crashed),
            answer = &mut navigate, if !navigated => {
                navigated = true;
                let answer = answer.map_err(cdp("navigate"))?;
                if let Some(error) = answer.result.error_text {
                    return Err(BrowserError::Navigation(error));
                }
                None
            }
            Some(event) = responses.next() => {
                let request = event.request_id.clone();
                if capture::is_detail_url(&event.response.url) {
                    details.insert(request.clone());
                } else if event.r#type == ResourceType::Document
                    && (main_frame.is_none() || event.frame_id == main_frame)
                {
                    document = Some((request.clone(), event.response.status));
                }
                done.contains(&request).then_some(request)
            }
            Some(event) = finished.next() => {
                done.insert(event.request_id.clone());
                Some(event.request_id.clone())
            }
            Some(event) = failed.next() => {
                if document.as_ref().is_some_and(|(r, _)| *r == event.request_id) {
                    return Err(BrowserError::Navigation(event.error_text.clone()));
                }
                None
            }
            Some(_) = loaded.next() => {
                // Scripts may have written the record into the page.
                let html = page.content().await.map_err(cdp("page content"))?;
                if let Some(record) = in_page(&html, id)? {
                    break record;
                }
                None
            }
        };
        let Some(request) = ready else { continue };
        if details.remove(&request) {
            let body = body(page, &request).await.map_err(cdp("detail body"))?;
            break capture::detail_record(&body, id)?;
        }
        if let Some((_, status)) = document.as_ref().filter(|(r, _)| *r == request) {
            let status = *status;
            let html = body(page, &request).await.map_err(cdp("page body"))?;
            if let Some(record) = in_page(&html, id)? {
                break record;
            }
            if status >= 400 {
                return Err(BrowserError::Status(status as u16));
            }
            document = None;
        }
    };
    let cookies = page
        .execute(GetCookiesParams::default())
        .await
        .map_err(cdp("cookies"))?
        .result
        .cookies
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect::<Vec<_>>();
    Ok(BrowserAnswer {
        record,
        cookie: capture::cookie_header(user_cookie, &cookies),
        user_agent: instance.user_agent.clone(),
    })
}

/// The record in the page's HTML, if any; the captcha page and refusals are errors.
fn in_page(html: &str, aweme_id: &str) -> Result<Option<Aweme>, ParseError> {
    capture::page_record(html, aweme_id)
}

/// A response body as text.
async fn body(page: &Page, request: &RequestId) -> Result<String, chromiumoxide::error::CdpError> {
    let answer = page
        .execute(GetResponseBodyParams::new(request.clone()))
        .await?
        .result;
    Ok(match answer.base64_encoded {
        true => base64::engine::general_purpose::STANDARD
            .decode(answer.body.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
        false => answer.body,
    })
}
