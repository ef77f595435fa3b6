//! The browser strategy with a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/test.sh`) against the loopback Douyin fixture server, whose web page only gets
//! its record by running its script.
#![cfg(feature = "browser")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use douyin_worker::error::ErrorClass;
use douyin_worker::extract::browser::{BrowserPool, BrowserStrategy, launch};
use douyin_worker::extract::client::{ClientOptions, IPHONE_UA};
use douyin_worker::extract::media::Choice;
use douyin_worker::extract::strategy::{SharePage, Strategy};
use douyin_worker::extract::{BrowserOptions, DouyinExtractor, ExtractError, ExtractOptions};
use douyin_worker::net::upstream::Upstream;

use fakes::douyin::{Behaviour, DouyinServer, video_post};
use fakes::pg::init_tracing;

const ID: &str = "7412345678901234570";

fn options(server: &DouyinServer, tune: impl FnOnce(&mut BrowserOptions)) -> ExtractOptions {
    init_tracing();
    let mut browser = BrowserOptions {
        enabled: true,
        timeout: Duration::from_secs(20),
        ..BrowserOptions::default()
    };
    tune(&mut browser);
    if browser.chromium_path.is_none() {
        let path = std::env::var_os("PATH");
        launch::find_executable(None, path.as_deref()).unwrap_or_else(|e| {
            panic!("{e}: the browser tests need Chromium (scripts/test.sh installs it)")
        });
    }
    ExtractOptions {
        client: ClientOptions {
            upstream: Upstream::rewrite_to(server.url.parse().unwrap()),
            ..Default::default()
        },
        browser,
        ..Default::default()
    }
}

fn extractor(server: &DouyinServer, tune: impl FnOnce(&mut BrowserOptions)) -> DouyinExtractor {
    DouyinExtractor::new(options(server, tune)).unwrap()
}

fn pool_of(x: &DouyinExtractor) -> &Arc<BrowserPool> {
    x.browser_pool()
        .expect("the browser strategy is in the chain")
}

fn best_url(choice: &Choice) -> &str {
    match choice {
        Choice::Video { best, .. } => &best.urls[0],
        other => panic!("not a video: {other:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The browser's processes are gone and its profile folder removed.
fn assert_gone(pid: u32, profile: &std::path::Path) {
    assert!(
        launch::group_members(pid).is_empty(),
        "processes of browser {pid} left: {:?}",
        launch::group_members(pid)
    );
    assert!(!profile.exists(), "{} was not removed", profile.display());
}

#[tokio::test]
async fn browser_gets_the_record_the_page_script_fetches_and_hands_on_its_identity() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::DetailOnly)]).await;
    let x = extractor(&server, |_| {});
    let got = x.extract(ID).await.unwrap();
    assert_eq!(got.strategy, "browser");
    let tried: Vec<_> = got.attempts.iter().map(|a| a.strategy).collect();
    assert_eq!(
        tried,
        ["share_page", "h5_iteminfo", "slidesinfo", "browser"]
    );
    assert_eq!(got.aweme_id, ID);
    assert!(!best_url(&got.choice).contains("watermark=1"));

    let requests = server.requests();
    assert!(
        requests.contains(&format!("GET www.douyin.com/video/{ID}")),
        "{requests:#?}"
    );
    let detail = server
        .last_headers("www.douyin.com/aweme/v1/web/aweme/detail/")
        .expect("the page's script called the detail API");
    let page_ua = detail["user-agent"].to_str().unwrap().to_string();
    assert!(page_ua.contains("Chrome/"), "{page_ua}");
    assert!(!page_ua.contains("Headless"), "{page_ua}");
    assert!(
        detail["cookie"]
            .to_str()
            .unwrap()
            .contains(&format!("ttwid=test-ttwid-{ID}")),
        "the page's script sends the cookies the page set"
    );

    // The downloader gets the page's cookies and the browser's User-Agent.
    let source = got.media_source().unwrap();
    assert_eq!(source.strategy, "browser");
    assert_eq!(
        header(&source.headers, "user-agent"),
        Some(page_ua.as_str())
    );
    assert_ne!(page_ua, IPHONE_UA);
    let cookie = header(&source.headers, "cookie").expect("a Cookie header");
    assert!(cookie.contains(&format!("ttwid=test-ttwid-{ID}")), "cookie");
    assert!(cookie.contains("__ac_nonce="), "cookie");
    assert_eq!(pool_of(&x).launches(), 1);
    x.shutdown().await;
}

#[tokio::test]
async fn browser_sees_the_captcha_page_and_says_so_at_once() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::Captcha)]).await;
    // The page timeout is an hour: an answer within the guard means the captcha was seen,
    // not waited out.
    let x = extractor(&server, |b| b.timeout = Duration::from_secs(3600));
    let err = tokio::time::timeout(Duration::from_secs(60), x.extract(ID))
        .await
        .expect("the captcha page was waited out")
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    let ExtractError::Exhausted { summary, drift } = &err else {
        panic!("{err:?}");
    };
    assert!(!drift);
    assert!(summary.contains("browser: captcha page"), "{summary}");
    x.shutdown().await;
}

#[tokio::test]
async fn browser_page_that_never_answers_times_out_closes_its_tab_and_frees_its_slot() {
    let hung = "7412345678901234571";
    let server = DouyinServer::start(vec![
        video_post(hung, Behaviour::PageHangs),
        video_post(ID, Behaviour::DetailOnly),
    ])
    .await;
    let x = extractor(&server, |b| {
        b.timeout = Duration::from_secs(4);
        b.max_tabs = 1;
    });
    let pool = pool_of(&x);
    // Warm: the launch is not part of the timeout below.
    x.extract(ID).await.unwrap();
    let tabs_before = pool.browser_tabs().await.unwrap();

    let started = Instant::now();
    let err = x.extract(hung).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        err.to_string().contains("browser: no record within 4s"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(took >= Duration::from_secs(4), "gave up early: {took:?}");
    assert_eq!(pool.open_tabs(), 0);
    assert_eq!(pool.free_slots(), 1);
    // Chromium acknowledges the close before its target list forgets the tab: allow a moment.
    // Compare target ids, not counts: the warm-up's own tab may still be listed in `before`
    // and gone by now, which a count would mistake for the hung tab staying open.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let tabs = pool.browser_tabs().await.unwrap();
        let new: Vec<_> = tabs.iter().filter(|t| !tabs_before.contains(t)).collect();
        if new.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hung page's tab was not closed: {new:?} still open besides {tabs_before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The only slot is free again: the next extraction goes through, in the same browser.
    let got = x.extract(ID).await.unwrap();
    assert_eq!(got.strategy, "browser");
    assert_eq!(pool.launches(), 1);
    x.shutdown().await;
}

#[tokio::test]
async fn browser_killed_mid_run_fails_that_job_fast_and_is_restarted() {
    let slow = "7412345678901234572";
    let server = DouyinServer::start(vec![
        video_post(slow, Behaviour::SlowDetail(120_000)),
        video_post(ID, Behaviour::DetailOnly),
    ])
    .await;
    // The page timeout and the record's delay are far beyond the guard below: an error
    // within it means the browser's death was noticed.
    let x = Arc::new(extractor(&server, |b| {
        b.timeout = Duration::from_secs(3600)
    }));
    let running = {
        let x = x.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (x.extract(slow).await, started.elapsed())
        })
    };
    // Wait until the page has asked for its record, then kill the browser.
    let asked = "www.douyin.com/aweme/v1/web/aweme/detail/";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.requests().iter().any(|r| r.contains(asked)) {
        assert!(
            Instant::now() < deadline,
            "the page never asked for its record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pool = pool_of(&x);
    let pid = pool.browser_pid().await.unwrap();
    let profile = pool.user_data_dir().await.unwrap();
    // SAFETY: kill(2) of the browser this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);

    let (result, _) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the browser's death was not noticed")
        .unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("browser died"), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);

    let got = x.extract(ID).await.unwrap();
    assert_eq!(got.strategy, "browser");
    assert_eq!(pool.launches(), 2);
    assert_ne!(pool.browser_pid().await, Some(pid));
    assert_gone(pid, &profile);
    x.shutdown().await;
}

#[tokio::test]
async fn browser_missing_is_skipped_and_the_chain_goes_on() {
    let server = DouyinServer::start(vec![
        video_post(ID, Behaviour::DetailOnly),
        video_post("7412345678901234573", Behaviour::OldSharePage),
    ])
    .await;
    let missing = |b: &mut BrowserOptions| b.chromium_path = Some("/nonexistent/chromium".into());

    // Last in the chain: the extraction ends with the other strategies' reasons, retryable.
    let x = extractor(&server, missing);
    for _ in 0..2 {
        let err = x.extract(ID).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(
            err.to_string()
                .contains("browser: skipped: no browser: CHROMIUM_PATH=/nonexistent/chromium"),
            "{err}"
        );
    }
    assert_eq!(pool_of(&x).launches(), 0);

    // Anywhere else in the chain: the next strategy answers.
    let opts = options(&server, missing);
    let browser = Arc::new(BrowserPool::new(opts.browser.clone(), opts.client.clone()));
    let chain: Vec<Box<dyn Strategy>> = vec![
        Box::new(BrowserStrategy::new(browser.clone())),
        Box::new(SharePage),
    ];
    let x = DouyinExtractor::with_chain(
        ExtractOptions {
            browser: BrowserOptions::default(),
            ..opts
        },
        chain,
    )
    .unwrap();
    let got = x.extract("7412345678901234573").await.unwrap();
    assert_eq!(got.strategy, "share_page");
    assert!(
        got.attempts[0].outcome.contains("skipped"),
        "{:?}",
        got.attempts
    );
    assert_eq!(
        header(&got.media_source().unwrap().headers, "user-agent"),
        Some(IPHONE_UA)
    );
    assert_eq!(browser.launches(), 0);
}

#[tokio::test]
async fn browser_pool_never_opens_more_tabs_than_its_size() {
    let ids: Vec<String> = (0..6).map(|i| format!("74123456789012346{i:02}")).collect();
    let server = DouyinServer::start(
        ids.iter()
            .map(|id| video_post(id, Behaviour::SlowDetail(500)))
            .collect(),
    )
    .await;
    let x = Arc::new(extractor(&server, |b| b.max_tabs = 2));
    let jobs = ids.iter().map(|id| {
        let (x, id) = (x.clone(), id.clone());
        tokio::spawn(async move { x.extract(&id).await })
    });
    for result in futures::future::join_all(jobs).await {
        assert_eq!(result.unwrap().unwrap().strategy, "browser");
    }
    let pool = pool_of(&x);
    assert_eq!(pool.peak_tabs(), 2, "two tabs at once, never more");
    assert_eq!(pool.launches(), 1, "one browser for every job");
    assert_eq!(pool.pages_opened(), 6);
    assert_eq!((pool.open_tabs(), pool.free_slots()), (0, 2));
    x.shutdown().await;
}

#[tokio::test]
async fn browser_is_replaced_after_max_pages() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::DetailOnly)]).await;
    let x = extractor(&server, |b| b.max_pages = 2);
    let pool = pool_of(&x);
    x.extract(ID).await.unwrap();
    let (first, profile) = (
        pool.browser_pid().await.unwrap(),
        pool.user_data_dir().await.unwrap(),
    );
    x.extract(ID).await.unwrap();
    assert_eq!(pool.launches(), 1);
    x.extract(ID).await.unwrap();
    assert_eq!(pool.launches(), 2);
    assert_ne!(pool.browser_pid().await, Some(first));
    assert_gone(first, &profile);
    x.shutdown().await;
}

#[tokio::test]
async fn browser_leaves_no_process_or_profile_folder_behind() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::DetailOnly)]).await;

    // Graceful shutdown.
    let x = extractor(&server, |_| {});
    x.extract(ID).await.unwrap();
    let pool = pool_of(&x);
    let (pid, profile) = (
        pool.browser_pid().await.unwrap(),
        pool.user_data_dir().await.unwrap(),
    );
    assert!(profile.is_dir());
    let processes = pool.process_ids().await;
    assert!(
        processes.len() > 1,
        "browser, zygote, renderer...: {processes:?}"
    );
    assert!(pool.memory_pss().await.unwrap() > 10 << 20);
    x.shutdown().await;
    assert_gone(pid, &profile);
    assert_eq!(pool.browser_pid().await, None);

    // Dropping the extractor (the end of the process) does the same.
    let x = extractor(&server, |_| {});
    x.extract(ID).await.unwrap();
    let pool = pool_of(&x);
    let (pid, profile) = (
        pool.browser_pid().await.unwrap(),
        pool.user_data_dir().await.unwrap(),
    );
    drop(x);
    assert_gone(pid, &profile);
}
