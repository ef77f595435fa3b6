//! The binary and the local disk: a temp folder that cannot be used stops start-up, too
//! little free space under it pauses claiming (with `/readyz` and `/metrics` saying so).

use std::time::{Duration, Instant};

use douyin_worker::queue::{EnqueueRequest, QueueAdmin};
use fakes::douyin::{Behaviour, DouyinServer, video_post};

use crate::cli::RunningBinary;

const ID: &str = "7412345678901234567";

/// Runs `douyin-worker run` in a fresh folder; its exit code (`None`: still running after
/// 20 s, then killed) and stderr.
fn run_until_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    run_until_exit_as(env, false)
}

/// [`run_until_exit`], the process without capabilities when `unprivileged` (file modes
/// then stop it, as root too).
fn run_until_exit_as(env: &[(&str, &str)], unprivileged: bool) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_douyin-worker"));
    if unprivileged {
        crate::support::privileges::without_capabilities(&mut cmd);
    }
    let mut child = cmd
        .arg("run")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_URL")
        .env_remove("SUPABASE_SERVICE_ROLE_KEY")
        .env("HTTP_ADDR", "off")
        .env("DATA_DIR", dir.path().join("data"))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_temp_dir_that_is_a_file_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    for temp in [file.clone(), file.join("sub")] {
        let shown = temp.to_str().unwrap();
        let (code, err) = run_until_exit(&[("TEMP_DIR", shown)]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains(&format!("TEMP_DIR={shown}: not a folder")),
            "{err}"
        );
    }
}

#[test]
fn a_temp_dir_the_worker_cannot_write_in_stops_start_up_naming_the_variable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let temp = dir.path().join("read-only");
    std::fs::create_dir(&temp).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o555)).unwrap();
    let shown = temp.to_str().unwrap();
    let (code, err) = run_until_exit_as(&[("TEMP_DIR", shown)], true);
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("TEMP_DIR={shown}: cannot write in it")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0, "nothing left");
}

async fn http_get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until a log line of `bin` has `message` (30 s at most).
async fn wait_for_log(bin: &RunningBinary, message: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = bin
            .logs()
            .into_iter()
            .find(|l| l["message"].as_str().is_some_and(|m| m.contains(message)))
        {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line {message:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_free_space_pauses_claiming_and_readyz_and_metrics_say_so() {
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let data = tempfile::tempdir().unwrap();
    let temp = tempfile::tempdir().unwrap();
    let port = fakes::servers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let env = |min_free: &'static str| {
        vec![
            ("DATA_DIR", data.path().to_str().unwrap().to_string()),
            ("TEMP_DIR", temp.path().to_str().unwrap().to_string()),
            ("DOUYIN_UPSTREAM", server.url.clone()),
            ("HTTP_ADDR", addr.clone()),
            ("MIN_FREE_DISK", min_free.to_string()),
        ]
    };
    let start = |vars: &[(&'static str, String)]| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        RunningBinary::start(&vars)
    };
    // No disk has a thousand tebibytes free.
    let bin = start(&env("1000T"));
    let q =
        crate::support::backends::open_sqlite_when_created(&data.path().join("douyin-worker.db"))
            .await;
    let job = q
        .enqueue(&EnqueueRequest {
            douyin_id: Some(ID.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .job_id
        .unwrap();
    let paused = wait_for_log(&bin, "not claiming new jobs").await;
    assert!(
        paused["message"]
            .as_str()
            .unwrap()
            .contains("below MIN_FREE_DISK=1099511627776000"),
        "{paused}"
    );
    assert_eq!(q.job(job).await.unwrap().unwrap().status, "pending");
    let (status, body) = http_get(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "disk");
    let (_, metrics) = http_get(&format!("http://{addr}/metrics")).await;
    assert!(metrics.contains("\ndouyin_low_disk 1\n"), "{metrics}");
    let free = metrics
        .lines()
        .find_map(|l| l.strip_prefix("douyin_temp_free_bytes "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no free-space gauge: {metrics}"));
    assert!(free > 0.0);
    let (code, _) = bin.stop();
    assert_eq!(code, Some(0));
    assert_eq!(q.job(job).await.unwrap().unwrap().status, "pending");

    // With a rule the disk meets, the same job runs.
    let bin = start(&env("1M"));
    crate::support::backends::wait_for_status(&q, job, &["completed"], Duration::from_secs(30))
        .await;
    let (status, body) = http_get(&format!("http://{addr}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = http_get(&format!("http://{addr}/metrics")).await;
    assert!(metrics.contains("\ndouyin_low_disk 0\n"), "{metrics}");
    bin.stop();
}

/// `douyin-worker get LINK ARGS...` in `cwd` against the loopback Douyin server, under umask
/// 022, with its output piped (not waited for).
fn spawn_get(cwd: &std::path::Path, upstream: &str, args: &[&str]) -> std::process::Child {
    // `sh -c 'umask 022; exec "$0" "$@"'`: the umask is the child's, whatever the test's.
    std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_douyin-worker"))
        .arg("get")
        .args(args)
        .current_dir(cwd)
        .env("DOUYIN_UPSTREAM", upstream)
        .env("ALLOW_PRIVATE_NETWORKS", "true")
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_URL")
        .env_remove("SUPABASE_SERVICE_ROLE_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The hidden temp folders `get` left in `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".douyin-worker-get-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_checks_the_output_before_downloading_and_writes_a_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let server = DouyinServer::start(vec![video_post(ID, Behaviour::NewSharePage)]).await;
    let out = tempfile::tempdir().unwrap();
    let link = format!("https://www.douyin.com/video/{ID}");
    for output in ["newdir/", "newdir/video.mp4"] {
        let o = spawn_get(out.path(), &server.url, &[&link, "-o", output])
            .wait_with_output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("--output {output}: ")), "{err}");
        assert!(server.requests().is_empty(), "nothing asked of Douyin");
        assert!(leftovers(out.path()).is_empty());
    }
    let o = spawn_get(out.path(), &server.url, &[&link, "-o", "saved.mp4"])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mode = std::fs::metadata(out.path().join("saved.mp4"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "0666 less the umask 022");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_get_removes_the_partial_download() {
    use fakes::cdn::{Cdn, Serve, bytes};
    let cdn = Cdn::start().await;
    let size = 4 << 20;
    cdn.add(
        "/slow.mp4",
        bytes(size, 5),
        Serve::StallAfter {
            after: 1 << 20,
            stall: Duration::from_secs(60),
        },
    );
    let post = fakes::douyin::video_post_from(
        ID,
        Behaviour::NewSharePage,
        &cdn.url("/slow.mp4"),
        size as u64,
    );
    let server = DouyinServer::start(vec![post]).await;
    let out = tempfile::tempdir().unwrap();
    let link = format!("https://www.douyin.com/video/{ID}");
    let child = spawn_get(out.path(), &server.url, &[&link, "-o", "."]);
    // Wait until the download is under way: a partial file in the hidden folder.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partial = leftovers(out.path()).iter().any(|d| {
            std::fs::read_dir(out.path().join(d))
                .map(|files| {
                    files
                        .flatten()
                        .any(|f| f.metadata().is_ok_and(|m| m.len() > 0))
                })
                .unwrap_or(false)
        });
        if partial {
            break;
        }
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert_eq!(leftovers(out.path()), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
