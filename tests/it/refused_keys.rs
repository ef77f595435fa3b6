//! One rule for credentials the server refuses at start-up: a configuration error, exit 2, in
//! every command, with the variable named and no secret shown. (The Supabase key's case, over
//! the REST API and Storage emulators, is in `supabase.rs`.)

use std::process::Command;

use fakes::pg::fresh_pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_user_the_server_refuses_exits_2_from_every_command() {
    let db = fresh_pg().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username("no_such_role").unwrap();
    url.set_password(Some("hunter2-not-shown")).unwrap();
    let url = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["run"][..],
        &["migrate"],
        &["stats"],
        &["jobs"],
        &["setup-storage"],
        &["retry", "--all-failed"],
        &["enqueue", "7412345678901234567"],
    ] {
        let (url, path) = (url.clone(), dir.path().to_path_buf());
        let o = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_douyin-worker"))
                .args(args)
                .current_dir(path)
                .env_remove("SUPABASE_URL")
                .env_remove("SUPABASE_SERVICE_ROLE_KEY")
                .env_remove("STORAGE_URL")
                .env("DATABASE_URL", url)
                .env("HTTP_ADDR", "off")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("no_such_role") && err.contains("DATABASE_URL"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("hunter2"),
            "{args:?}: the password leaked: {err}"
        );
    }
}
