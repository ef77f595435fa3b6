//! Unit tests of the configuration: defaults, errors naming the setting, each setting's rules.
use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn raw() -> RawSettings {
    RawSettings::default()
}

#[test]
fn defaults_are_the_old_workers_and_the_embedded_queue() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.worker.max_concurrent, 2);
    assert_eq!(c.worker.poll_interval, Duration::from_millis(10_000));
    assert!(!c.log.debug);
    assert_eq!(c.worker.max_attempts, 5);
    assert_eq!(c.worker.retry_base, Duration::from_secs(30));
    assert_eq!(c.worker.retry_max, Duration::from_secs(3600));
    assert_eq!(c.worker.shutdown_grace, Duration::from_secs(30));
    assert_eq!(
        c.queue.backend,
        QueueBackend::Sqlite {
            path: PathBuf::from("./data/douyin-worker.db")
        }
    );
    assert!(!c.worker.worker_id.is_empty());
}

#[test]
fn the_http_server_listens_on_loopback_unless_turned_off_and_the_api_needs_it() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.http.http_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(!c.http.api_enabled);
    assert_eq!(c.http.signed_url_ttl, Duration::from_secs(3600));
    for off in ["", "off", "OFF", "none"] {
        let mut r = raw();
        r.http.http_addr = Some(off.into());
        assert_eq!(
            Config::resolve(&r, None).unwrap().http.http_addr,
            None,
            "{off:?}"
        );
    }
    let mut r = raw();
    r.http.http_addr = Some("0.0.0.0:8080".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().http.http_addr,
        Some("0.0.0.0:8080".parse().unwrap())
    );
    r.http.http_addr = Some("localhost".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("HTTP_ADDR=localhost: expected IP:PORT or HOST:PORT"),
        "{e}"
    );
    r.http.http_addr = Some("off".into());
    r.http.api_enabled = Some("true".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(e.contains("API_ENABLED=true needs a listener"), "{e}");
}

#[test]
fn image_posts_are_refused_unless_stored() {
    use crate::extract::media::ImagePolicy;
    assert_eq!(
        Config::resolve(&raw(), None).unwrap().extract.image_posts,
        ImagePolicy::Refuse
    );
    let mut r = raw();
    r.extract.image_posts = Some("Store".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().extract.image_posts,
        ImagePolicy::Store
    );
    r.extract.image_posts = Some("keep".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert_eq!(e, "IMAGE_POSTS=keep: expected refuse or store");
}

#[test]
fn cors_origins_are_origins_or_a_star() {
    let mut r = raw();
    r.http.api_cors_origins = Some(" https://app.example.com/ , http://localhost:3000".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().http.api_cors_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    r.http.api_cors_origins = Some("*".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().http.api_cors_origins,
        ["*"]
    );
    for bad in [
        "app.example.com",
        "https://app.example.com/path",
        "ftp://x.example",
    ] {
        r.http.api_cors_origins = Some(bad.into());
        let e = Config::resolve(&r, None).unwrap_err().to_string();
        assert!(e.starts_with("API_CORS_ORIGINS="), "{bad}: {e}");
    }
}

#[test]
fn a_bad_number_names_the_variable_and_value() {
    let mut r = raw();
    r.worker.max_concurrent = Some("abc".into());
    let e = Config::resolve(&r, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "MAX_CONCURRENT=abc: expected a whole number from 1 to 1000"
    );
    r.worker.max_concurrent = Some("0".into());
    assert!(Config::resolve(&r, None).is_err());
}

#[test]
fn a_malformed_url_is_refused_without_echoing_secrets() {
    let mut r = raw();
    r.supabase.supabase_url = Some("not a url".into());
    r.supabase.supabase_service_role_key = Some("sb_secret_x".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("SUPABASE_URL=not a url: not a valid URL"),
        "{e}"
    );

    let mut r = raw();
    r.queue.database_url = Some("mysql://u:hunter2@h/db".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(e.starts_with("DATABASE_URL: expected a postgres://"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn backend_follows_what_is_configured() {
    let mut r = raw();
    r.supabase.supabase_url = Some("https://abc.supabase.co".into());
    r.supabase.supabase_service_role_key = Some("sb_secret_x".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().queue.backend,
        QueueBackend::Supabase
    );
    r.queue.database_url = Some("postgres://u:pw@localhost:5432/db".into());
    assert!(matches!(
        Config::resolve(&r, None).unwrap().queue.backend,
        QueueBackend::Postgres { .. }
    ));
    r.supabase.supabase_service_role_key = None;
    assert!(
        Config::resolve(&r, None)
            .unwrap_err()
            .to_string()
            .contains("SUPABASE_SERVICE_ROLE_KEY")
    );
}

#[test]
fn the_anon_key_needs_its_project_is_no_service_key_and_is_never_shown() {
    let mut r = raw();
    r.supabase.supabase_anon_key = Some("sb_publishable_visible_to_all".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("SUPABASE_ANON_KEY is set but SUPABASE_URL"),
        "{e}"
    );
    r.supabase.supabase_url = Some("https://abc.supabase.co".into());
    r.supabase.supabase_service_role_key = Some("sb_secret_x".into());
    let c = Config::resolve(&r, None).unwrap();
    let anon = c.supabase.as_ref().unwrap().anon_key.as_ref().unwrap();
    assert_eq!(anon.expose(), "sb_publishable_visible_to_all");
    assert!(!format!("{c:?}").contains("visible_to_all"));
    r.supabase.supabase_anon_key = Some("sb_secret_not_public_0001".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("SUPABASE_ANON_KEY: this is a service key, not the anon key"),
        "{e}"
    );
    assert!(!e.contains("not_public_0001"), "{e}");
}

#[test]
fn the_browser_is_required_only_when_browser_enabled_is_given_true() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.browser.enabled, cfg!(feature = "browser"));
    assert!(!c.browser.required);
    let mut r = raw();
    r.browser.browser_enabled = Some("true".into());
    assert!(Config::resolve(&r, None).unwrap().browser.required);
    r.browser.browser_enabled = Some("false".into());
    let c = Config::resolve(&r, None).unwrap();
    assert!(!c.browser.enabled && !c.browser.required);
}

#[test]
fn summary_and_debug_hide_secrets() {
    let mut r = raw();
    r.queue.database_url = Some("postgres://u:hunter2@localhost/db".into());
    r.supabase.supabase_url = Some("https://abc.supabase.co".into());
    r.supabase.supabase_service_role_key = Some("sb_secret_topsecret".into());
    let c = Config::resolve(&r, None).unwrap();
    let text = format!("{} {:?}", c.summary(), c);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(text.contains("postgres://u:***@localhost/db"), "{text}");
}

#[test]
fn passwords_in_query_parameters_are_hidden_in_the_summary() {
    let mut r = raw();
    r.queue.database_url = Some(
        "postgres://u@localhost/db?password=hunter2&sslpassword=certpass9&sslmode=require\
         &app_api_key=k3y-value&access_token=t0ken-value&client_secret=s3cret-value"
            .into(),
    );
    let c = Config::resolve(&r, None).unwrap();
    let text = format!("{} {:?}", c.summary(), c);
    for secret in [
        "hunter2",
        "certpass9",
        "k3y-value",
        "t0ken-value",
        "s3cret-value",
    ] {
        assert!(!text.contains(secret), "{secret}: {text}");
    }
    assert!(text.contains("password=***"), "{text}");
    assert!(text.contains("sslmode=require"), "{text}");
    assert!(text.contains("postgres://u@localhost/db?"), "{text}");
}

#[test]
fn the_summary_hides_url_parameter_values_and_names_the_pooler() {
    let mut r = raw();
    r.queue.database_url = Some(
        "postgres://u@pooler.example.com:6543/db?sslmode=require&sslpassword=hunter2\
         &password=topsecret"
            .into(),
    );
    let c = Config::resolve(&r, None).unwrap();
    let text = c.summary();
    assert!(
        !text.contains("hunter2") && !text.contains("topsecret"),
        "{text}"
    );
    assert!(text.contains("sslmode=require&sslpassword=***"), "{text}");
    assert!(text.contains("pooler=transaction"), "{text}");
}

#[test]
fn booleans_and_formats_are_checked() {
    let mut r = raw();
    r.log.debug = Some("TRUE".into());
    r.log.log_format = Some("json".into());
    let c = Config::resolve(&r, None).unwrap();
    assert!(c.log.debug);
    assert_eq!(c.log.format, LogFormat::Json);
    r.log.debug = Some("maybe".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap_err().to_string(),
        "DEBUG=maybe: expected true or false"
    );
}

#[test]
fn backoff_base_above_cap_is_refused() {
    let mut r = raw();
    r.worker.retry_base_seconds = Some("100".into());
    r.worker.retry_max_seconds = Some("10".into());
    assert!(Config::resolve(&r, None).is_err());
}

#[test]
fn storage_urls_of_every_object_store_are_accepted_and_malformed_ones_explained() {
    let with = |u: &str| {
        let mut r = raw();
        r.storage.storage_url = Some(u.into());
        Config::resolve(&r, None).map(|c| c.storage.url.unwrap().to_string())
    };
    for good in [
        "s3://videos",
        "gs://videos",
        "gs://my_bucket.example.com",
        "az://videos",
        "azure://videos-2",
        "abfss://videos@account.dfs.core.windows.net",
        "file:///srv/videos",
    ] {
        assert!(with(good).is_ok(), "{good}: {:?}", with(good));
    }
    for (bad, says) in [
        ("gs://", "expected gs://BUCKET"),
        ("gs:///videos", "expected gs://BUCKET"),
        ("gs://Videos", "expected gs://BUCKET"),
        ("gs://videos/prefix", "a path after the bucket"),
        ("az://", "expected az://CONTAINER"),
        ("az://Videos", "expected az://CONTAINER"),
        ("az://ab", "expected az://CONTAINER"),
        ("az://videos/x", "a path after the bucket"),
        ("s3://", "expected s3://BUCKET"),
        (
            "ftp://videos",
            "expected s3://BUCKET, gs://BUCKET, az://CONTAINER",
        ),
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("STORAGE_URL={bad}")), "{e}");
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn every_setting_is_declared_once_with_its_variable_and_help_prints_the_defaults() {
    use clap::{Args, Command};
    let mut cmd = RawSettings::augment_args(Command::new("douyin-worker"));
    let mut envs = Vec::new();
    for arg in cmd.get_arguments() {
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("{} has no environment variable", arg.get_id()));
        assert!(arg.is_global_set(), "{} is not global", arg.get_id());
        envs.push(env.to_string_lossy().into_owned());
    }
    let count = envs.len();
    envs.sort();
    envs.dedup();
    assert_eq!(envs.len(), count, "a variable is declared twice");
    let help = cmd.render_long_help().to_string();
    for shown in [
        "[default: 2]",
        "[default: 10000]",
        "[default: 127.0.0.1:9464]",
        "[default: {douyin_id}/{douyin_id}.{ext}]",
        "[env: MAX_CONCURRENT=",
        "Shared settings: Worker:",
        "Shared settings: Storage:",
    ] {
        assert!(help.contains(shown), "--help lacks {shown}:\n{help}");
    }
}

#[test]
fn a_bad_value_names_the_flag_when_it_came_from_the_command_line() {
    use clap::{Args, Command, FromArgMatches};
    let cmd =
        RawSettings::augment_args(Command::new("douyin-worker")).mut_args(|a| a.env(None::<&str>));
    let m = cmd
        .try_get_matches_from(["douyin-worker", "--download-max-resumes", "many"])
        .unwrap();
    let r = RawSettings::from_arg_matches(&m).unwrap();
    let e = Config::resolve(&r, Some(&m)).unwrap_err().to_string();
    assert!(
        e.starts_with("--download-max-resumes=many: expected a whole number from 0 to 1000"),
        "{e}"
    );
    // The declared defaults apply to whatever is not given.
    let m = Command::new("douyin-worker");
    let m = RawSettings::augment_args(m)
        .mut_args(|a| a.env(None::<&str>))
        .try_get_matches_from(["douyin-worker"])
        .unwrap();
    let r = RawSettings::from_arg_matches(&m).unwrap();
    let c = Config::resolve(&r, Some(&m)).unwrap();
    assert_eq!(c.download, DownloadSettings::default());
    assert_eq!(c.worker.max_concurrent, 2);
}

#[test]
fn boolean_settings_are_switches_that_still_take_a_value_after_an_equals_sign() {
    use clap::{Args, Command, FromArgMatches};
    let cmd = || {
        RawSettings::augment_args(Command::new("douyin-worker"))
            .mut_args(|a| a.env(None::<&str>))
            .subcommand(Command::new("run"))
    };
    let bools: Vec<String> = cmd()
        .get_arguments()
        .filter(|a| a.get_value_names().is_some_and(|v| v == ["BOOL"]))
        .map(|a| a.get_long().unwrap().to_string())
        .collect();
    assert_eq!(bools.len(), 8, "{bools:?}");
    for flag in &bools {
        // Alone, and before a subcommand: the subcommand is not taken as its value.
        let m = cmd()
            .try_get_matches_from(["douyin-worker", &format!("--{flag}"), "run"])
            .unwrap_or_else(|e| panic!("--{flag} run: {e}"));
        assert_eq!(m.subcommand_name(), Some("run"), "--{flag} run");
        let id = flag.replace('-', "_");
        assert_eq!(m.get_one::<String>(&id).unwrap(), "true", "--{flag}");
        let m = cmd()
            .try_get_matches_from(["douyin-worker", &format!("--{flag}=false")])
            .unwrap();
        assert_eq!(m.get_one::<String>(&id).unwrap(), "false", "--{flag}=false");
    }
    let m = cmd()
        .try_get_matches_from(["douyin-worker", "--debug", "--prefer-h264=no", "run"])
        .unwrap();
    let r = RawSettings::from_arg_matches(&m).unwrap();
    let c = Config::resolve(&r, Some(&m)).unwrap();
    assert!(c.log.debug);
    assert!(!c.extract.prefer_h264);
    let m = cmd()
        .try_get_matches_from(["douyin-worker", "--debug=maybe"])
        .unwrap();
    let r = RawSettings::from_arg_matches(&m).unwrap();
    assert_eq!(
        Config::resolve(&r, Some(&m)).unwrap_err().to_string(),
        "--debug=maybe: expected true or false"
    );
}

#[test]
fn listener_addresses_may_name_a_host_resolved_at_start_up() {
    let mut r = raw();
    r.http.http_addr = Some("localhost:9464".into());
    r.http.api_addr = Some("localhost:0".into());
    let c = Config::resolve(&r, None).unwrap();
    assert_eq!(c.http.http_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.http.api_addr, Some("127.0.0.1:0".parse().unwrap()));
    assert!(c.http.api_enabled);
    for (bad, says) in [
        ("localhost:http", "expected IP:PORT or HOST:PORT"),
        ("local host:9464", "expected IP:PORT or HOST:PORT"),
        (":9464", "expected IP:PORT or HOST:PORT"),
        (
            "no-such-host.invalid:9464",
            "cannot resolve the host name no-such-host.invalid",
        ),
    ] {
        let mut r = raw();
        r.http.http_addr = Some(bad.into());
        let e = Config::resolve(&r, None).unwrap_err().to_string();
        assert!(e.starts_with(&format!("HTTP_ADDR={bad}: {says}")), "{e}");
    }
    let mut r = raw();
    r.http.api_addr = Some("no-such-host.invalid:8080".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("API_ADDR=no-such-host.invalid:8080: cannot resolve"),
        "{e}"
    );
}

#[test]
fn min_free_disk_takes_a_size_and_names_itself_when_wrong() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.worker.min_free_disk, 1 << 30);
    let mut r = raw();
    r.worker.min_free_disk = Some("500M".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().worker.min_free_disk,
        500 << 20
    );
    r.worker.min_free_disk = Some("0".into());
    assert_eq!(Config::resolve(&r, None).unwrap().worker.min_free_disk, 0);
    r.worker.min_free_disk = Some("lots".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(e.starts_with("MIN_FREE_DISK=lots: expected a size"), "{e}");
}
