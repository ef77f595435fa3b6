//! `enqueue` through the binary on the embedded default (SQLite): the link found in pasted
//! text is what is recorded, and a short link is resolved first, so that it and the page link
//! of the same video make one row.

use fakes::douyin::{Behaviour, DouyinServer, video_post};
use serde_json::Value;

use crate::cli::{stderr, worker};

const ID: &str = "7412345678901234567";

/// A `DOUYIN_UPSTREAM` nobody answers on (a port bound and let go).
pub(crate) fn unreachable_douyin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// `enqueue --json` with `inputs` on the SQLite queue in `data`; the rows it printed.
pub(crate) fn enqueue(data: &std::path::Path, douyin: &str, inputs: &[&str]) -> Vec<Value> {
    let mut args = vec!["enqueue", "--json"];
    args.extend_from_slice(inputs);
    let o = worker(
        &args,
        &[
            ("DATA_DIR", data.to_str().unwrap()),
            ("DOUYIN_UPSTREAM", douyin),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every `(douyin_id, video_url)` of the videos table in `data`'s queue file.
pub(crate) async fn videos(data: &std::path::Path) -> Vec<(Option<String>, Option<String>)> {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        data.join("douyin-worker.db").display()
    ))
    .await
    .unwrap();
    let rows = sqlx::query_as("select douyin_id, video_url from videos order by created_at, rowid")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

fn outcomes(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_is_recorded_without_the_text_pasted_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let page = format!("https://www.douyin.com/video/{ID}");
    let rows = enqueue(
        dir.path(),
        &unreachable_douyin(),
        &[
            &format!("{page} 这是一个很棒的视频"),
            &format!("{page}, great video"),
            &format!("{page}\u{200B}很棒"),
        ],
    );
    assert_eq!(outcomes(&rows), ["queued", "duplicate", "duplicate"]);
    assert_eq!(
        videos(dir.path()).await,
        [(Some(ID.to_string()), Some(page))],
        "one row, with the link the parser found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_link_and_the_page_link_of_one_video_make_one_row() {
    let douyin = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    douyin.add_short_link(
        "iRNBho6u",
        &format!("https://www.iesdouyin.com/share/video/{ID}/?region=CN"),
    );
    let dir = tempfile::tempdir().unwrap();
    let short = "https://v.douyin.com/iRNBho6u/";
    let rows = enqueue(dir.path(), &douyin.url, &[short]);
    assert_eq!(outcomes(&rows), ["queued"]);
    let rows_again = enqueue(
        dir.path(),
        &douyin.url,
        &[&format!("https://www.douyin.com/video/{ID}"), ID, short],
    );
    assert_eq!(
        outcomes(&rows_again),
        ["duplicate", "duplicate", "duplicate"]
    );
    for r in &rows_again {
        assert_eq!(r["job_id"], rows[0]["job_id"]);
    }
    assert_eq!(
        videos(dir.path()).await,
        [(Some(ID.to_string()), Some(short.to_string()))],
        "the short link's row learnt its Douyin id at enqueue"
    );

    // A short link that leads nowhere is refused, as `extract` refuses it.
    let o = worker(
        &["enqueue", "--json", "https://v.douyin.com/nope404/"],
        &[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("DOUYIN_UPSTREAM", &douyin.url),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(outcomes(&rows), ["refused"]);
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{rows:?}"
    );
}
