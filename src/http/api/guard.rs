//! The download API's gate: what every API request passes before its handler.
//!
//! In order: CORS preflights (`OPTIONS`) pass untouched (the CORS layer outside answers
//! them); the client's rate limit (429 with `Retry-After`); the bearer token when
//! `API_TOKEN` is set (401 with `WWW-Authenticate: Bearer`, no detail); a `POST` from a page
//! of another site (403: its `Origin` is neither the API's own host nor one of
//! `API_CORS_ORIGINS`; a browser always sends `Origin` on a POST, even a `no-cors` one with no
//! body); a `POST` whose body is anything but JSON (415: a cross-site HTML form or a
//! `text/plain` fetch cannot trigger a download; a POST with no body and no `Content-Type`, as
//! the old UI sends, is fine); then
//! the handler, which must start its answer within `HTTP_REQUEST_TIMEOUT_SECONDS` (else
//! 503, never internal text).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::rate::{ClientKey, RateLimiter};
use super::{ApiOptions, answer, unavailable};
use crate::metrics::API_REFUSED;

/// What the gate needs, built once per router.
#[derive(Clone)]
pub(crate) struct Gate {
    limiter: Option<Arc<RateLimiter>>,
    /// SHA-256 of the token: compared in constant time, never kept in clear here.
    token_digest: Option<[u8; 32]>,
    trust_forwarded_for: bool,
    request_timeout: Duration,
    /// `API_CORS_ORIGINS`: the other sites' pages that may POST.
    cors_origins: Arc<[String]>,
}

impl Gate {
    /// The gate for these options.
    pub fn new(opts: &ApiOptions) -> Self {
        Self {
            limiter: (opts.rate_limit > 0).then(|| Arc::new(RateLimiter::new(opts.rate_limit))),
            token_digest: opts
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
            trust_forwarded_for: opts.trust_forwarded_for,
            request_timeout: opts.request_timeout,
            cors_origins: opts.cors_origins.clone().into(),
        }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub(crate) async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    if let Some(limiter) = &gate.limiter {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let client = client_ip(peer, req.headers(), gate.trust_forwarded_for);
        if let Some(client) = client
            && let Err(wait) = limiter.check(ClientKey::from(client), tokio::time::Instant::now())
        {
            metrics::counter!(API_REFUSED, "reason" => "rate_limit").increment(1);
            return too_many("rate_limited", "too many requests; try again later", wait);
        }
    }
    if let Some(want) = &gate.token_digest
        && !bearer_matches(req.headers(), want)
    {
        metrics::counter!(API_REFUSED, "reason" => "unauthorized").increment(1);
        let mut r = answer(
            StatusCode::UNAUTHORIZED,
            json!({"status": "unauthorized", "error": "authorization required"}),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if req.method() == Method::POST && !origin_allowed(req.headers(), &gate.cors_origins) {
        metrics::counter!(API_REFUSED, "reason" => "origin").increment(1);
        return answer(
            StatusCode::FORBIDDEN,
            json!({"status": "forbidden_origin", "error": "this site may not call the API; see API_CORS_ORIGINS"}),
        );
    }
    if req.method() == Method::POST && !json_or_empty(req.headers()) {
        metrics::counter!(API_REFUSED, "reason" => "media_type").increment(1);
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"status": "unsupported_media_type", "error": "send no body, or a JSON body with Content-Type: application/json"}),
        );
    }
    match tokio::time::timeout(gate.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            metrics::counter!(API_REFUSED, "reason" => "timeout").increment(1);
            tracing::warn!(timeout = ?gate.request_timeout, "download API: a request took longer than HTTP_REQUEST_TIMEOUT_SECONDS (queue or store slow?)");
            unavailable()
        }
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub(crate) fn too_many(status: &str, error: &str, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut r = answer(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"status": status, "error": error, "retry_after": secs}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The client's address: the last `X-Forwarded-For` entry (the one the trusted proxy added)
/// when `trust_forwarded_for`, else the peer. Pure, for the tests.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for {
        let last = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty());
        if let Some(ip) = last.and_then(|v| v.parse().ok()) {
            return Some(ip);
        }
    }
    peer
}

/// Whether `Authorization: Bearer T` carries the token whose digest is `want`, compared in
/// constant time (digests of equal length: neither the token's length nor its prefix leaks).
fn bearer_matches(headers: &HeaderMap, want: &[u8; 32]) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Whether a request's `Origin` may POST: none (not a browser, or a same-origin GET-like
/// request), the API's own host (the `Host` the request was sent to), or one of `allowed`
/// (`*`: any). An opaque `Origin: null` (a sandboxed frame, a file) is another site.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/');
    if allowed
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim);
    let theirs = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    own.is_some_and(|own| own.eq_ignore_ascii_case(&theirs))
}

/// A POST's body is JSON, or there is none (no `Content-Type`, no length or 0, not chunked).
fn json_or_empty(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        Some(ct) => ct
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json")),
        None => {
            let empty_length = headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
            empty_length && !headers.contains_key(header::TRANSFER_ENCODING)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_apis_own_site_and_the_configured_origins_may_post() {
        let allowed = ["https://app.example.com".to_string()];
        let h = |pairs: &[(&'static str, &str)]| origin_allowed(&headers(pairs), &allowed);
        assert!(h(&[]), "no Origin: not a browser's cross-site request");
        assert!(h(&[("origin", "https://app.example.com")]));
        assert!(h(&[("origin", "https://APP.example.com/")]));
        assert!(h(&[
            ("origin", "http://api.example.com:8080"),
            ("host", "api.example.com:8080")
        ]));
        assert!(h(&[
            ("origin", "https://api.example.com"),
            ("host", "api.example.com")
        ]));
        assert!(!h(&[
            ("origin", "https://evil.example"),
            ("host", "api.example.com")
        ]));
        assert!(!h(&[
            ("origin", "http://api.example.com:9999"),
            ("host", "api.example.com:8080")
        ]));
        assert!(!h(&[("origin", "null"), ("host", "api.example.com")]));
        assert!(origin_allowed(
            &headers(&[("origin", "https://evil.example")]),
            &["*".to_string()]
        ));
    }

    #[test]
    fn only_json_or_nothing_is_accepted_as_a_post_body() {
        assert!(json_or_empty(&headers(&[])));
        assert!(json_or_empty(&headers(&[("content-length", "0")])));
        assert!(json_or_empty(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!json_or_empty(&headers(&[("content-type", "text/plain")])));
        assert!(!json_or_empty(&headers(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(!json_or_empty(&headers(&[("content-length", "5")])));
        assert!(!json_or_empty(&headers(&[(
            "transfer-encoding",
            "chunked"
        )])));
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let want: [u8; 32] = Sha256::digest(b"0123456789abcdef").into();
        assert!(bearer_matches(
            &headers(&[("authorization", "Bearer 0123456789abcdef")]),
            &want
        ));
        assert!(bearer_matches(
            &headers(&[("authorization", "bearer 0123456789abcdef")]),
            &want
        ));
        for wrong in [
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdefg",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
            "Bearer ",
        ] {
            assert!(
                !bearer_matches(&headers(&[("authorization", wrong)]), &want),
                "{wrong}"
            );
        }
        assert!(!bearer_matches(&headers(&[]), &want));
    }

    #[test]
    fn the_client_is_the_peer_unless_the_proxy_is_trusted() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.9, 203.0.113.5"),
            ("x-forwarded-for", "192.0.2.44"),
        ]);
        assert_eq!(client_ip(Some(peer), &h, false), Some(peer));
        assert_eq!(
            client_ip(Some(peer), &h, true),
            Some("192.0.2.44".parse().unwrap())
        );
        let junk = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(Some(peer), &junk, true), Some(peer));
    }
}
