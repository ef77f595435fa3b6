//! `douyin-worker doctor` through the binary, against the loopback Douyin server, in each
//! mode: embedded (SQLite and a local folder), PostgreSQL with an S3 store (s3s-fs), and
//! Supabase only (the PostgREST and Storage emulators behind one gateway). All green; Douyin
//! down; a wrong storage key; a temp folder with too little room; no browser, allowed and
//! asked for; a listener's port in use; the anon key allowed what it must not; a bad setting.
//! Every run's output is checked for the secrets it was given.

use std::collections::HashMap;
use std::process::Output;

use douyin_worker::doctor::DEFAULT_VIDEO;
use douyin_worker::storage::ObjectBackend;
use fakes::douyin::{Behaviour, DouyinServer, video_post};
use fakes::servers::{S3_ACCESS, S3_SECRET, S3Server, free_port};

use crate::cli::worker;

/// What one `doctor --json` run said.
struct Run {
    code: Option<i32>,
    json: serde_json::Value,
    /// Standard output and error together.
    all: String,
}

impl Run {
    /// Each check's status by name.
    fn statuses(&self) -> HashMap<String, String> {
        self.json["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no checks: {}", self.all))
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap().to_string();
                (name, c["status"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn status(&self, name: &str) -> String {
        self.statuses()
            .remove(name)
            .unwrap_or_else(|| panic!("no check {name}: {}", self.all))
    }

    fn check(&self, name: &str) -> &serde_json::Value {
        self.json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {}", self.all))
    }

    /// The check `name`, which must have `status` and a detail holding `detail`.
    fn expect(&self, name: &str, status: &str, detail: &str) -> &serde_json::Value {
        let c = self.check(name);
        assert_eq!(c["status"], status, "{c}");
        let shown = c["detail"].as_str().unwrap();
        assert!(shown.contains(detail), "{detail:?} not in {c}");
        c
    }

    /// Panics unless each of `names` passed.
    fn assert_pass(&self, names: &[&str]) {
        for name in names {
            assert_eq!(self.status(name), "pass", "{name}: {}", self.all);
        }
    }

    /// The advice of the check `name`.
    fn advice(&self, name: &str) -> &str {
        self.check(name)["advice"].as_str().unwrap_or_default()
    }

    /// Panics when any of `secrets` appears in the output.
    fn assert_no_secret(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(!self.all.contains(secret), "{secret} leaked: {}", self.all);
        }
    }
}

fn parse(o: Output) -> Run {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    Run {
        code: o.status.code(),
        json,
        all,
    }
}

/// `doctor --json` with `env` (and `extra` arguments), off the async runtime.
async fn doctor(env: Vec<(String, String)>, extra: &[&str]) -> Run {
    let mut args = vec!["doctor".to_string(), "--json".into()];
    if !extra.contains(&"--timeout") {
        args.extend(["--timeout".into(), "30".into()]);
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        parse(worker(&args, &env))
    })
    .await
    .unwrap()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The Douyin server with the default video, as Douyin answers since August 2026 (no record
/// in the share page; the item-info API answers).
async fn douyin() -> DouyinServer {
    DouyinServer::start(vec![video_post(DEFAULT_VIDEO, Behaviour::NewSharePage)]).await
}

/// The Douyin server, a data folder and [`embedded`]'s settings for them (keep the first two
/// for as long as the settings are used).
async fn embedded_with_douyin() -> (DouyinServer, tempfile::TempDir, Vec<(String, String)>) {
    let server = douyin().await;
    let data = tempfile::tempdir().unwrap();
    let vars = embedded(&data, &server.url);
    (server, data, vars)
}

/// The embedded default in `data`, Douyin at `upstream`, the browser off unless asked.
fn embedded(data: &tempfile::TempDir, upstream: &str) -> Vec<(String, String)> {
    let dir = data.path().to_str().unwrap();
    env(&[
        ("DATA_DIR", dir),
        ("TEMP_DIR", &format!("{dir}/tmp")),
        ("DOUYIN_UPSTREAM", upstream),
        ("BROWSER_ENABLED", "false"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_all_green_each_check_reported_and_nothing_left_in_the_store() {
    let (_server, data, mut vars) = embedded_with_douyin().await;
    vars.retain(|(k, _)| k != "BROWSER_ENABLED");
    let port = free_port().to_string();
    vars.push(("HTTP_ADDR".into(), format!("127.0.0.1:{port}")));
    vars.push((
        "DOUYIN_COOKIE".into(),
        "sessionid=doctor-cookie-s3cret".into(),
    ));
    let run = doctor(vars.clone(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    run.assert_no_secret(&["doctor-cookie-s3cret"]);
    assert_eq!(run.json["ok"], true);
    assert_eq!(run.json["mode"], "embedded");
    run.assert_pass(&[
        "configuration",
        "queue",
        "queue functions",
        "storage bucket",
        "storage round trip",
        "temp folder",
        "free space",
        "douyin h5_iteminfo",
        "douyin CDN",
        "listener HTTP_ADDR",
    ]);
    assert_eq!(run.status("anon key"), "skip");
    assert_eq!(run.status("listener API_ADDR"), "skip");
    // The share page carries no record any more: a warning, as another strategy answers.
    assert_eq!(run.status("douyin share_page"), "warn", "{}", run.all);
    run.expect("douyin CDN", "pass", "an MP4");
    run.expect("configuration", "pass", "embedded: SQLite");
    // A real Chromium (`scripts/test.sh` installs it) through the loopback Douyin.
    run.expect(
        "browser",
        "pass",
        &format!("found {DEFAULT_VIDEO} through it"),
    );
    for c in run.json["checks"].as_array().unwrap() {
        assert!(c["ms"].is_u64(), "{c}");
    }
    // The test object is gone, and so is its folder.
    let videos = data.path().join("videos");
    assert!(!videos.join(".doctor").exists(), "left behind");
    assert_eq!(std::fs::read_dir(&videos).unwrap().count(), 0);

    // The text form: a mark per check, a summary.
    vars.push(("BROWSER_ENABLED".into(), "false".into()));
    let text = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        worker(&["doctor"], &env)
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{out}");
    assert!(out.starts_with("✓ configuration "), "{out}");
    assert!(out.contains("\n- browser "), "{out}");
    assert!(out.ends_with("\nready to run (embedded mode)\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn douyin_down_fails_each_strategy_with_the_reason_and_exits_1() {
    let data = tempfile::tempdir().unwrap();
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let mut vars = embedded(&data, &nobody);
    vars.push((
        "DOUYIN_COOKIE".into(),
        "sessionid=doctor-cookie-s3cret; ttwid=doctor-ttwid-s3cret".into(),
    ));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    assert_eq!(run.json["ok"], false);
    run.assert_no_secret(&["doctor-cookie-s3cret", "doctor-ttwid-s3cret"]);
    for strategy in ["share_page", "h5_iteminfo", "slidesinfo"] {
        let name = format!("douyin {strategy}");
        run.expect(&name, "fail", "transient (network)");
        assert!(run.advice(&name).contains("cannot reach Douyin"));
    }
    assert_eq!(run.status("douyin CDN"), "skip");
    // The rest still works and says so.
    assert_eq!(run.status("queue"), "pass");
    assert_eq!(run.status("storage round trip"), "pass");
}

/// `--video`: a post Douyin says is blocked here (Douyin works: warnings, exit 0, advice to
/// pick another video), and one answered with the captcha page (each strategy fails, the
/// advice says to set `DOUYIN_COOKIE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_video_warns_and_a_captcha_fails_with_its_advice() {
    const BLOCKED: &str = "7412345678901234001";
    const CAPTCHA: &str = "7412345678901234002";
    let server = DouyinServer::start(vec![
        video_post(BLOCKED, Behaviour::RegionBlocked),
        video_post(CAPTCHA, Behaviour::Captcha),
    ])
    .await;
    let data = tempfile::tempdir().unwrap();
    let vars = embedded(&data, &server.url);
    let link = format!("https://www.douyin.com/video/{BLOCKED}");
    let run = doctor(vars.clone(), &["--video", &link]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    run.expect("douyin share_page", "warn", "copyright_foreign");
    assert!(run.advice("douyin share_page").contains("--video"));
    assert_eq!(run.status("douyin CDN"), "skip");

    let run = doctor(vars, &["--video", CAPTCHA]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    for strategy in ["share_page", "h5_iteminfo", "slidesinfo"] {
        let name = format!("douyin {strategy}");
        run.expect(&name, "fail", "transient (captcha)");
        assert!(run.advice(&name).contains("DOUYIN_COOKIE"));
    }
}

/// A Douyin that takes connections and never answers: each strategy fails at the check's
/// time limit, and `doctor` goes on to the other checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_douyin_that_never_answers_fails_each_strategy_at_the_time_limit() {
    let data = tempfile::tempdir().unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", silent.local_addr().unwrap());
    let run = doctor(embedded(&data, &upstream), &["--timeout", "2"]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    for strategy in ["share_page", "h5_iteminfo", "slidesinfo"] {
        run.expect(&format!("douyin {strategy}"), "fail", "no answer within 2s");
    }
    assert_eq!(
        run.status("listener API_ADDR"),
        "skip",
        "the checks after it ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_refuses_connections_fails_the_queue_and_skips_what_needs_it() {
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    let url = format!("postgres://u:db-pass-7781@127.0.0.1:{}/db", free_port());
    vars.push(("DATABASE_URL".into(), url));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect("queue", "fail", "database unavailable");
    assert!(run.advice("queue").contains("is the database up"));
    assert_eq!(run.status("queue functions"), "skip");
    assert_eq!(run.status("anon key"), "skip");
    run.assert_pass(&["storage round trip", "douyin CDN"]);
    run.assert_no_secret(&["db-pass-7781"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_room_in_the_temp_folder_fails_the_free_space_check() {
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    vars.push(("MIN_FREE_DISK".into(), "1000T".into()));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect("free space", "fail", "below MIN_FREE_DISK=1000.0 TiB");
    assert_eq!(run.status("temp folder"), "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_browser_is_skipped_unless_the_configuration_asks_for_it() {
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    vars.retain(|(k, _)| k != "BROWSER_ENABLED");
    vars.push(("CHROMIUM_PATH".into(), "/nonexistent/chromium".into()));
    let run = doctor(vars.clone(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    run.expect("browser", "skip", "CHROMIUM_PATH=/nonexistent/chromium");

    vars.push(("BROWSER_ENABLED".into(), "true".into()));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect("browser", "fail", "CHROMIUM_PATH=/nonexistent/chromium");
    assert!(
        run.advice("browser")
            .contains("install Debian's `chromium`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_port_in_use_fails_with_advice() {
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    vars.push(("HTTP_ADDR".into(), addr.clone()));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    let listener = "listener HTTP_ADDR";
    run.expect(
        listener,
        "fail",
        &format!("HTTP_ADDR={addr}: cannot listen"),
    );
    assert!(run.advice(listener).contains("another program or worker"));
}

/// Next to the worker it checks (a cron job): the port its running worker holds is a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_of_a_running_worker_is_a_warning_not_a_failure() {
    let (_server, data, mut vars) = embedded_with_douyin().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let worker_data = data.path().join("worker");
    let worker = crate::cli::RunningBinary::start(&[
        ("DATA_DIR", worker_data.to_str().unwrap()),
        ("HTTP_ADDR", &addr),
    ]);
    let health = format!("http://{addr}/healthz");
    crate::system::wait_until(std::time::Duration::from_secs(30), "healthz", || async {
        let ok = reqwest::get(&health).await.ok()?.status().is_success();
        ok.then_some(())
    })
    .await;
    vars.push(("HTTP_ADDR".into(), addr.clone()));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    run.expect("listener HTTP_ADDR", "warn", "in use by a running worker");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_is_the_configuration_check_failing_with_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let mut vars = embedded(&data, "http://127.0.0.1:9");
    let mut template = vars.clone();
    vars.push(("MAX_CONCURRENT".into(), "abc".into()));
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.all);
    run.expect(
        "configuration",
        "fail",
        "MAX_CONCURRENT=abc: expected a whole number",
    );
    // A rule only `run` checks: the rest is still checked, the exit code is the same.
    template.push(("OBJECT_KEY_TEMPLATE".into(), "videos/all.mp4".into()));
    let run = doctor(template, &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.all);
    run.expect(
        "configuration",
        "fail",
        "OBJECT_KEY_TEMPLATE=videos/all.mp4",
    );
    run.assert_pass(&["queue", "storage round trip", "temp folder"]);
}

/// PostgreSQL with an S3 store: a password in `DATABASE_URL` the server ignores (trust
/// authentication), so it can be looked for in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3_all_green_then_a_wrong_storage_key_fails_without_showing_it() {
    const DB_SECRET: &str = "doctor-db-password-5150";
    const WRONG: &str = "wrong-secret-key-of-doctor-test";
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    let db = fakes::pg::fresh_pg().await;
    let s3 = S3Server::start("videos");
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}password={DB_SECRET}", db.url);
    vars.extend(env(&[
        ("DATABASE_URL", &url),
        ("STORAGE_URL", "s3://videos"),
        ("AWS_ENDPOINT", &s3.endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ("AWS_ACCESS_KEY_ID", S3_ACCESS),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET),
    ]));
    let run = doctor(vars.clone(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    assert_eq!(run.json["mode"], "postgres");
    run.expect("queue", "pass", "postgres answers");
    run.expect("queue functions", "pass", "claim and statistics callable");
    // The test cluster has Supabase's roles: the anon role is refused the worker's calls.
    run.expect("anon key", "pass", "refused claim_download_jobs");
    run.expect("storage round trip", "pass", "signed URL serves it");
    run.assert_no_secret(&[DB_SECRET, S3_SECRET]);
    let left = ObjectBackend::list(&s3.store("videos", S3_SECRET), "")
        .await
        .unwrap();
    assert!(left.is_empty(), "the test object was deleted: {left:?}");

    for (k, v) in vars.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = WRONG.into();
        }
    }
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect("storage bucket", "fail", "bucket videos (s3)");
    assert!(run.advice("storage bucket").contains("credentials"));
    assert_eq!(run.status("storage round trip"), "skip");
    assert_eq!(run.status("queue"), "pass");
    run.assert_no_secret(&[DB_SECRET, WRONG, S3_SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_only_all_green_then_a_bucket_refusing_videos_or_an_anon_key_allowed_to_claim_fails()
 {
    use fakes::postgrest::{PUBLISHABLE_KEY, PostgrestEmulator, SECRET_KEY};
    let (_server, _data, mut vars) = embedded_with_douyin().await;
    let db = fakes::pg::fresh_pg().await;
    let rest = PostgrestEmulator::start(db.pool.clone()).await;
    let storage = fakes::storage_api::StorageApi::start_with_key(SECRET_KEY).await;
    let (url, proxy) = crate::supabase::gateway(rest.url.clone(), storage.url.clone()).await;
    vars.extend(env(&[
        ("SUPABASE_URL", &url),
        ("SUPABASE_SERVICE_ROLE_KEY", SECRET_KEY),
        ("SUPABASE_ANON_KEY", PUBLISHABLE_KEY),
    ]));
    let run = doctor(vars.clone(), &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.all);
    assert_eq!(run.json["mode"], "supabase");
    run.assert_pass(&["queue", "queue functions", "anon key"]);
    run.expect(
        "storage bucket",
        "pass",
        "was missing: created as `run` creates it (public",
    );
    run.expect("storage round trip", "pass", "signed URL serves it");
    run.assert_no_secret(&[SECRET_KEY, PUBLISHABLE_KEY]);
    assert_eq!(
        storage.object_count("videos"),
        0,
        "the test object was deleted"
    );

    // A bucket made by hand that takes pictures only: videos would be refused.
    storage.create_bucket("pictures", true, None, Some(vec!["image/jpeg".into()]));
    let mut pictures = vars.clone();
    pictures.push(("STORAGE_BUCKET".into(), "pictures".into()));
    let run = doctor(pictures, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect(
        "storage bucket",
        "fail",
        "exists, but refuses video/mp4 (public",
    );
    assert!(run.advice("storage bucket").contains("allowed MIME types"));

    // A grant added by hand since the migrations: the public key may claim jobs.
    sqlx::query(
        "grant execute on function public.claim_download_jobs(text, integer, integer) to anon",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let run = doctor(vars, &[]).await;
    assert_eq!(run.code, Some(1), "{}", run.all);
    run.expect(
        "anon key",
        "fail",
        "the anon role may use claim_download_jobs",
    );
    assert!(run.advice("anon key").contains("douyin-worker migrate"));
    run.assert_no_secret(&[SECRET_KEY, PUBLISHABLE_KEY]);
    proxy.abort();
}
