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

/// The cookie and the database password, with the worker at `DEBUG` (its own debug lines,
/// then every crate's: the HTTP client, the connection pool), in both log formats,
/// through a whole job that sends the cookie to Douyin and connects with the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_and_the_database_password_never_reach_debug_logs_in_either_format() {
    use douyin_worker::queue::EnqueueRequest;
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    const ID: &str = "7412345678901234567";
    const COOKIE_SECRETS: [&str; 2] = ["ck-s3ss10n-5e1f", "ck-ttw1d-77a0"];
    const PASSWORD: &str = "db-pa55word-9f3c";
    let cookie = format!(
        "sessionid={}; ttwid={}",
        COOKIE_SECRETS[0], COOKIE_SECRETS[1]
    );
    // DEBUG=true is this crate's debug lines; RUST_LOG=debug adds every dependency's.
    for (format, rust_log) in [("text", ""), ("json", ""), ("text", "debug")] {
        let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
        let db = fakes::pg::fresh_pg().await;
        // The test cluster trusts loopback: a password in the URL is sent and ignored.
        let mut url = Url::parse(&db.url).unwrap();
        url.set_password(Some(PASSWORD)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("DATABASE_URL", url.as_str()),
            ("DOUYIN_COOKIE", &cookie),
            ("DOUYIN_UPSTREAM", &server.url),
            ("DATA_DIR", data.path().to_str().unwrap()),
            ("DEBUG", "true"),
            ("LOG_FORMAT", format),
        ];
        if !rust_log.is_empty() {
            env.push(("RUST_LOG", rust_log));
        }
        let bin = crate::cli::RunningBinary::start(&env);
        let q = douyin_worker::queue::postgres::PgQueue::from_pool(db.pool.clone());
        let r = q
            .enqueue(&EnqueueRequest {
                url: Some(format!("https://www.douyin.com/video/{ID}")),
                ..Default::default()
            })
            .await
            .unwrap();
        crate::support::backends::wait_for_status(
            &q,
            r.job_id.unwrap(),
            &["completed"],
            std::time::Duration::from_secs(60),
        )
        .await;
        let (code, lines) = bin.stop_raw();
        assert_eq!(code, Some(0), "{format}");
        let all = lines.join("\n");
        // The secrets were in play: Douyin got the cookie, and debug lines were written.
        let sent = server.last_headers(ID).is_some_and(|h| {
            h.get_all("cookie")
                .iter()
                .any(|v| v.to_str().unwrap_or("").contains(COOKIE_SECRETS[0]))
        });
        assert!(sent, "{format}: the cookie was never sent");
        assert!(
            all.contains("DEBUG") || all.contains("\"level\":\"DEBUG\""),
            "{format}: no debug lines: {all}"
        );
        for secret in COOKIE_SECRETS.iter().chain([&PASSWORD]) {
            assert!(
                !all.contains(secret),
                "{format}: {secret} in the log: {all}"
            );
        }
    }
}
