//! The binary: configuration errors, `migrate`, and `run` refusing to pretend.

use std::process::{Command, Output};

use douyin_worker::queue::QueueAdmin;
use fakes::pg::{fresh_pg_empty, init_tracing};

pub(crate) fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    worker_in(dir.path(), args, env)
}

pub(crate) fn worker_in(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    cmd.args(args).current_dir(cwd);
    for var in [
        "DATABASE_URL",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "MAX_CONCURRENT",
        "DATA_DIR",
        "LOG_FORMAT",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    // Tests run side by side: no server on the default port unless a test asks for one.
    cmd.env("HTTP_ADDR", "off");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_settings_fail_fast_naming_the_variable_or_flag() {
    let o = worker(&["run"], &[("MAX_CONCURRENT", "abc")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("MAX_CONCURRENT=abc: expected a whole number"),
        "{}",
        stderr(&o)
    );
    let o = worker(&["--poll-interval", "soon", "run"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--poll-interval=soon"),
        "{}",
        stderr(&o)
    );
    let o = worker(
        &["run"],
        &[
            ("SUPABASE_URL", "ftp://x"),
            ("SUPABASE_SERVICE_ROLE_KEY", "k"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("SUPABASE_URL=ftp://x"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_object_key_template_that_names_no_video_stops_start_up() {
    let data = tempfile::tempdir().unwrap();
    for template in ["videos/all.mp4", "{ext}/../{ext}"] {
        let o = worker(
            &["run"],
            &[
                ("OBJECT_KEY_TEMPLATE", template),
                ("DATA_DIR", data.path().to_str().unwrap()),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{template}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!(
                "OBJECT_KEY_TEMPLATE={template}: expected a key with"
            )),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_cover_key_template_that_names_no_video_or_is_the_videos_own_stops_start_up() {
    let data = tempfile::tempdir().unwrap();
    for (template, why) in [
        ("covers/all.jpg", "expected a key with"),
        (
            "{douyin_id}/{douyin_id}.{ext}",
            "expected a key other than OBJECT_KEY_TEMPLATE's",
        ),
    ] {
        let o = worker(
            &["run"],
            &[
                ("COVER_KEY_TEMPLATE", template),
                ("DATA_DIR", data.path().to_str().unwrap()),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{template}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("COVER_KEY_TEMPLATE={template}: {why}")),
            "{}",
            stderr(&o)
        );
    }
    // A switch that is not yes or no is named too.
    let o = worker(
        &["run"],
        &[
            ("COVER_KEY_TEMPLATE", "covers/all.jpg"),
            ("STORE_COVERS", "maybe"),
            ("DATA_DIR", data.path().to_str().unwrap()),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("STORE_COVERS=maybe"), "{}", stderr(&o));
}

#[test]
fn a_database_password_never_reaches_the_output() {
    let o = worker(
        &["migrate"],
        &[("DATABASE_URL", "postgres://user:hunter2@127.0.0.1:1/db")],
    );
    assert_eq!(o.status.code(), Some(1));
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(all.contains("cannot connect to DATABASE_URL"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn an_unparsable_env_file_stops_start_up_naming_its_line_but_never_the_value() {
    let dir = tempfile::tempdir().unwrap();
    // An unquoted cookie, then the setting that decides the queue: before, the cookie line
    // was logged whole and DATABASE_URL dropped, so the worker ran on SQLite.
    std::fs::write(
        dir.path().join(".env"),
        "MAX_CONCURRENT=3\nDOUYIN_COOKIE=sessionid=s3ss10n-secret; ttwid=1%7Ctw1d-secret\n\
         DATABASE_URL=postgres://u:pw-secret-1@127.0.0.1:1/db\n",
    )
    .unwrap();
    for command in ["run", "stats", "migrate"] {
        let o = worker_in(dir.path(), &[command], &[]);
        let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
        assert_eq!(o.status.code(), Some(2), "{command}: {all}");
        assert!(
            all.contains(".env line 2 (DOUYIN_COOKIE)"),
            "{command}: {all}"
        );
        for secret in ["s3ss10n-secret", "tw1d-secret", "pw-secret-1"] {
            assert!(!all.contains(secret), "{command}: {secret}: {all}");
        }
        assert!(
            !all.contains("SQLite"),
            "{command} must not start on SQLite: {all}"
        );
    }
    // An unterminated quote.
    std::fs::write(
        dir.path().join(".env"),
        "SUPABASE_SERVICE_ROLE_KEY='sb_secret_unterminated\nSUPABASE_URL=https://x.supabase.co\n",
    )
    .unwrap();
    let o = worker_in(dir.path(), &["run"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(".env line 1 (SUPABASE_SERVICE_ROLE_KEY): a quote is opened"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("sb_secret_unterminated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_quoted_cookie_in_env_loads_and_so_does_every_line_after_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DOUYIN_COOKIE=\"sessionid=s3ss10n-secret; ttwid=1%7Ctw1d-secret\"\nMAX_CONCURRENT=lots\n",
    )
    .unwrap();
    let o = worker_in(dir.path(), &["run"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("MAX_CONCURRENT=lots: expected a whole number"),
        "the line after the cookie was read: {}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("s3ss10n-secret"), "{}", stderr(&o));
}

#[test]
fn passwords_in_database_url_parameters_never_reach_the_output() {
    let o = worker(
        &["run"],
        &[(
            "DATABASE_URL",
            "postgres://u@127.0.0.1:1/db?password=hunter2-param&sslpassword=cert-pass-param&connect_timeout=1",
        )],
    );
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert_ne!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains("postgres://u@127.0.0.1:1/db?"),
        "the start-up line: {all}"
    );
    assert!(!all.contains("hunter2-param"), "{all}");
    assert!(!all.contains("cert-pass-param"), "{all}");
}

#[tokio::test]
async fn migrate_is_needed_once_and_idempotent() {
    init_tracing();
    let db = fresh_pg_empty().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    // Before the migrations, `run` says what is missing.
    let o = worker(&["run"], &env);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("douyin-worker migrate"),
        "{}",
        stderr(&o)
    );
    let o = worker(&["migrate"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = douyin_worker::queue::migrate::POSTGRES.len();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("applied")
            .count(),
        files
    );
    let o = worker(&["migrate"], &env);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("unchanged")
            .count(),
        files
    );
}

/// The binary running as a worker, stopped with SIGTERM (or killed with SIGKILL); killed on
/// drop if still running, so a failing test never leaks a process. Its stderr is drained by a
/// thread from the start (a busy worker writes more than a pipe holds).
pub(crate) struct RunningBinary {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl RunningBinary {
    pub(crate) fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with_nofile(env, None)
    }

    /// The same, with soft and hard `RLIMIT_NOFILE` both set to `nofile` in the child (a
    /// host whose descriptor limit is low: the worker cannot raise it).
    pub(crate) fn start_with_nofile(env: &[(&str, &str)], nofile: Option<u64>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        cmd.arg("run").current_dir(dir.path());
        for var in [
            "DATABASE_URL",
            "SUPABASE_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "DATA_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("LOG_FORMAT", "json")
            .env("POLL_INTERVAL", "200")
            .env("HTTP_ADDR", "off")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        RunningBinary {
            child,
            lines,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The JSON log lines written so far.
    pub(crate) fn logs(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// SIGTERM, then the exit code and the log lines (panics if the process has not exited
    /// within 60 s).
    pub(crate) fn stop(mut self) -> (Option<i32>, Vec<serde_json::Value>) {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// SIGTERM, then the exit code and every line written to standard error, as written
    /// (either log format).
    pub(crate) fn stop_raw(mut self) -> (Option<i32>, Vec<String>) {
        let (code, _) = self.signal_and_wait(libc::SIGTERM);
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        (code, lines.clone())
    }

    /// SIGKILL (a crash: no clean-up of any kind), then the log lines.
    pub(crate) fn kill9(mut self) -> Vec<serde_json::Value> {
        let (code, lines) = self.signal_and_wait(libc::SIGKILL);
        assert_eq!(code, None, "killed by a signal, not exited");
        lines
    }

    fn signal_and_wait(&mut self, signal: i32) -> (Option<i32>, Vec<serde_json::Value>) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the worker did not exit within 60 s of signal {signal}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status.code(), self.logs())
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until the job is `completed`.
async fn wait_completed(
    q: &dyn douyin_worker::queue::QueueAdmin,
    id: uuid::Uuid,
) -> douyin_worker::queue::JobRecord {
    crate::support::backends::wait_for_status(
        q,
        id,
        &["completed"],
        std::time::Duration::from_secs(30),
    )
    .await
}

const ID: &str = "7412345678901234567";

/// bucket, storage_provider, filesize, mime_type, storage_etag, storage_metadata, title,
/// thumbnail_url, video_url_direct.
type StoredRow = (
    String,
    String,
    i64,
    String,
    String,
    serde_json::Value,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_from_pending_to_ready_through_the_binary_on_postgres() {
    use douyin_worker::queue::EnqueueRequest;
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    init_tracing();
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let db = fakes::pg::fresh_pg().await;
    let data = tempfile::tempdir().unwrap();
    let bin = RunningBinary::start(&[
        ("DATABASE_URL", &db.url),
        ("DOUYIN_UPSTREAM", &server.url),
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("WORKER_ID", "e2e-worker"),
    ]);
    let q = douyin_worker::queue::postgres::PgQueue::from_pool(db.pool.clone());
    let r = q
        .enqueue(&EnqueueRequest {
            url: Some(format!("https://www.douyin.com/video/{ID}")),
            ..Default::default()
        })
        .await
        .unwrap();
    let rec = wait_completed(&q, r.job_id.unwrap()).await;
    assert_eq!(rec.video_status, "ready");
    let key = format!("{ID}/{ID}.mp4");
    assert_eq!(rec.video_object_key.as_deref(), Some(key.as_str()));
    assert_eq!(rec.worker_id.as_deref(), Some("e2e-worker"));
    let file = data.path().join("videos").join(&key);
    let bytes = std::fs::read(&file).unwrap();
    let row: StoredRow = sqlx::query_as(
        "select bucket, storage_provider, filesize, mime_type, storage_etag, storage_metadata,
                    title, thumbnail_url, video_url_direct
               from public.videos where id = $1",
    )
    .bind(rec.video_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    use sha2::Digest;
    let sha = format!("{:x}", sha2::Sha256::digest(&bytes));
    assert_eq!((row.0.as_str(), row.1.as_str()), ("videos", "local"));
    assert_eq!(row.2, bytes.len() as i64);
    assert_eq!(row.3, "video/mp4");
    assert_eq!(row.4, sha);
    assert_eq!(row.5["sha256"], sha);
    assert_eq!(row.5["media"]["width"], 720);
    assert!(
        row.6.is_some_and(|t| !t.is_empty()),
        "title filled from the description"
    );
    assert!(row.7.is_some(), "thumbnail filled from the cover");
    assert!(row.8.is_some(), "direct URL cached");
    // Enqueued again: already stored, nothing added.
    let again = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.outcome, douyin_worker::queue::EnqueueOutcome::Ready);
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    assert!(
        lines.iter().any(|l| l["message"] == "job done"),
        "{lines:?}"
    );
    // The job's temp folders are gone.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(&rec.id.simple().to_string())
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_runs_jobs_with_no_configuration_but_a_folder() {
    use douyin_worker::queue::EnqueueRequest;
    use fakes::douyin::{Behaviour, DouyinServer, video_post};
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::OldSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let bin = RunningBinary::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("DOUYIN_UPSTREAM", &server.url),
        ("WORKER_ID", "json-test"),
    ]);
    // Another process (this test) queues into the same SQLite file.
    let q =
        crate::support::backends::open_sqlite_when_created(&data.path().join("douyin-worker.db"))
            .await;
    let r = q
        .enqueue(&EnqueueRequest {
            url: Some(format!(
                "7.43 复制打开抖音，看看 https://www.iesdouyin.com/share/video/{ID}/ 好看"
            )),
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let rec = wait_completed(&q, r.job_id.unwrap()).await;
    assert_eq!(rec.video_status, "ready");
    assert!(
        data.path()
            .join("videos")
            .join(format!("{ID}/{ID}.mp4"))
            .exists()
    );
    let (code, lines) = bin.stop();
    assert_eq!(code, Some(0));
    // JSON logs: one object per line, settings without secrets, job lines with their ids.
    let start = lines
        .iter()
        .find(|v| v["message"] == "douyin-worker starting")
        .expect("a start-up line");
    assert!(
        start["settings"]
            .as_str()
            .unwrap()
            .contains("worker_id=json-test")
    );
    assert!(start["settings"].as_str().unwrap().contains("sqlite"));
    let done = lines
        .iter()
        .find(|v| v["message"] == "job done")
        .expect("a job line");
    assert_eq!(done["span"]["douyin_id"], ID);
}

#[test]
fn supabase_only_mode_explains_how_to_migrate() {
    let o = worker(
        &["migrate"],
        &[
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc"),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("SQL editor") && err.contains("0001_schema.sql"),
        "{err}"
    );
    assert!(!err.contains("sb_secret_abc"));
}

#[test]
fn a_dot_env_file_is_read_and_real_variables_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "MAX_CONCURRENT=lots\nDATA_DIR=./from-dotenv\n",
    )
    .unwrap();
    let o = worker_in(dir.path(), &["migrate"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("MAX_CONCURRENT=lots"), "{}", stderr(&o));
    let o = worker_in(dir.path(), &["migrate"], &[("MAX_CONCURRENT", "3")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("from-dotenv/douyin-worker.db").exists());
}

#[test]
fn enqueue_queues_links_reports_duplicates_and_refuses_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Douyin cannot be reached: the short link is queued as given.
    let douyin = crate::rows::enqueue::unreachable_douyin();
    let env = [
        ("DATA_DIR", data.to_str().unwrap()),
        ("DOUYIN_UPSTREAM", douyin.as_str()),
    ];
    let o = worker(
        &[
            "enqueue",
            "--json",
            "https://www.douyin.com/video/7412345678901234567",
            "7.43 复制打开抖音 https://www.iesdouyin.com/share/video/7412345678901234567/ 看看",
            "https://v.douyin.com/iRNBho6u/",
            "https://example.com/not-douyin",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["queued", "duplicate", "queued", "refused"]);
    assert_eq!(rows[0]["job_id"], rows[1]["job_id"]);
    assert!(
        rows[3]["error"]
            .as_str()
            .unwrap()
            .starts_with("unsupported link:")
    );
    assert!(stderr(&o).contains("1 of 4 inputs were refused"));
    // A video row id works too.
    let video_id = rows[0]["video_id"].as_str().unwrap();
    let o = worker(&["enqueue", video_id], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    // A table: titles, then the row.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("OUTCOME"), "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("duplicate"),
        "{out}"
    );
}
