//! The configured secrets never reach an error, `last_error` or a log through upstream text:
//! a proxy in front of Supabase that answers errors by echoing the request's headers (as
//! some gateways' debug pages do) must not put `Bearer <service key>` into what the worker
//! records or prints.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use douyin_worker::config::Secret;
use douyin_worker::error::JobError;
use douyin_worker::queue::QueueAdmin;
use douyin_worker::queue::rest::RestQueue;
use douyin_worker::storage::ObjectBackend;
use douyin_worker::storage::supabase::SupabaseStorage;
use url::Url;

const KEY: &str = "sb_secret_echoed_by_a_proxy_0123456789";

/// A server that answers every request with a 502 echoing the request's headers, as JSON
/// (`json`) or as an HTML page; with an ANSI escape for good measure.
async fn echo_server(json: bool) -> Url {
    let app = Router::new().fallback(move |headers: HeaderMap| async move {
        let echoed: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
            .collect();
        let body = if json {
            serde_json::json!({
                "statusCode": "502",
                "error": "Bad Gateway",
                "message": format!("upstream failed; your request was:\n{echoed}\u{1b}[2J"),
            })
            .to_string()
        } else {
            format!("<html><body><pre>\u{1b}[2J{echoed}</pre></body></html>")
        };
        let response: Response = (StatusCode::BAD_GATEWAY, body).into_response();
        response
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Url::parse(&format!("http://{addr}")).unwrap()
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(KEY), "{what} carries the key: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "{what} carries a raw escape: {text:?}"
    );
}

#[tokio::test]
async fn a_storage_error_echoing_the_request_headers_carries_no_key() {
    for json in [true, false] {
        let url = echo_server(json).await;
        let storage = SupabaseStorage::new(&url, Secret::new(KEY), "videos").unwrap();
        let e = storage.list("").await.expect_err("a 502 is an error");
        let job_error = JobError::from(e.clone());
        assert!(
            e.message.contains("upstream failed") || e.message.contains("authorization"),
            "the answer is still quoted: {}",
            e.message
        );
        assert_clean("the storage error", &e.message);
        assert_clean("last_error", &job_error.message);
    }
}

#[tokio::test]
async fn a_rest_error_echoing_the_request_headers_carries_no_key() {
    for json in [true, false] {
        let url = echo_server(json).await;
        let queue = RestQueue::new(&url, Secret::new(KEY)).unwrap();
        let e = queue.stats().await.expect_err("a 502 is an error");
        let text = e.to_string();
        assert!(text.contains("502"), "{text}");
        assert_clean("the queue error", &text);
    }
}
