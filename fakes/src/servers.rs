//! Launchers of the real servers the tests run against, each on a free loopback port in a
//! folder of its own and killed on drop: s3s-fs (S3, checks SigV4), Azurite (Azure Blob
//! Storage), fake-gcs-server (GCS reads) and moto (GCS's XML API, for uploads).
//! `scripts/test.sh` installs them; a missing one fails with a message saying so. Also the one
//! way every test and benchmark picks a free port and waits for a server to answer.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use douyin_worker::storage::cloud::{azure_from_builder, gcs_from_builder, s3_from_builder};
use douyin_worker::storage::object::{ObjectStoreBackend, S3Store};
use object_store::RetryConfig;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;

/// Azurite's well-known development account and key (public, in Microsoft's docs).
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start-up ({status})");
        }
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A program under `~/.cache/douyin-worker-test`, or the one `var` names.
pub fn installed(var: &str, cached: &str, what: &str) -> String {
    if let Ok(p) = std::env::var(var) {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let path = format!("{home}/.cache/douyin-worker-test/{cached}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{what} is needed: run bash scripts/test.sh, which installs it (or set {var})"
    );
    path
}

/// A running process killed on drop.
pub struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts an installed server (see [`installed`]) in a temporary folder, on a free
    /// loopback port that `args` puts on its command line, with its output discarded; returns
    /// once the port answers.
    pub fn start(
        var: &str,
        cached: &str,
        what: &str,
        args: impl FnOnce(&str) -> Vec<String>,
    ) -> (Server, u16) {
        let bin = installed(var, cached, what);
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(bin)
            .args(args(&port.to_string()))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} ({e}): run bash scripts/test.sh"));
        wait_for_port(port, what, &mut child);
        (Server { child, _dir: dir }, port)
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A running Azurite blob service (in memory).
pub struct Azurite {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _server: Server,
}

impl Azurite {
    pub fn start() -> Azurite {
        let (server, port) = Server::start(
            "DW_AZURITE",
            "azurite/node_modules/.bin/azurite-blob",
            "Azurite",
            |port| {
                strings(&[
                    "--silent",
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    port,
                ])
            },
        );
        Azurite {
            url: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// The account URL (path-style, as Azurite serves it).
    pub fn account_url(&self) -> String {
        format!("{}/{AZ_ACCOUNT}", self.url)
    }

    pub fn builder(&self, container: &str, key: &str) -> MicrosoftAzureBuilder {
        MicrosoftAzureBuilder::new()
            .with_account(AZ_ACCOUNT)
            .with_access_key(key)
            .with_endpoint(self.account_url())
            .with_allow_http(true)
            .with_container_name(container)
    }

    pub fn backend(&self, container: &str, key: &str) -> ObjectStoreBackend {
        let (store, creator) = azure_from_builder(self.builder(container, key)).unwrap();
        ObjectStoreBackend::azure(store, creator)
    }
}

/// A running fake-gcs-server (in memory).
pub struct FakeGcs {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _server: Server,
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        let (server, port) = Server::start(
            "DW_FAKE_GCS_SERVER",
            "fake-gcs-server",
            "fake-gcs-server",
            |port| {
                let host = format!("127.0.0.1:{port}");
                strings(&[
                    "-scheme",
                    "http",
                    "-backend",
                    "memory",
                    "-log-level",
                    "error",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    port,
                    "-public-host",
                    &host,
                ])
            },
        );
        FakeGcs {
            url: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// A service-account file as object_store's GCS client reads it: no OAuth, this base URL.
    pub fn service_account(&self) -> String {
        serde_json::json!({
            "private_key": "unused",
            "private_key_id": "unused",
            "client_email": "worker@example.iam.gserviceaccount.com",
            "disable_oauth": true,
            "gcs_base_url": self.url,
        })
        .to_string()
    }

    pub fn builder(&self, bucket: &str) -> GoogleCloudStorageBuilder {
        GoogleCloudStorageBuilder::new()
            .with_service_account_key(self.service_account())
            .with_bucket_name(bucket)
    }

    pub fn backend(&self, bucket: &str) -> ObjectStoreBackend {
        self.backend_in(bucket, None)
    }

    /// The bucket as the worker sees it; a missing one is created in `project`.
    pub fn backend_in(&self, bucket: &str, project: Option<&str>) -> ObjectStoreBackend {
        let (store, bucket) =
            gcs_from_builder(self.builder(bucket), project.map(str::to_string)).unwrap();
        ObjectStoreBackend::gcs(store, bucket)
    }

    pub fn backend_without_retries(&self, bucket: &str) -> ObjectStoreBackend {
        let (store, bucket) =
            gcs_from_builder(self.builder(bucket).with_retry(no_retries()), None).unwrap();
        ObjectStoreBackend::gcs(store, bucket)
    }

    /// Creates a bucket through the emulator's JSON API.
    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", self.url))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// Stores an object through the emulator's JSON multipart upload, with attributes.
    pub async fn seed(&self, bucket: &str, key: &str, data: &[u8], content_type: &str) {
        let meta = serde_json::json!({
            "name": key,
            "contentType": content_type,
            "cacheControl": "max-age=3600",
            "metadata": { "douyin_id": "7412345678901234567" },
        });
        let mut body = Vec::new();
        body.extend_from_slice(b"--BOUNDARY\r\nContent-Type: application/json\r\n\r\n");
        body.extend_from_slice(meta.to_string().as_bytes());
        body.extend_from_slice(
            format!("\r\n--BOUNDARY\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
        let r = reqwest::Client::new()
            .post(format!(
                "{}/upload/storage/v1/b/{bucket}/o?uploadType=multipart",
                self.url
            ))
            .header("content-type", "multipart/related; boundary=BOUNDARY")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// moto's S3 server (PyPI `moto[server]`) standing in for the XML API of Google Cloud
/// Storage, which Google documents as interoperable with S3: the same object paths and the
/// same multipart upload (`POST ?uploads`, `PUT ?partNumber&uploadId`, `POST ?uploadId` with
/// the part list). It lets object_store's GCS uploads run end to end, which no GCS emulator
/// installable here accepts. What it does not check: GCS's own headers (`x-goog-meta-*`
/// metadata, `x-goog-generation`) and credentials (it takes requests without any).
pub struct GcsXmlStandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _server: Server,
}

impl GcsXmlStandIn {
    /// A server with one empty bucket.
    pub async fn start(bucket: &str) -> GcsXmlStandIn {
        let (server, port) =
            Server::start("DW_MOTO_SERVER", "moto-server", "moto's server", |port| {
                strings(&["-H", "127.0.0.1", "-p", port])
            });
        let url = format!("http://127.0.0.1:{port}");
        let r = reqwest::Client::new()
            .put(format!("{url}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating {bucket}: {}", r.status());
        GcsXmlStandIn {
            url,
            _server: server,
        }
    }

    /// object_store's GCS client on this server, with a fixed bearer token (the uploads send
    /// `Authorization: Bearer` even when OAuth is off, and moto needs a token there).
    pub fn builder(&self, bucket: &str) -> GoogleCloudStorageBuilder {
        let token = object_store::gcp::GcpCredential {
            bearer: "test-token".into(),
        };
        GoogleCloudStorageBuilder::new()
            .with_base_url(&self.url)
            .with_credentials(std::sync::Arc::new(
                object_store::StaticCredentialProvider::new(token),
            ))
            .with_bucket_name(bucket)
    }

    pub fn backend(&self, bucket: &str) -> ObjectStoreBackend {
        let (store, bucket) = gcs_from_builder(self.builder(bucket), None).unwrap();
        ObjectStoreBackend::gcs(store, bucket)
    }
}

pub const S3_ACCESS: &str = "test-access-key";
pub const S3_SECRET: &str = "test-secret-key";

/// A running s3s-fs with one bucket; killed on drop.
pub struct S3Server {
    pub endpoint: String,
    child: Child,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The s3s-fs binary: `DW_S3S_FS`, else `~/.cargo/bin/s3s-fs`, else on `PATH`.
pub fn s3s_binary() -> String {
    if let Ok(p) = std::env::var("DW_S3S_FS") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = format!("{home}/.cargo/bin/s3s-fs");
    if std::path::Path::new(&cargo_bin).exists() {
        return cargo_bin;
    }
    "s3s-fs".into()
}

impl S3Server {
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        let port = free_port();
        let child = spawn_s3s(port, root.path());
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            _root: root,
        }
    }

    /// Kills the server (its objects stay in its folder): the endpoint refuses connections.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port over the same folder (after [`S3Server::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let port: u16 = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the endpoint ends with its port");
        self.child = spawn_s3s(port, self._root.path());
    }

    pub fn store(&self, bucket: &str, secret: &str) -> S3Store {
        self.store_in(bucket, secret, "us-east-1")
    }

    /// The bucket as the worker sees it, in a region of its own.
    pub fn store_in(&self, bucket: &str, secret: &str, region: &str) -> S3Store {
        let (store, bucket) = s3_from_builder(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_region(region)
                .with_bucket_name(bucket)
                .with_access_key_id(S3_ACCESS)
                .with_secret_access_key(secret),
        )
        .unwrap();
        S3Store::amazon(store, bucket)
    }
}

/// s3s-fs on `port` over `root`, once the port answers.
fn spawn_s3s(port: u16, root: &std::path::Path) -> Child {
    let mut child = Command::new(s3s_binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_ACCESS, "--secret-key", S3_SECRET])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("s3s-fs is needed ({e}): run bash scripts/test.sh, which installs it")
        });
    wait_for_port(port, "s3s-fs", &mut child);
    child
}

/// No retries inside object_store: a dead endpoint fails at once.
pub fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}
