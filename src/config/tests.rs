//! Unit tests of the configuration: defaults, errors naming the setting, each setting's rules.
use super::*;

fn raw() -> RawSettings {
    RawSettings::default()
}

#[test]
fn defaults_are_the_old_workers_and_the_embedded_queue() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.max_concurrent, 2);
    assert_eq!(c.poll_interval, Duration::from_millis(10_000));
    assert!(!c.debug);
    assert_eq!(c.max_attempts, 5);
    assert_eq!(c.retry_base, Duration::from_secs(30));
    assert_eq!(c.retry_max, Duration::from_secs(3600));
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(
        c.queue,
        QueueBackend::Sqlite {
            path: PathBuf::from("./data/douyin-worker.db")
        }
    );
    assert!(!c.worker_id.is_empty());
}

#[test]
fn the_http_server_listens_on_loopback_unless_turned_off_and_the_api_needs_it() {
    let c = Config::resolve(&raw(), None).unwrap();
    assert_eq!(c.http_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(!c.api_enabled);
    assert_eq!(c.signed_url_ttl, Duration::from_secs(3600));
    for off in ["", "off", "OFF", "none"] {
        let mut r = raw();
        r.http_addr = Some(off.into());
        assert_eq!(
            Config::resolve(&r, None).unwrap().http_addr,
            None,
            "{off:?}"
        );
    }
    let mut r = raw();
    r.http_addr = Some("0.0.0.0:8080".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().http_addr,
        Some("0.0.0.0:8080".parse().unwrap())
    );
    r.http_addr = Some("localhost".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("HTTP_ADDR=localhost: expected IP:PORT"),
        "{e}"
    );
    r.http_addr = Some("off".into());
    r.api_enabled = Some("true".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(e.contains("API_ENABLED=true needs a listener"), "{e}");
}

#[test]
fn image_posts_are_refused_unless_stored() {
    use crate::extract::media::ImagePolicy;
    assert_eq!(
        Config::resolve(&raw(), None).unwrap().image_posts,
        ImagePolicy::Refuse
    );
    let mut r = raw();
    r.image_posts = Some("Store".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().image_posts,
        ImagePolicy::Store
    );
    r.image_posts = Some("keep".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert_eq!(e, "IMAGE_POSTS=keep: expected refuse or store");
}

#[test]
fn cors_origins_are_origins_or_a_star() {
    let mut r = raw();
    r.api_cors_origins = Some(" https://app.example.com/ , http://localhost:3000".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().api_cors_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    r.api_cors_origins = Some("*".into());
    assert_eq!(Config::resolve(&r, None).unwrap().api_cors_origins, ["*"]);
    for bad in [
        "app.example.com",
        "https://app.example.com/path",
        "ftp://x.example",
    ] {
        r.api_cors_origins = Some(bad.into());
        let e = Config::resolve(&r, None).unwrap_err().to_string();
        assert!(e.starts_with("API_CORS_ORIGINS="), "{bad}: {e}");
    }
}

#[test]
fn a_bad_number_names_the_variable_and_value() {
    let mut r = raw();
    r.max_concurrent = Some("abc".into());
    let e = Config::resolve(&r, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "MAX_CONCURRENT=abc: expected a whole number from 1 to 1000"
    );
    r.max_concurrent = Some("0".into());
    assert!(Config::resolve(&r, None).is_err());
}

#[test]
fn a_malformed_url_is_refused_without_echoing_secrets() {
    let mut r = raw();
    r.supabase_url = Some("not a url".into());
    r.supabase_service_role_key = Some("sb_secret_x".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(
        e.starts_with("SUPABASE_URL=not a url: not a valid URL"),
        "{e}"
    );

    let mut r = raw();
    r.database_url = Some("mysql://u:hunter2@h/db".into());
    let e = Config::resolve(&r, None).unwrap_err().to_string();
    assert!(e.starts_with("DATABASE_URL: expected a postgres://"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn backend_follows_what_is_configured() {
    let mut r = raw();
    r.supabase_url = Some("https://abc.supabase.co".into());
    r.supabase_service_role_key = Some("sb_secret_x".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap().queue,
        QueueBackend::Supabase
    );
    r.database_url = Some("postgres://u:pw@localhost:5432/db".into());
    assert!(matches!(
        Config::resolve(&r, None).unwrap().queue,
        QueueBackend::Postgres { .. }
    ));
    r.supabase_service_role_key = None;
    assert!(
        Config::resolve(&r, None)
            .unwrap_err()
            .to_string()
            .contains("SUPABASE_SERVICE_ROLE_KEY")
    );
}

#[test]
fn summary_and_debug_hide_secrets() {
    let mut r = raw();
    r.database_url = Some("postgres://u:hunter2@localhost/db".into());
    r.supabase_url = Some("https://abc.supabase.co".into());
    r.supabase_service_role_key = Some("sb_secret_topsecret".into());
    let c = Config::resolve(&r, None).unwrap();
    let text = format!("{} {:?}", c.summary(), c);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(text.contains("postgres://u:***@localhost/db"), "{text}");
}

#[test]
fn passwords_in_query_parameters_are_hidden_in_the_summary() {
    let mut r = raw();
    r.database_url = Some(
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
    r.database_url = Some(
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
    r.debug = Some("TRUE".into());
    r.log_format = Some("json".into());
    let c = Config::resolve(&r, None).unwrap();
    assert!(c.debug);
    assert_eq!(c.log_format, LogFormat::Json);
    r.debug = Some("maybe".into());
    assert_eq!(
        Config::resolve(&r, None).unwrap_err().to_string(),
        "DEBUG=maybe: expected true or false"
    );
}

#[test]
fn backoff_base_above_cap_is_refused() {
    let mut r = raw();
    r.retry_base_seconds = Some("100".into());
    r.retry_max_seconds = Some("10".into());
    assert!(Config::resolve(&r, None).is_err());
}

#[test]
fn storage_urls_of_every_object_store_are_accepted_and_malformed_ones_explained() {
    let with = |u: &str| {
        let mut r = raw();
        r.storage_url = Some(u.into());
        Config::resolve(&r, None).map(|c| c.storage_url.unwrap().to_string())
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
