//! A small in-memory emulator of Supabase Storage (storage-api) as hosted Supabase mounts it:
//! `STORAGE = {url}/storage/v1`, for the Supabase Storage backend's tests.
//!
//! It is built from the Supabase Storage wire contract in the project's shared contracts (verified against a real storage-api server), not from storage-api's code
//! (the contract is `supabase-storage.md`). Where the contract shows a transcript, the emulator
//! answers the same status, headers and body (byte for byte for error bodies, including their
//! key order); everything else below is the emulator's own choice and is marked as such.
//!
//! # Auth (contract §0, §6)
//!
//! Every route except the signed-URL download requires `Authorization: Bearer <key>` (the
//! scheme is matched case-insensitively, as the server's `^Bearer\s+` regex). The key decides
//! the role:
//!
//! * equal to the emulator's service key ([`SERVICE_KEY`] by default, or the one given to
//!   [`StorageApi::start_with_key`]) or starting with `sb_secret_` → service_role;
//! * starting with `sb_publishable_`, or a JWT whose payload (the middle part, base64url) has
//!   `"role":"anon"` → anon. **The signature of such a JWT is not checked**;
//! * anything else → 400 `{"statusCode":"403","error":"Unauthorized","message":"signature
//!   verification failed","code":"AccessDenied"}`;
//! * no `Authorization` → 400 `{"statusCode":"400","error":"Error","message":"headers must have
//!   required property 'authorization'","code":"InvalidRequest"}` on REST routes, and 400
//!   `{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"Invalid
//!   Compact JWS"}` on the TUS routes (as the contract's transcript shows).
//!
//! The `apikey` header is not checked (the hosted gateway would refuse a request without it);
//! tests that care read it with [`StorageApi::last_headers`].
//!
//! Anon (no RLS policy on `storage.objects`, as in the contract): writes (bucket creation,
//! standard uploads after the bucket / mime / size checks) answer 400 `{"statusCode":"403",
//! "error":"Unauthorized","message":"new row violates row-level security policy","code":
//! "AccessDenied"}`; reads see nothing (`NoSuchKey` / `NoSuchBucket`, empty lists, deletes
//! find nothing) — the emulator's reading of "RLS hides every row". On TUS routes anon gets
//! `403` with the text body `new row violates row-level security policy` (not in the
//! contract's transcripts: the emulator's choice, in the TUS error style).
//!
//! # REST routes (contract §1–§6): errors are HTTP 400 with the real status as a string
//!
//! * `POST /bucket` (`id` defaults to `name`; `file_size_limit` an integer or a string like
//!   `"500MB"`, read with decimal units B/KB/MB/GB — the unit base is the emulator's choice,
//!   the contract does not show it; 0 or null = no limit; `allowed_mime_types` exact or
//!   `type/*`) → `{"name":id}`, existing → `BucketAlreadyExists`. `GET /bucket/{id}` → the row
//!   (`NoSuchBucket`); `GET /bucket` → every row.
//! * `POST|PUT /object/{bucket}/{path}`: raw body; `Content-Type` is the object's content type
//!   (missing → `application/x-www-form-urlencoded`, as curl sends; parameters after `;` are
//!   ignored for the allowed-types check); `Cache-Control` stored verbatim (default
//!   `no-cache`); `x-upsert: true` (exactly) allows overwriting on POST, else `KeyAlreadyExists`;
//!   PUT replaces (and, the emulator's choice, creates a missing object); `x-metadata:
//!   base64(JSON object)` → user metadata (invalid base64/JSON silently ignored → `null`; an
//!   upsert without it resets it to `null`). Checks in order: bucket (`NoSuchBucket`), mime
//!   (`InvalidMimeType`), size against min(bucket limit, global limit) (`EntityTooLarge`), RLS,
//!   existing key. Success `{"Key":"bucket/path","Id":uuid}`, `Id` stable across overwrites
//!   (each write gets a new `version`).
//! * `GET /object/info/{bucket}/{path}` (also `info/authenticated/` and `info/public/`, both
//!   with auth) → `{id,name,version,bucket_id,size,content_type,cache_control,etag,metadata,
//!   last_modified,created_at}` plus `etag` / `last-modified` / `cache-control` headers.
//! * `HEAD|GET /object/{bucket}/{path}` (also `/object/authenticated/…`): `accept-ranges`,
//!   `content-type`, `etag`, `x-robots-tag: none`, `last-modified`, `content-length`,
//!   `cache-control`; a single `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) → 206 with
//!   `content-range`, a range starting past the end → 416 (`content-range: bytes */LEN`), other
//!   ranges ignored. Missing → `NoSuchKey` (HEAD: HTTP 400, JSON headers, empty body).
//! * `POST /object/sign/{bucket}/{path}` `{"expiresIn":n}` (n ≥ 1) → `{"signedURL":
//!   "/object/sign/{bucket}/{path}?token=…"}` (relative to the storage root); batch `POST
//!   /object/sign/{bucket}` `{"expiresIn","paths"}`. **The token is JWT-shaped but opaque**:
//!   `base64url(header).base64url({"url","scope":"download","iat","exp"}).<random>`; the
//!   emulator remembers each token with its bucket/path and an expiry of exactly `expiresIn`
//!   seconds from signing (millisecond precision, so a test waits ~1 s, not 2). `GET|HEAD
//!   /object/sign/{bucket}/{path}?token=…` needs no auth: bytes (Range as above, `expires`
//!   header, `&download[=name]` → `content-disposition`); no token → `InvalidRequest`
//!   "querystring must have required property 'token'"; expired → `InvalidJWT` "\"exp\" claim
//!   timestamp check failed"; unknown token → `InvalidJWT` "Invalid Compact JWS" (not three
//!   dot-separated parts) or "signature verification failed"; a token for another path → 400
//!   `InvalidSignature` "The url do not match the signature" (the emulator's wording); object
//!   deleted since → `NoSuchKey`.
//! * `DELETE /object/{bucket}/{path}` → `{"message":"Successfully deleted"}` / `NoSuchKey`;
//!   `DELETE /object/{bucket}` `{"prefixes":[…]}` → array of the deleted rows (missing skipped).
//! * `POST /object/list/{bucket}` `{"prefix","limit"(100),"offset"(0),"search","sortBy"}`:
//!   folder listing: `prefix` is a folder (trailing `/` optional); objects directly inside
//!   come back as `{name,id,updated_at,created_at,last_accessed_at,metadata}` with the name
//!   relative to the folder (the contract's transcript). The rest is not in the transcripts
//!   and is the emulator's choice, after storage-api's documented behaviour: sub-folders come
//!   back as entries whose other fields are `null`; `search` is a case-insensitive name
//!   prefix; entries (folders and objects together) are sorted by name (`sortBy.order`
//!   `desc` reverses; other columns are not emulated), then `offset` skips and `limit` cuts
//!   (no cap on `limit`); a missing bucket → `NoSuchBucket`.
//!
//! System metadata (list, delete) is `{"eTag","size","mimetype","cacheControl","lastModified",
//! "contentLength","httpStatusCode":200}`. **ETag**: the real file backend uses the quoted MD5
//! of the content; md5 is not a dependency, so the emulator uses the quoted first 32 hex digits
//! of SHA-256(`"storage-api-emulator-etag\0"` ‖ content): MD5-shaped, stable per content, and
//! deliberately *not* the SHA-256 of the content (which the worker computes), so a client that
//! compares an etag with its own hash fails here as it would against S3 backends. Treat etags
//! as opaque.
//!
//! # TUS (contract §7): real statuses, `text/plain;charset=UTF-8` bodies, `Tus-Resumable`
//!
//! Bodies end with `\n` where the contract's content-lengths show it (tus-server messages) and
//! not where they do not (storage-api messages).
//!
//! * `OPTIONS /upload/resumable` → 204 with `tus-extension`, `tus-version`, `tus-resumable`
//!   (and `tus-max-size` when a global limit is set). No auth.
//! * Every other TUS request: auth first, then `Tus-Resumable` (missing → 412 `Tus-Resumable
//!   Required\n`, another version → 412 `Unsupported version\n`), then anon → 403.
//! * Create `POST /upload/resumable`: `Upload-Length` (missing → 400 `Upload-Length or
//!   Upload-Defer-Length header required\n`; `Upload-Defer-Length` is not emulated → 400);
//!   `Upload-Metadata` pairs `key base64(value)` (missing header or no `bucketName` /
//!   `objectName` → 400 `Metadata header is required`); bucket → 404 `Bucket not found`;
//!   length above min(bucket limit, global limit) → 413 `Maximum size exceeded\n`;
//!   `contentType` (default `application/octet-stream`, the emulator's choice) → 415 `mime type
//!   X is not supported`; existing object without `x-upsert: true` → 409 `The resource already
//!   exists`; `cacheControl` all digits → `max-age=N`, anything else → `no-cache`; `metadata`
//!   JSON → user metadata (invalid → `null`). → 201, `Location: http://{Host}/storage/v1/
//!   upload/resumable/{base64url("bucket/object/version-uuid")}` (proto from
//!   `X-Forwarded-Proto`, default `http`). Creation-with-upload (a body with `Content-Type:
//!   application/offset+octet-stream`) is handled like a PATCH at offset 0 and answers 201
//!   with `Upload-Offset` (and `Tus-Complete: 1`).
//! * `PATCH <Location>`, checks in order: `Upload-Offset` missing → 403 `Upload-Offset header
//!   required\n`; `Content-Type` not `application/offset+octet-stream` → 403 `Content-Type
//!   header required\n`; unknown id → 404 `The file for this url was not found\n`;
//!   **x-upsert re-evaluated**: the object exists and this request has no `x-upsert: true` →
//!   409 `The resource already exists`; another PATCH of the same upload in flight → 503
//!   `acquiring lock timeout` (at once; the real server waits first); offset ≠ stored → 409
//!   `Upload-Offset conflict\n`; offset + `Content-Length` > `Upload-Length` → 413 `upload's
//!   size exceeded\n` (so a PATCH after completion is 413); then the **hosted 6 MiB rule**: a
//!   non-final PATCH whose length is not exactly 6 MiB (6291456) → 400 `chunk size must be
//!   exactly 6 MiB (6291456 bytes) except for the last chunk (hosted Supabase Storage)\n`.
//!   That rule is what hosted Supabase documents; the real file backend accepts any size
//!   (turn it off with [`StorageApi::set_hosted_chunk_rule`]). The length is the
//!   `Content-Length`; a chunked PATCH is checked once its body has ended (its bytes are then
//!   taken back). Success → 204 with `Upload-Offset`; the final chunk adds `Tus-Complete: 1`
//!   and writes the object at once (info and download work immediately).
//!   Bytes are appended to the upload **as they arrive**: a PATCH whose body breaks off keeps
//!   the bytes received before the break (the file backend's behaviour in the contract).
//! * `HEAD <Location>` → 200, `Upload-Offset`, `Upload-Length`, `Upload-Metadata` (echo with
//!   `cacheControl` normalised), `Cache-Control: no-store`; unknown or terminated → 404.
//! * `DELETE <Location>` → 204; a finished upload → 400 `Cannot terminate an already completed
//!   upload\n`; unknown → 404.
//!
//! # Fault injection ([`StorageApi::fail_next`], [`StorageApi::interrupt_next_patch`])
//!
//! `fail_next(needle, status, n)`: the next `n` requests whose *path* (no query) contains
//! `needle` answer `status` before anything else is checked (after the request is recorded;
//! the request body is read and discarded first, so the client always receives the answer;
//! nothing is stored). REST routes: the contract's body for that status (`{"statusCode":"<status>",
//! "error","message","code"}`: 404 `NoSuchKey`, 409 `KeyAlreadyExists`, 413 `EntityTooLarge`,
//! 415 `InvalidMimeType`, 403 `AccessDenied`, 400 `InvalidRequest`, 423 `ResourceLocked`, 429
//! `SlowDown` / `too_many_connections` with message "Too many connections issued to the
//! database", 5xx `InternalError` / `internal` with message "Internal Server Error", others
//! `InvalidRequest`). HTTP status: 429 → 429, 5xx → that status (what the server or the
//! gateway answers), anything else → 400 (wrapped). TUS routes: that real status, `text/plain`
//! body `emulated fault <status>\n`, `Tus-Resumable: 1.0.0` (a failed PATCH stores nothing).
//!
//! `hang_next(needle, stall, n)`: the next `n` requests whose path contains `needle` get no
//! answer for `stall` (the body is not read meanwhile), then are handled as usual, a fault
//! included (a hang then a 503 is a gateway giving up on a stuck backend). `clear_faults()`
//! forgets every pending fault and hang. Test aids, not in the contract.
//!
//! `interrupt_next_patch(after)`: the next TUS PATCH that passes every check above reads
//! `after` body bytes, appends exactly those to the upload, then the emulator kills the
//! connection: the server never answers and closes the socket (the listener wraps each
//! connection's stream and fails every later read and write). **The client sees the PATCH fail
//! with a connection error and no HTTP status**: reqwest's `send()` returns an error with
//! `is_request()` true whose source is hyper's I/O error — observed: `ConnectionReset`
//! ("Connection reset by peer"); depending on timing it may be a broken pipe or "connection
//! closed before message completed" — exactly like a network drop. The bytes are stored before
//! the connection dies, so a `HEAD` right after reports the offset moved by `after`. If the
//! body is `after` bytes or shorter, all of it is kept (a final chunk completes the object)
//! and the connection still dies before the answer (a lost response).
//!
//! # Left out
//!
//! Multipart/form-data uploads (400 `InvalidRequest`), the S3 protocol endpoint (`/s3`),
//! public-bucket downloads without auth (`/object/public/…`), image transformations,
//! `/object/move`, `/object/copy`, bucket update/delete/empty, signed *upload* URLs and
//! `/upload/resumable/sign`, TUS `Upload-Defer-Length`, upload-URL expiry (uploads never
//! expire), real JWT verification (signatures, `exp`, the project secret), object-key
//! validation rules, `owner` (always `""`), `last_accessed_at` tracking, sort columns other
//! than name, rate limits, the `apikey` gateway check, the lock wait before 503, and HTTP/2.
//! Unknown routes answer 404 `{"statusCode":404,"error":"Not Found","message":"Route M:/p not
//! found"}` (the emulator's wording).

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// The emulator's default service-role key (any `sb_secret_…` key is accepted too).
pub const SERVICE_KEY: &str = "service-key-for-tests";

/// The chunk size hosted Supabase requires for every TUS PATCH but the last.
pub const TUS_CHUNK: u64 = 6 * 1024 * 1024;

const PREFIX: &str = "/storage/v1";
const TUS_ROOT: &str = "/upload/resumable";
const JSON_UTF8: &str = "application/json; charset=utf-8";
const TEXT_UTF8: &str = "text/plain;charset=UTF-8";
const OFFSET_OCTET: &str = "application/offset+octet-stream";

// ---------------------------------------------------------------------------------------------
// Public handle

/// A running emulator on `127.0.0.1:0` (a tokio task, aborted when this is dropped).
pub struct StorageApi {
    /// Like a `SUPABASE_URL`: `http://127.0.0.1:PORT` (storage lives at `{url}/storage/v1`).
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    emu: Arc<Emu>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StorageApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StorageApi {
    /// Starts an emulator whose service key is [`SERVICE_KEY`].
    pub async fn start() -> StorageApi {
        Self::start_with_key(SERVICE_KEY).await
    }

    /// Starts an emulator whose service key is `service_key` (e.g. a JWT shared with the
    /// PostgREST emulator); `sb_secret_…` keys are accepted as well.
    pub async fn start_with_key(service_key: &str) -> StorageApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the storage-api emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("emulator address");
        let emu = Arc::new(Emu {
            service_key: service_key.to_string(),
            addr,
            st: Mutex::new(St {
                hosted_chunk_rule: true,
                ..St::default()
            }),
        });
        let router = Router::new().fallback(handle).with_state(emu.clone());
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<Conn>();
            if let Err(e) = axum::serve(KillableListener(listener), service).await {
                eprintln!("storage-api emulator stopped: {e}");
            }
        });
        StorageApi {
            url: format!("http://{addr}"),
            addr,
            emu,
            task,
        }
    }

    /// `{url}/storage/v1`.
    pub fn storage_url(&self) -> String {
        format!("{}{PREFIX}", self.url)
    }

    /// Creates (or replaces) a bucket directly, without a request.
    pub fn create_bucket(
        &self,
        id: &str,
        public: bool,
        file_size_limit: Option<u64>,
        allowed_mime_types: Option<Vec<String>>,
    ) {
        let now = Utc::now();
        self.emu.st().buckets.insert(
            id.to_string(),
            Bucket {
                id: id.to_string(),
                name: id.to_string(),
                public,
                file_size_limit: file_size_limit.filter(|l| *l > 0),
                allowed_mime_types,
                created_at: now,
            },
        );
    }

    /// Stores an object directly, without a request (overwrites; the bucket must exist).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8], content_type: &str) {
        let mut st = self.emu.st();
        assert!(st.buckets.contains_key(bucket), "no bucket {bucket}");
        st.store_object(
            bucket,
            key,
            Bytes::copy_from_slice(bytes),
            content_type.to_string(),
            "no-cache".to_string(),
            Value::Null,
            Uuid::new_v4(),
        );
    }

    /// The next `n` requests whose path contains `needle` answer `status` (see the module
    /// documentation for the exact answers).
    pub fn fail_next(&self, needle: &str, status: u16, n: u32) {
        self.emu.st().faults.push(Fault {
            needle: needle.to_string(),
            status,
            remaining: n,
        });
    }

    /// The next `n` requests whose path contains `needle` hang: the emulator does nothing with
    /// them (reads no body, sends nothing) for `stall`, then handles them as usual (a fault
    /// from [`StorageApi::fail_next`] taken by the same request is answered after the hang).
    pub fn hang_next(&self, needle: &str, stall: Duration, n: u32) {
        self.emu.st().hangs.push(Hang {
            needle: needle.to_string(),
            stall,
            remaining: n,
        });
    }

    /// Forgets every pending fault and hang (the store is healthy again; a request already
    /// hanging stays so).
    pub fn clear_faults(&self) {
        let mut st = self.emu.st();
        st.faults.clear();
        st.hangs.clear();
    }

    /// The next TUS PATCH that passes its checks keeps `after` body bytes, then its connection
    /// is killed without an answer (see the module documentation).
    pub fn interrupt_next_patch(&self, after: u64) {
        self.emu.st().interrupt = Some(after);
    }

    /// A global upload size limit (the project's `UPLOAD_FILE_SIZE_LIMIT`; hosted Free plan:
    /// 50 MB), applied with the bucket limits to standard and TUS uploads. Default: none.
    pub fn set_upload_size_limit(&self, limit: Option<u64>) {
        self.emu.st().global_limit = limit;
    }

    /// Turns the hosted "6 MiB chunks except the last" TUS rule on (the default) or off (the
    /// file backend's behaviour).
    pub fn set_hosted_chunk_rule(&self, on: bool) {
        self.emu.st().hosted_chunk_rule = on;
    }

    /// Makes every signed URL issued so far expired.
    pub fn expire_signed_urls(&self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for t in self.emu.st().tokens.values_mut() {
            t.expires = past;
        }
    }

    /// Stored object: (bytes, content_type, cache_control, user metadata JSON — `null` when
    /// none).
    pub fn object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Option<(Vec<u8>, String, String, serde_json::Value)> {
        let st = self.emu.st();
        st.objects
            .get(&(bucket.to_string(), key.to_string()))
            .map(|o| {
                (
                    o.data.to_vec(),
                    o.content_type.clone(),
                    o.cache_control.clone(),
                    o.user_metadata.clone(),
                )
            })
    }

    /// Number of objects in `bucket`.
    pub fn object_count(&self, bucket: &str) -> usize {
        self.emu
            .st()
            .objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .count()
    }

    /// Number of TUS uploads created and neither finished nor terminated.
    pub fn open_uploads(&self) -> usize {
        self.emu
            .st()
            .uploads
            .values()
            .filter(|u| !u.completed)
            .count()
    }

    /// (method, path) of every request, in order (path without the query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.emu
            .st()
            .log
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    /// Headers of the last request whose path contains `needle` (lowercase names, in order).
    pub fn last_headers(&self, needle: &str) -> Option<Vec<(String, String)>> {
        self.emu
            .st()
            .log
            .iter()
            .rev()
            .find(|r| r.path.contains(needle))
            .map(|r| r.headers.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// A listener whose connections can be killed from a handler

/// The connection info handed to the handler: the peer and the connection's kill switch.
#[derive(Clone, Debug)]
struct Conn {
    /// Shown when a test prints a connection.
    #[allow(dead_code)]
    peer: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Conn {
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

struct KillableListener(TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (KillableStream, Conn) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        KillableStream {
                            inner: stream,
                            kill: kill.clone(),
                        },
                        Conn { peer, kill },
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn {
            peer: self.0.local_addr()?,
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream whose every read and write fails once its kill switch is on, so hyper drops
/// (closes) the connection instead of answering.
struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillableStream {
    fn killed(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection killed by the emulator",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Emu {
    service_key: String,
    addr: SocketAddr,
    st: Mutex<St>,
}

impl Emu {
    fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Role, AuthError> {
        let Some(value) = headers.get("authorization") else {
            return Err(AuthError::Missing);
        };
        let value = value.to_str().map_err(|_| AuthError::Invalid)?;
        let token = match value.get(..6) {
            Some(scheme)
                if scheme.eq_ignore_ascii_case("bearer")
                    && value[6..].starts_with(char::is_whitespace) =>
            {
                value[6..].trim()
            }
            _ => return Err(AuthError::Invalid),
        };
        if token.is_empty() {
            return Err(AuthError::Invalid);
        }
        if token == self.service_key || token.starts_with("sb_secret_") {
            return Ok(Role::Service);
        }
        if token.starts_with("sb_publishable_") || jwt_role(token).as_deref() == Some("anon") {
            return Ok(Role::Anon);
        }
        Err(AuthError::Invalid)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Service,
    Anon,
}

enum AuthError {
    Missing,
    Invalid,
}

/// The `role` claim of a JWT-shaped token (payload decoded with base64url; no signature check).
fn jwt_role(token: &str) -> Option<String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    claims.get("role")?.as_str().map(str::to_string)
}

#[derive(Default)]
struct St {
    buckets: BTreeMap<String, Bucket>,
    objects: BTreeMap<(String, String), Obj>,
    tokens: HashMap<String, SignedToken>,
    uploads: HashMap<String, TusUpload>,
    faults: Vec<Fault>,
    hangs: Vec<Hang>,
    interrupt: Option<u64>,
    log: Vec<Logged>,
    global_limit: Option<u64>,
    hosted_chunk_rule: bool,
}

struct Bucket {
    id: String,
    name: String,
    public: bool,
    file_size_limit: Option<u64>,
    allowed_mime_types: Option<Vec<String>>,
    created_at: DateTime<Utc>,
}

impl Bucket {
    fn row(&self) -> String {
        let ts = iso(self.created_at);
        obj(&[
            ("id", js(&self.id)),
            ("name", js(&self.name)),
            ("owner", js("")),
            ("public", js(&self.public)),
            ("file_size_limit", js(&self.file_size_limit)),
            ("allowed_mime_types", js(&self.allowed_mime_types)),
            ("created_at", js(&ts)),
            ("updated_at", js(&ts)),
        ])
    }

    fn allows(&self, content_type: &str) -> bool {
        let Some(allowed) = &self.allowed_mime_types else {
            return true;
        };
        if allowed.is_empty() {
            return true;
        }
        let base = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            match a.strip_suffix("/*") {
                Some(top) => base.split('/').next() == Some(top) && base.contains('/'),
                None => a == base,
            }
        })
    }
}

struct Obj {
    id: Uuid,
    version: Uuid,
    data: Bytes,
    content_type: String,
    cache_control: String,
    etag: String,
    user_metadata: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Obj {
    fn system_metadata(&self) -> String {
        obj(&[
            ("eTag", js(&self.etag)),
            ("size", js(&self.data.len())),
            ("mimetype", js(&self.content_type)),
            ("cacheControl", js(&self.cache_control)),
            ("lastModified", js(&iso(self.updated_at))),
            ("contentLength", js(&self.data.len())),
            ("httpStatusCode", js(&200)),
        ])
    }

    fn full_row(&self, bucket: &str, key: &str) -> String {
        obj(&[
            ("name", js(key)),
            ("bucket_id", js(bucket)),
            ("owner", js("")),
            ("owner_id", js("")),
            ("version", js(&self.version)),
            ("id", js(&self.id)),
            ("updated_at", js(&iso(self.updated_at))),
            ("created_at", js(&iso(self.created_at))),
            ("last_accessed_at", js(&iso(self.updated_at))),
            ("metadata", self.system_metadata()),
            ("user_metadata", js(&self.user_metadata)),
        ])
    }
}

struct SignedToken {
    bucket: String,
    key: String,
    expires: SystemTime,
}

struct TusUpload {
    bucket: String,
    object: String,
    version: Uuid,
    length: u64,
    data: Vec<u8>,
    content_type: String,
    cache_control: String,
    user_metadata: Value,
    metadata_echo: String,
    completed: bool,
    busy: bool,
}

struct Fault {
    needle: String,
    status: u16,
    remaining: u32,
}

struct Hang {
    needle: String,
    stall: Duration,
    remaining: u32,
}

struct Logged {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl St {
    fn limit_for(&self, bucket: &Bucket) -> Option<u64> {
        match (bucket.file_size_limit, self.global_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take_hang(&mut self, path: &str) -> Option<Duration> {
        let hang = self
            .hangs
            .iter_mut()
            .find(|h| h.remaining > 0 && path.contains(&h.needle))?;
        hang.remaining -= 1;
        let stall = hang.stall;
        self.hangs.retain(|h| h.remaining > 0);
        Some(stall)
    }

    fn take_fault(&mut self, path: &str) -> Option<u16> {
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.remaining > 0 && path.contains(&f.needle))?;
        fault.remaining -= 1;
        let status = fault.status;
        self.faults.retain(|f| f.remaining > 0);
        Some(status)
    }

    /// Writes an object (a new row, or a new version of an existing row keeping its `Id`).
    #[allow(clippy::too_many_arguments)]
    fn store_object(
        &mut self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: String,
        cache_control: String,
        user_metadata: Value,
        version: Uuid,
    ) -> Uuid {
        let now = Utc::now();
        let k = (bucket.to_string(), key.to_string());
        let (id, created_at) = match self.objects.get(&k) {
            Some(o) => (o.id, o.created_at),
            None => (Uuid::new_v4(), now),
        };
        let etag = etag_of(&data);
        self.objects.insert(
            k,
            Obj {
                id,
                version,
                data,
                content_type,
                cache_control,
                etag,
                user_metadata,
                created_at,
                updated_at: now,
            },
        );
        id
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn js<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("serialisable")
}

/// A JSON object with keys in the given order (values already serialised).
fn obj(fields: &[(&str, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&js(k));
        s.push(':');
        s.push_str(v);
    }
    s.push('}');
    s
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The emulator's ETag (see the module documentation): quoted, MD5-shaped, not a content hash
/// any client computes.
fn etag_of(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"storage-api-emulator-etag\0");
    h.update(data);
    format!("\"{}\"", &hex(&h.finalize())[..32])
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `bucket/key…` → (bucket, key), both percent-decoded; the key may be empty.
fn split_object_path(p: &str) -> (String, String) {
    match p.split_once('/') {
        Some((b, k)) => (percent_decode(b), percent_decode(k)),
        None => (percent_decode(p), String::new()),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn upsert(headers: &HeaderMap) -> bool {
    header(headers, "x-upsert") == Some("true")
}

fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
    for (k, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    r
}

fn json_resp(status: u16, body: String) -> Response {
    respond(status, &[("content-type", JSON_UTF8.into())], body)
}

fn ok_json(body: String) -> Response {
    json_resp(200, body)
}

/// A REST error: HTTP 400 with the real status as a string in the body (500 and 429 keep
/// their status, as in the contract's table).
fn rest_error(status_code: &str, error: &str, message: &str, code: &str) -> Response {
    let http = match status_code {
        "500" => 500,
        "429" => 429,
        _ => 400,
    };
    json_resp(
        http,
        obj(&[
            ("statusCode", js(status_code)),
            ("error", js(error)),
            ("message", js(message)),
            ("code", js(code)),
        ]),
    )
}

fn no_such_bucket() -> Response {
    rest_error(
        "404",
        "Bucket not found",
        "Bucket not found",
        "NoSuchBucket",
    )
}

fn no_such_key() -> Response {
    rest_error("404", "not_found", "Object not found", "NoSuchKey")
}

fn key_exists() -> Response {
    rest_error(
        "409",
        "Duplicate",
        "The resource already exists",
        "KeyAlreadyExists",
    )
}

fn bucket_exists() -> Response {
    rest_error(
        "409",
        "Duplicate",
        "The resource already exists",
        "BucketAlreadyExists",
    )
}

fn entity_too_large() -> Response {
    rest_error(
        "413",
        "Payload too large",
        "The object exceeded the maximum allowed size",
        "EntityTooLarge",
    )
}

fn invalid_mime(content_type: &str) -> Response {
    rest_error(
        "415",
        "invalid_mime_type",
        &format!("mime type {content_type} is not supported"),
        "InvalidMimeType",
    )
}

fn rls_denied() -> Response {
    rest_error(
        "403",
        "Unauthorized",
        "new row violates row-level security policy",
        "AccessDenied",
    )
}

fn bad_signature() -> Response {
    rest_error(
        "403",
        "Unauthorized",
        "signature verification failed",
        "AccessDenied",
    )
}

fn missing_auth() -> Response {
    invalid_request("headers must have required property 'authorization'")
}

fn invalid_request(message: &str) -> Response {
    rest_error("400", "Error", message, "InvalidRequest")
}

fn invalid_jwt(message: &str) -> Response {
    rest_error("400", "InvalidJWT", message, "InvalidJWT")
}

fn route_not_found(method: &Method, path: &str) -> Response {
    json_resp(
        404,
        obj(&[
            ("statusCode", js(&404)),
            ("error", js("Not Found")),
            ("message", js(&format!("Route {method}:{path} not found"))),
        ]),
    )
}

/// The answer of an injected fault on a REST route.
fn rest_fault(status: u16) -> Response {
    let sc = status.to_string();
    let (error, message, code) = match status {
        400 => ("Error", "emulated fault", "InvalidRequest"),
        403 => ("Unauthorized", "emulated fault", "AccessDenied"),
        404 => ("not_found", "Object not found", "NoSuchKey"),
        409 => (
            "Duplicate",
            "The resource already exists",
            "KeyAlreadyExists",
        ),
        413 => (
            "Payload too large",
            "The object exceeded the maximum allowed size",
            "EntityTooLarge",
        ),
        415 => ("invalid_mime_type", "emulated fault", "InvalidMimeType"),
        423 => ("resource_locked", "emulated fault", "ResourceLocked"),
        429 => (
            "too_many_connections",
            "Too many connections issued to the database",
            "SlowDown",
        ),
        s if s >= 500 => ("internal", "Internal Server Error", "InternalError"),
        _ => ("Error", "emulated fault", "InvalidRequest"),
    };
    let http = if status == 429 || status >= 500 {
        status
    } else {
        400
    };
    json_resp(
        http,
        obj(&[
            ("statusCode", js(&sc)),
            ("error", js(error)),
            ("message", js(message)),
            ("code", js(code)),
        ]),
    )
}

fn tus_text(status: u16, body: &str) -> Response {
    respond(
        status,
        &[
            ("content-type", TEXT_UTF8.into()),
            ("tus-resumable", "1.0.0".into()),
        ],
        body.to_string(),
    )
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// The whole body, or what arrived before it broke off.
async fn read_all(body: Body) -> Result<Bytes, Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(b) => buf.extend_from_slice(&b),
            Err(_) => return Err(buf),
        }
    }
    Ok(Bytes::from(buf))
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn parse_size(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(|n| Some(n).filter(|n| *n > 0))
            .ok_or_else(|| "file_size_limit must be a positive integer".to_string()),
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            let split = lower
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(lower.len());
            let (num, unit) = lower.split_at(split);
            let num: f64 = num
                .parse()
                .map_err(|_| format!("invalid file size limit {s}"))?;
            let mult = match unit.trim() {
                "b" | "" => 1.0,
                "kb" => 1e3,
                "mb" => 1e6,
                "gb" => 1e9,
                _ => return Err(format!("invalid file size limit {s}")),
            };
            Ok(Some((num * mult).round() as u64).filter(|n| *n > 0))
        }
        _ => Err("file_size_limit must be an integer or a string".to_string()),
    }
}

/// A single `Range: bytes=…` → `Some(Ok((start, end_inclusive)))`, `Some(Err(()))` when it
/// starts past the end, `None` when absent or ignored.
fn parse_range(value: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().ok()?;
    if start >= len {
        return Some(Err(()));
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        b.parse::<u64>().ok()?.min(len - 1)
    };
    if end < start {
        return None;
    }
    Some(Ok((start, end)))
}

/// A download (GET or HEAD) of `o`, honouring a single `Range`.
fn serve_object(
    o: &Obj,
    req_headers: &HeaderMap,
    head: bool,
    extra: Vec<(&'static str, String)>,
) -> Response {
    let len = o.data.len() as u64;
    let mut headers: Vec<(&str, String)> = vec![
        ("accept-ranges", "bytes".into()),
        ("content-type", o.content_type.clone()),
        ("etag", o.etag.clone()),
        ("x-robots-tag", "none".into()),
        ("last-modified", http_date(o.updated_at)),
    ];
    let range = if head {
        None
    } else {
        parse_range(header(req_headers, "range"), len)
    };
    let (status, body) = match range {
        Some(Ok((start, end))) => {
            headers.push(("content-length", (end - start + 1).to_string()));
            headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
            (206, o.data.slice(start as usize..=end as usize))
        }
        Some(Err(())) => {
            headers.retain(|(k, _)| *k != "content-type");
            headers.push(("content-range", format!("bytes */{len}")));
            return respond(416, &headers, Body::empty());
        }
        None => {
            headers.push(("content-length", len.to_string()));
            (200, if head { Bytes::new() } else { o.data.clone() })
        }
    };
    headers.extend(extra);
    respond(status, &headers, body)
}

// ---------------------------------------------------------------------------------------------
// Dispatch

async fn handle(
    State(emu): State<Arc<Emu>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let fault = {
        let mut st = emu.st();
        st.log.push(Logged {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
        (st.take_hang(&path), st.take_fault(&path))
    };
    let (hang, fault) = fault;
    if let Some(stall) = hang {
        // Neither the body nor the connection is touched meanwhile: a client sending a body
        // bigger than the socket buffers blocks, a smaller one waits for the answer.
        tokio::time::sleep(stall).await;
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        drain(body).await;
        return route_not_found(&parts.method, &path);
    };
    let is_tus = rest == TUS_ROOT || rest.starts_with("/upload/resumable/");
    if let Some(status) = fault {
        drain(body).await;
        return if is_tus {
            tus_text(status, &format!("emulated fault {status}\n"))
        } else {
            rest_fault(status)
        };
    }
    if is_tus {
        let id = rest[TUS_ROOT.len()..].trim_start_matches('/').to_string();
        return tus(&emu, &conn, &parts.method, &parts.headers, &id, body).await;
    }
    let body = match read_all(body).await {
        Ok(b) => b,
        // The client is gone; nothing is stored for an incomplete standard upload.
        Err(_) => return invalid_request("request body interrupted"),
    };
    rest_route(&emu, &parts.method, &parts.uri, rest, &parts.headers, body)
}

fn rest_route(
    emu: &Emu,
    method: &Method,
    uri: &Uri,
    rest: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let head = *method == Method::HEAD;
    if (*method == Method::GET || head)
        && let Some(p) = rest.strip_prefix("/object/sign/")
    {
        return signed_download(emu, uri, p, headers, head);
    }
    let role = match emu.authenticate(headers) {
        Ok(r) => r,
        Err(AuthError::Missing) => return missing_auth(),
        Err(AuthError::Invalid) => return bad_signature(),
    };
    let mut st = emu.st();
    let st = &mut *st;
    let not_found = || route_not_found(method, &format!("{PREFIX}{rest}"));
    if rest == "/bucket" {
        return match *method {
            Method::POST => create_bucket(st, role, &body),
            Method::GET => {
                let rows: Vec<String> = if role == Role::Anon {
                    vec![]
                } else {
                    st.buckets.values().map(Bucket::row).collect()
                };
                ok_json(format!("[{}]", rows.join(",")))
            }
            _ => not_found(),
        };
    }
    if let Some(id) = rest.strip_prefix("/bucket/") {
        return match (*method == Method::GET, st.buckets.get(&percent_decode(id))) {
            (true, Some(b)) if role == Role::Service => ok_json(b.row()),
            (true, _) => no_such_bucket(),
            _ => not_found(),
        };
    }
    if let Some(b) = rest.strip_prefix("/object/list/") {
        if *method != Method::POST {
            return not_found();
        }
        return list_objects(st, role, &percent_decode(b), &body);
    }
    if let Some(p) = rest.strip_prefix("/object/info/") {
        if *method != Method::GET {
            return not_found();
        }
        let p = p
            .strip_prefix("authenticated/")
            .or_else(|| p.strip_prefix("public/"))
            .unwrap_or(p);
        let (bucket, key) = split_object_path(p);
        return info(st, role, &bucket, &key);
    }
    if let Some(p) = rest.strip_prefix("/object/sign/") {
        if *method != Method::POST {
            return not_found();
        }
        let (bucket, key) = split_object_path(p);
        return sign(st, role, &bucket, &key, &body);
    }
    if let Some(p) = rest.strip_prefix("/object/authenticated/") {
        if *method != Method::GET && !head {
            return not_found();
        }
        let (bucket, key) = split_object_path(p);
        return download(st, role, &bucket, &key, headers, head);
    }
    if let Some(p) = rest.strip_prefix("/object/") {
        let (bucket, key) = split_object_path(p);
        if key.is_empty() {
            return match *method {
                Method::DELETE => delete_many(st, role, &bucket, &body),
                _ => not_found(),
            };
        }
        return match *method {
            Method::POST | Method::PUT => upload(st, role, method, &bucket, &key, headers, body),
            Method::GET | Method::HEAD => download(st, role, &bucket, &key, headers, head),
            Method::DELETE => delete_one(st, role, &bucket, &key),
            _ => not_found(),
        };
    }
    not_found()
}

// ---------------------------------------------------------------------------------------------
// REST handlers

fn parse_json_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| invalid_request(&format!("invalid JSON body: {e}")))
}

fn create_bucket(st: &mut St, role: Role, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(name) = v.get("name").and_then(Value::as_str) else {
        return invalid_request("body must have required property 'name'");
    };
    let id = v.get("id").and_then(Value::as_str).unwrap_or(name);
    let limit = match parse_size(v.get("file_size_limit").unwrap_or(&Value::Null)) {
        Ok(l) => l,
        Err(m) => return invalid_request(&m),
    };
    let types = match v.get("allowed_mime_types") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for t in a {
                match t.as_str() {
                    Some(t) => out.push(t.to_string()),
                    None => {
                        return invalid_request("body/allowed_mime_types/0 must be string");
                    }
                }
            }
            Some(out)
        }
        Some(_) => return invalid_request("body/allowed_mime_types must be array"),
    };
    if role == Role::Anon {
        return rls_denied();
    }
    if st.buckets.contains_key(id) {
        return bucket_exists();
    }
    st.buckets.insert(
        id.to_string(),
        Bucket {
            id: id.to_string(),
            name: name.to_string(),
            public: v.get("public").and_then(Value::as_bool).unwrap_or(false),
            file_size_limit: limit,
            allowed_mime_types: types,
            created_at: Utc::now(),
        },
    );
    ok_json(obj(&[("name", js(id))]))
}

fn upload(
    st: &mut St,
    role: Role,
    method: &Method,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(b) = st.buckets.get(bucket) else {
        return no_such_bucket();
    };
    let content_type = header(headers, "content-type")
        .unwrap_or("application/x-www-form-urlencoded")
        .to_string();
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return invalid_request("multipart/form-data uploads are not emulated");
    }
    if !b.allows(&content_type) {
        return invalid_mime(&content_type);
    }
    if let Some(limit) = st.limit_for(b) {
        let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > limit) || body.len() as u64 > limit {
            return entity_too_large();
        }
    }
    if role == Role::Anon {
        return rls_denied();
    }
    let exists = st
        .objects
        .contains_key(&(bucket.to_string(), key.to_string()));
    if exists && *method == Method::POST && !upsert(headers) {
        return key_exists();
    }
    let cache_control = header(headers, "cache-control")
        .unwrap_or("no-cache")
        .to_string();
    let user_metadata = header(headers, "x-metadata")
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .filter(Value::is_object)
        .unwrap_or(Value::Null);
    let id = st.store_object(
        bucket,
        key,
        body,
        content_type,
        cache_control,
        user_metadata,
        Uuid::new_v4(),
    );
    ok_json(obj(&[
        ("Key", js(&format!("{bucket}/{key}"))),
        ("Id", js(&id)),
    ]))
}

fn visible<'a>(st: &'a St, role: Role, bucket: &str, key: &str) -> Option<&'a Obj> {
    if role == Role::Anon {
        return None;
    }
    st.objects.get(&(bucket.to_string(), key.to_string()))
}

fn info(st: &St, role: Role, bucket: &str, key: &str) -> Response {
    let Some(o) = visible(st, role, bucket, key) else {
        return no_such_key();
    };
    let body = obj(&[
        ("id", js(&o.id)),
        ("name", js(key)),
        ("version", js(&o.version)),
        ("bucket_id", js(bucket)),
        ("size", js(&o.data.len())),
        ("content_type", js(&o.content_type)),
        ("cache_control", js(&o.cache_control)),
        ("etag", js(&o.etag)),
        ("metadata", js(&o.user_metadata)),
        ("last_modified", js(&iso(o.updated_at))),
        ("created_at", js(&iso(o.created_at))),
    ]);
    respond(
        200,
        &[
            ("content-type", JSON_UTF8.into()),
            ("etag", o.etag.clone()),
            ("last-modified", http_date(o.updated_at)),
            ("cache-control", o.cache_control.clone()),
        ],
        body,
    )
}

fn download(
    st: &St,
    role: Role,
    bucket: &str,
    key: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let Some(o) = visible(st, role, bucket, key) else {
        return no_such_key();
    };
    serve_object(
        o,
        headers,
        head,
        vec![("cache-control", o.cache_control.clone())],
    )
}

fn delete_one(st: &mut St, role: Role, bucket: &str, key: &str) -> Response {
    if visible(st, role, bucket, key).is_none() {
        return no_such_key();
    }
    st.objects.remove(&(bucket.to_string(), key.to_string()));
    ok_json(obj(&[("message", js("Successfully deleted"))]))
}

fn delete_many(st: &mut St, role: Role, bucket: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(prefixes) = v.get("prefixes").and_then(Value::as_array) else {
        return invalid_request("body must have required property 'prefixes'");
    };
    if !st.buckets.contains_key(bucket) {
        return no_such_bucket();
    }
    let mut rows = Vec::new();
    for p in prefixes.iter().filter_map(Value::as_str) {
        if visible(st, role, bucket, p).is_none() {
            continue;
        }
        if let Some(o) = st.objects.remove(&(bucket.to_string(), p.to_string())) {
            rows.push(o.full_row(bucket, p));
        }
    }
    ok_json(format!("[{}]", rows.join(",")))
}

fn list_objects(st: &St, role: Role, bucket: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !st.buckets.contains_key(bucket) {
        return no_such_bucket();
    }
    if role == Role::Anon {
        return ok_json("[]".into());
    }
    let folder = v
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_matches('/');
    let base = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let limit = v.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let offset = v.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let search = v
        .get("search")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_lowercase();
    let desc = v.pointer("/sortBy/order").and_then(Value::as_str) == Some("desc");
    let mut entries: BTreeMap<String, Option<&Obj>> = BTreeMap::new();
    for ((b, k), o) in &st.objects {
        if b != bucket {
            continue;
        }
        let Some(rest) = k.strip_prefix(&base) else {
            continue;
        };
        match rest.split_once('/') {
            Some((dir, _)) => {
                entries.entry(dir.to_string()).or_insert(None);
            }
            None => {
                entries.insert(rest.to_string(), Some(o));
            }
        }
    }
    let mut names: Vec<(String, Option<&Obj>)> = entries
        .into_iter()
        .filter(|(n, _)| n.to_lowercase().starts_with(&search))
        .collect();
    if desc {
        names.reverse();
    }
    let rows: Vec<String> = names
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(name, o)| match o {
            Some(o) => obj(&[
                ("name", js(&name)),
                ("id", js(&o.id)),
                ("updated_at", js(&iso(o.updated_at))),
                ("created_at", js(&iso(o.created_at))),
                ("last_accessed_at", js(&iso(o.updated_at))),
                ("metadata", o.system_metadata()),
            ]),
            None => obj(&[
                ("name", js(&name)),
                ("id", "null".into()),
                ("updated_at", "null".into()),
                ("created_at", "null".into()),
                ("last_accessed_at", "null".into()),
                ("metadata", "null".into()),
            ]),
        })
        .collect();
    ok_json(format!("[{}]", rows.join(",")))
}

fn expires_in(v: &Value) -> Result<u64, Response> {
    match v.get("expiresIn") {
        None => Err(invalid_request(
            "body must have required property 'expiresIn'",
        )),
        Some(n) => match n.as_f64() {
            Some(n) if n >= 1.0 => Ok(n as u64),
            _ => Err(invalid_request("body/expiresIn must be >= 1")),
        },
    }
}

fn issue_token(st: &mut St, bucket: &str, key: &str, secs: u64) -> String {
    let now = SystemTime::now();
    let iat = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        obj(&[
            ("url", js(&format!("{bucket}/{key}"))),
            ("scope", js("download")),
            ("iat", js(&iat)),
            ("exp", js(&(iat + secs))),
        ])
        .as_bytes(),
    );
    let sig = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let token = format!("{header}.{payload}.{sig}");
    st.tokens.insert(
        token.clone(),
        SignedToken {
            bucket: bucket.to_string(),
            key: key.to_string(),
            expires: now + Duration::from_secs(secs),
        },
    );
    token
}

fn signed_url(bucket: &str, key: &str, token: &str) -> String {
    format!(
        "/object/sign/{}/{}?token={token}",
        percent_encode_path(bucket),
        percent_encode_path(key)
    )
}

fn sign(st: &mut St, role: Role, bucket: &str, key: &str, body: &Bytes) -> Response {
    let v = match parse_json_body(body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let secs = match expires_in(&v) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !key.is_empty() {
        if visible(st, role, bucket, key).is_none() {
            return no_such_key();
        }
        let token = issue_token(st, bucket, key, secs);
        return ok_json(obj(&[("signedURL", js(&signed_url(bucket, key, &token)))]));
    }
    // Batch: `{"expiresIn","paths":[…]}`.
    let Some(paths) = v.get("paths").and_then(Value::as_array) else {
        return invalid_request("body must have required property 'paths'");
    };
    let mut rows = Vec::new();
    for p in paths.iter().filter_map(Value::as_str) {
        if visible(st, role, bucket, p).is_some() {
            let token = issue_token(st, bucket, p, secs);
            rows.push(obj(&[
                ("error", "null".into()),
                ("path", js(p)),
                ("signedURL", js(&signed_url(bucket, p, &token))),
            ]));
        } else {
            rows.push(obj(&[
                (
                    "error",
                    js("Either the object does not exist or you do not have access to it"),
                ),
                ("path", js(p)),
                ("signedURL", "null".into()),
            ]));
        }
    }
    ok_json(format!("[{}]", rows.join(",")))
}

fn signed_download(emu: &Emu, uri: &Uri, p: &str, headers: &HeaderMap, head: bool) -> Response {
    let (bucket, key) = split_object_path(p);
    let Some(token) = query_param(uri, "token") else {
        return invalid_request("querystring must have required property 'token'");
    };
    let st = emu.st();
    let Some(t) = st.tokens.get(&token) else {
        return invalid_jwt(if token.split('.').count() == 3 {
            "signature verification failed"
        } else {
            "Invalid Compact JWS"
        });
    };
    if SystemTime::now() >= t.expires {
        return invalid_jwt("\"exp\" claim timestamp check failed");
    }
    if t.bucket != bucket || t.key != key {
        return rest_error(
            "400",
            "InvalidSignature",
            "The url do not match the signature",
            "InvalidSignature",
        );
    }
    let Some(o) = st.objects.get(&(bucket.clone(), key.clone())) else {
        return no_such_key();
    };
    let mut extra = vec![("expires", http_date(DateTime::<Utc>::from(t.expires)))];
    if let Some(q) = uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "download" {
                let name = if v.is_empty() {
                    key.rsplit('/').next().unwrap_or(&key).to_string()
                } else {
                    v.into_owned()
                };
                extra.push((
                    "content-disposition",
                    format!(
                        "attachment; filename={name}; filename*=UTF-8''{}",
                        percent_encode_path(&name).replace('/', "%2F")
                    ),
                ));
            }
        }
    }
    serve_object(o, headers, head, extra)
}

// ---------------------------------------------------------------------------------------------
// TUS

fn tus_json_auth_error(message: &str) -> Response {
    json_resp(
        400,
        obj(&[
            ("statusCode", js("403")),
            ("code", js("AccessDenied")),
            ("error", js("Unauthorized")),
            ("message", js(message)),
        ]),
    )
}

async fn tus(
    emu: &Arc<Emu>,
    conn: &Conn,
    method: &Method,
    headers: &HeaderMap,
    id: &str,
    body: Body,
) -> Response {
    if *method == Method::OPTIONS {
        drain(body).await;
        let mut h = vec![
            (
                "tus-extension",
                "creation,creation-with-upload,creation-defer-length,termination,expiration"
                    .to_string(),
            ),
            ("tus-resumable", "1.0.0".into()),
            ("tus-version", "1.0.0".into()),
        ];
        if let Some(l) = emu.st().global_limit {
            h.push(("tus-max-size", l.to_string()));
        }
        return respond(204, &h, Body::empty());
    }
    let early = match emu.authenticate(headers) {
        Err(AuthError::Missing) => Some(tus_json_auth_error("Invalid Compact JWS")),
        Err(AuthError::Invalid) => Some(tus_json_auth_error("signature verification failed")),
        Ok(role) => match header(headers, "tus-resumable") {
            None => Some(tus_text(412, "Tus-Resumable Required\n")),
            Some(v) if v != "1.0.0" => {
                let mut r = tus_text(412, "Unsupported version\n");
                r.headers_mut()
                    .insert("tus-version", HeaderValue::from_static("1.0.0"));
                Some(r)
            }
            Some(_) if role == Role::Anon => {
                Some(tus_text(403, "new row violates row-level security policy"))
            }
            Some(_) => None,
        },
    };
    if let Some(r) = early {
        drain(body).await;
        return r;
    }
    match (method.clone(), id.is_empty()) {
        (Method::POST, true) => tus_create(emu, conn, headers, body).await,
        (Method::HEAD, false) => {
            drain(body).await;
            tus_head(emu, id)
        }
        (Method::PATCH, false) => tus_patch(emu, conn, headers, id, body).await,
        (Method::DELETE, false) => {
            drain(body).await;
            tus_delete(emu, id)
        }
        _ => {
            drain(body).await;
            tus_text(405, "Method not allowed\n")
        }
    }
}

/// `Upload-Metadata` → ordered (key, decoded value) pairs.
fn parse_upload_metadata(v: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for pair in v.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let mut it = pair.splitn(2, ' ');
        let key = it.next()?.to_string();
        let value = match it.next() {
            None => None,
            Some(b64) => {
                let b64 = b64.trim();
                let raw = STANDARD
                    .decode(b64)
                    .or_else(|_| STANDARD_NO_PAD.decode(b64))
                    .ok()?;
                Some(String::from_utf8(raw).ok()?)
            }
        };
        out.push((key, value));
    }
    Some(out)
}

fn normalise_cache_control(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            format!("max-age={s}")
        }
        _ => "no-cache".to_string(),
    }
}

fn location(emu: &Emu, headers: &HeaderMap, id: &str) -> String {
    let host = header(headers, "host")
        .map(str::to_string)
        .unwrap_or_else(|| emu.addr.to_string());
    let proto = header(headers, "x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}{PREFIX}{TUS_ROOT}/{id}")
}

async fn tus_create(emu: &Arc<Emu>, conn: &Conn, headers: &HeaderMap, body: Body) -> Response {
    let created = (|| -> Result<(String, u64), Response> {
        let length = match header(headers, "upload-length") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| tus_text(400, "Invalid Upload-Length\n"))?,
            None if headers.contains_key("upload-defer-length") => {
                return Err(tus_text(
                    400,
                    "Upload-Defer-Length is not supported by the emulator\n",
                ));
            }
            None => {
                return Err(tus_text(
                    400,
                    "Upload-Length or Upload-Defer-Length header required\n",
                ));
            }
        };
        let Some(raw) = header(headers, "upload-metadata") else {
            return Err(tus_text(400, "Metadata header is required"));
        };
        let pairs = parse_upload_metadata(raw)
            .ok_or_else(|| tus_text(400, "Upload-Metadata is invalid\n"))?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.clone())
        };
        let (Some(bucket), Some(object)) = (get("bucketName"), get("objectName")) else {
            return Err(tus_text(400, "Metadata header is required"));
        };
        let content_type = get("contentType").unwrap_or_else(|| "application/octet-stream".into());
        let cache_control = normalise_cache_control(get("cacheControl").as_deref());
        let user_metadata = get("metadata")
            .and_then(|m| serde_json::from_str::<Value>(&m).ok())
            .unwrap_or(Value::Null);
        let echo: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let v = if k == "cacheControl" {
                    Some(cache_control.clone())
                } else {
                    v.clone()
                };
                match v {
                    Some(v) => format!("{k} {}", STANDARD.encode(v.as_bytes())),
                    None => k.clone(),
                }
            })
            .collect();
        let mut st = emu.st();
        let Some(b) = st.buckets.get(&bucket) else {
            return Err(tus_text(404, "Bucket not found"));
        };
        if st.limit_for(b).is_some_and(|l| length > l) {
            return Err(tus_text(413, "Maximum size exceeded\n"));
        }
        if !b.allows(&content_type) {
            return Err(tus_text(
                415,
                &format!("mime type {content_type} is not supported"),
            ));
        }
        if st.objects.contains_key(&(bucket.clone(), object.clone())) && !upsert(headers) {
            return Err(tus_text(409, "The resource already exists"));
        }
        let version = Uuid::new_v4();
        let id = URL_SAFE_NO_PAD.encode(format!("{bucket}/{object}/{version}"));
        let mut upload = TusUpload {
            bucket,
            object,
            version,
            length,
            data: Vec::new(),
            content_type,
            cache_control,
            user_metadata,
            metadata_echo: echo.join(","),
            completed: false,
            busy: false,
        };
        if length == 0 {
            finish(&mut st, &mut upload);
        }
        st.uploads.insert(id.clone(), upload);
        Ok((id, length))
    })();
    let (id, length) = match created {
        Ok(c) => c,
        Err(r) => {
            drain(body).await;
            return r;
        }
    };
    let loc = location(emu, headers, &id);
    let with_body = header(headers, "content-type") == Some(OFFSET_OCTET);
    if !with_body || length == 0 {
        drain(body).await;
        return respond(
            201,
            &[
                ("content-type", TEXT_UTF8.into()),
                ("location", loc),
                ("tus-resumable", "1.0.0".into()),
            ],
            Body::empty(),
        );
    }
    // Creation-with-upload: the body is a PATCH at offset 0.
    match tus_write(emu, conn, headers, &id, 0, body, false).await {
        Written::Ok { offset, complete } => {
            let mut h = vec![("content-type", TEXT_UTF8.to_string()), ("location", loc)];
            if complete {
                h.push(("tus-complete", "1".into()));
            }
            h.push(("tus-resumable", "1.0.0".into()));
            h.push(("upload-offset", offset.to_string()));
            respond(201, &h, Body::empty())
        }
        Written::Refused(r) => r,
    }
}

fn tus_head(emu: &Emu, id: &str) -> Response {
    let st = emu.st();
    let Some(u) = st.uploads.get(id) else {
        return tus_text(404, "The file for this url was not found\n");
    };
    respond(
        200,
        &[
            ("cache-control", "no-store".into()),
            ("content-type", TEXT_UTF8.into()),
            ("tus-resumable", "1.0.0".into()),
            ("upload-length", u.length.to_string()),
            ("upload-metadata", u.metadata_echo.clone()),
            ("upload-offset", u.data.len().to_string()),
        ],
        Body::empty(),
    )
}

fn tus_delete(emu: &Emu, id: &str) -> Response {
    let mut st = emu.st();
    match st.uploads.get(id) {
        None => tus_text(404, "The file for this url was not found\n"),
        Some(u) if u.completed => tus_text(400, "Cannot terminate an already completed upload\n"),
        Some(_) => {
            st.uploads.remove(id);
            respond(204, &[("tus-resumable", "1.0.0".into())], Body::empty())
        }
    }
}

async fn tus_patch(
    emu: &Arc<Emu>,
    conn: &Conn,
    headers: &HeaderMap,
    id: &str,
    body: Body,
) -> Response {
    let Some(offset) = header(headers, "upload-offset").and_then(|v| v.trim().parse::<u64>().ok())
    else {
        drain(body).await;
        return tus_text(403, "Upload-Offset header required\n");
    };
    if header(headers, "content-type") != Some(OFFSET_OCTET) {
        drain(body).await;
        return tus_text(403, "Content-Type header required\n");
    }
    match tus_write(emu, conn, headers, id, offset, body, true).await {
        Written::Ok { offset, complete } => {
            let mut h = Vec::new();
            if complete {
                h.push(("tus-complete", "1".to_string()));
            }
            h.push(("tus-resumable", "1.0.0".into()));
            h.push(("upload-offset", offset.to_string()));
            respond(204, &h, Body::empty())
        }
        Written::Refused(r) => r,
    }
}

enum Written {
    Ok { offset: u64, complete: bool },
    Refused(Response),
}

/// Clears an upload's in-flight flag however the request ends (the handler future is dropped
/// when the client disconnects mid-body).
struct BusyGuard {
    emu: Arc<Emu>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(u) = self.emu.st().uploads.get_mut(&self.id) {
            u.busy = false;
        }
    }
}

/// Writes the upload's object once every byte is there.
fn finish(st: &mut St, u: &mut TusUpload) {
    u.completed = true;
    st.store_object(
        &u.bucket,
        &u.object,
        Bytes::from(u.data.clone()),
        u.content_type.clone(),
        u.cache_control.clone(),
        u.user_metadata.clone(),
        u.version,
    );
}

/// Appends `bytes` to upload `id` (completing it when full); returns (offset, complete).
fn append(emu: &Emu, id: &str, bytes: &[u8]) -> (u64, bool) {
    let mut st = emu.st();
    let Some(mut u) = st.uploads.remove(id) else {
        return (0, false);
    };
    u.data.extend_from_slice(bytes);
    if !u.completed && u.data.len() as u64 == u.length {
        finish(&mut st, &mut u);
    }
    let r = (u.data.len() as u64, u.completed);
    st.uploads.insert(id.to_string(), u);
    r
}

/// The body of a PATCH (or of a creation-with-upload POST) at `offset`: checks, then bytes
/// appended as they arrive.
async fn tus_write(
    emu: &Arc<Emu>,
    conn: &Conn,
    headers: &HeaderMap,
    id: &str,
    offset: u64,
    body: Body,
    interruptible: bool,
) -> Written {
    let declared = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let checked = (|| -> Result<(u64, bool, Option<u64>), Response> {
        let mut st = emu.st();
        let hosted = st.hosted_chunk_rule;
        let Some(u) = st.uploads.get(id) else {
            return Err(tus_text(404, "The file for this url was not found\n"));
        };
        if st
            .objects
            .contains_key(&(u.bucket.clone(), u.object.clone()))
            && !upsert(headers)
        {
            return Err(tus_text(409, "The resource already exists"));
        }
        if u.busy {
            return Err(tus_text(503, "acquiring lock timeout"));
        }
        let current = u.data.len() as u64;
        if offset != current {
            return Err(tus_text(409, "Upload-Offset conflict\n"));
        }
        let remaining = u.length - current;
        if declared.is_some_and(|d| d > remaining) {
            return Err(tus_text(413, "upload's size exceeded\n"));
        }
        if hosted
            && let Some(d) = declared
            && d < remaining
            && d != TUS_CHUNK
        {
            return Err(chunk_rule_refusal());
        }
        if let Some(u) = st.uploads.get_mut(id) {
            u.busy = true;
        }
        let interrupt = if interruptible {
            st.interrupt.take()
        } else {
            None
        };
        Ok((remaining, hosted, interrupt))
    })();
    let (remaining, hosted, interrupt) = match checked {
        Ok(c) => c,
        Err(r) => {
            drain(body).await;
            return Written::Refused(r);
        }
    };
    let _guard = BusyGuard {
        emu: emu.clone(),
        id: id.to_string(),
    };
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let mut broke_off = false;
    let mut exceeded = false;
    while let Some(frame) = stream.next().await {
        let Ok(mut bytes) = frame else {
            broke_off = true;
            break;
        };
        let mut stop = false;
        if received + bytes.len() as u64 > remaining {
            bytes.truncate((remaining - received) as usize);
            exceeded = true;
            stop = true;
        }
        if let Some(after) = interrupt
            && received + bytes.len() as u64 >= after
        {
            bytes.truncate((after - received) as usize);
            stop = true;
        }
        received += bytes.len() as u64;
        append(emu, id, &bytes);
        if stop {
            break;
        }
    }
    if interrupt.is_some() {
        // Kill the connection: hyper fails to write this answer and closes the socket.
        conn.kill();
        return Written::Refused(tus_text(500, "connection killed\n"));
    }
    if broke_off {
        return Written::Refused(tus_text(400, "request body interrupted\n"));
    }
    if exceeded {
        return Written::Refused(tus_text(413, "upload's size exceeded\n"));
    }
    if hosted && declared.is_none() && received < remaining && received != TUS_CHUNK {
        // A chunked PATCH that broke the hosted rule: take its bytes back.
        let mut st = emu.st();
        if let Some(u) = st.uploads.get_mut(id) {
            u.data.truncate(offset as usize);
        }
        return Written::Refused(chunk_rule_refusal());
    }
    let st = emu.st();
    match st.uploads.get(id) {
        Some(u) => Written::Ok {
            offset: u.data.len() as u64,
            complete: u.completed,
        },
        None => Written::Refused(tus_text(404, "The file for this url was not found\n")),
    }
}

fn chunk_rule_refusal() -> Response {
    tus_text(
        400,
        &format!(
            "chunk size must be exactly 6 MiB ({TUS_CHUNK} bytes) except for the last chunk \
             (hosted Supabase Storage)\n"
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client")
    }

    fn auth(rb: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
        rb.header("apikey", key)
            .header("authorization", format!("Bearer {key}"))
    }

    /// A JWT-shaped anon key (the emulator does not check signatures).
    fn anon_jwt() -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"role":"anon","iss":"supabase","exp":4102444800}"#);
        format!("{h}.{p}.c2lnbmF0dXJl")
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
            .collect()
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s.as_bytes())
    }

    async fn text(r: reqwest::Response) -> (u16, String) {
        let s = r.status().as_u16();
        (s, r.text().await.unwrap())
    }

    fn hdr(r: &reqwest::Response, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    const KEY_EXISTS: &str = r#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"KeyAlreadyExists"}"#;
    const NO_SUCH_KEY: &str = r#"{"statusCode":"404","error":"not_found","message":"Object not found","code":"NoSuchKey"}"#;
    const NO_SUCH_BUCKET: &str = r#"{"statusCode":"404","error":"Bucket not found","message":"Bucket not found","code":"NoSuchBucket"}"#;
    const RLS: &str = r#"{"statusCode":"403","error":"Unauthorized","message":"new row violates row-level security policy","code":"AccessDenied"}"#;

    #[tokio::test]
    async fn buckets_are_created_once_and_read_back() {
        let s = StorageApi::start().await;
        let st = s.storage_url();
        let c = client();
        let r = auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
            .json(&json!({"id":"videos","name":"videos","public":false,
                "file_size_limit":1048576,"allowed_mime_types":["video/mp4","video/webm"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(hdr(&r, "content-type").unwrap(), JSON_UTF8);
        assert_eq!(text(r).await, (200, r#"{"name":"videos"}"#.into()));
        let r = auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
            .json(&json!({"id":"videos","name":"videos","public":false}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"409","error":"Duplicate","message":"The resource already exists","code":"BucketAlreadyExists"}"#.into()
            )
        );
        let r = auth(c.post(format!("{st}/bucket")), "sb_secret_abc")
            .json(&json!({"id":"raw","name":"raw","public":false,"file_size_limit":"500MB"}))
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (200, r#"{"name":"raw"}"#.into()));

        let r = auth(c.get(format!("{st}/bucket/videos")), SERVICE_KEY)
            .send()
            .await
            .unwrap();
        let (status, body) = text(r).await;
        assert_eq!(status, 200);
        assert!(
            body.starts_with(r#"{"id":"videos","name":"videos","owner":"","public":false,"file_size_limit":1048576,"allowed_mime_types":["video/mp4","video/webm"],"created_at":""#),
            "{body}"
        );
        let v: Value = serde_json::from_str(
            &auth(c.get(format!("{st}/bucket/raw")), SERVICE_KEY)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["file_size_limit"], 500_000_000);
        assert_eq!(v["allowed_mime_types"], Value::Null);

        let r = auth(c.get(format!("{st}/bucket/nope")), SERVICE_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_BUCKET.into()));
        // Auth failures.
        let r = c.get(format!("{st}/bucket/videos")).send().await.unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"400","error":"Error","message":"headers must have required property 'authorization'","code":"InvalidRequest"}"#.into()
            )
        );
        let r = auth(c.get(format!("{st}/bucket/videos")), "not-the-key")
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"403","error":"Unauthorized","message":"signature verification failed","code":"AccessDenied"}"#.into()
            )
        );
    }

    #[tokio::test]
    async fn standard_upload_info_head_upsert_and_metadata() {
        let s = StorageApi::start().await;
        s.create_bucket("raw", false, None, None);
        let st = s.storage_url();
        let c = client();
        let bytes = data(1_000_000, 1);
        let url = format!("{st}/object/raw/meta/clip.mp4");
        let r = auth(c.post(&url), SERVICE_KEY)
            .header("content-type", "video/mp4")
            .header("cache-control", "max-age=3600")
            .header("x-metadata", "eyJqb2JfaWQiOiI0MiIsInNvdXJjZSI6Inl0In0=")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let (status, body) = text(r).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body.starts_with(r#"{"Key":"raw/meta/clip.mp4","Id":""#),
            "{body}"
        );
        let id = v["Id"].as_str().unwrap().to_string();
        Uuid::parse_str(&id).unwrap();

        // info
        let r = auth(
            c.get(format!("{st}/object/info/raw/meta/clip.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let etag = hdr(&r, "etag").unwrap();
        assert_eq!(hdr(&r, "cache-control").unwrap(), "max-age=3600");
        assert!(hdr(&r, "last-modified").unwrap().ends_with(" GMT"));
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["id"], id.as_str());
        assert_eq!(info["name"], "meta/clip.mp4");
        assert_eq!(info["bucket_id"], "raw");
        assert_eq!(info["size"], 1_000_000);
        assert_eq!(info["content_type"], "video/mp4");
        assert_eq!(info["cache_control"], "max-age=3600");
        assert_eq!(info["etag"], etag.as_str());
        assert_eq!(info["metadata"], json!({"job_id":"42","source":"yt"}));
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
        let first_version = info["version"].as_str().unwrap().to_string();

        // HEAD
        let r = auth(c.head(&url), SERVICE_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(hdr(&r, "content-type").unwrap(), "video/mp4");
        assert_eq!(hdr(&r, "content-length").unwrap(), "1000000");
        assert_eq!(hdr(&r, "etag").unwrap(), etag);
        assert_eq!(hdr(&r, "cache-control").unwrap(), "max-age=3600");
        assert_eq!(hdr(&r, "accept-ranges").unwrap(), "bytes");
        let r = auth(
            c.head(format!("{st}/object/authenticated/raw/meta/clip.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let r = auth(
            c.head(format!("{st}/object/raw/meta/missing.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(hdr(&r, "content-type").unwrap(), JSON_UTF8);
        assert_eq!(r.bytes().await.unwrap().len(), 0);
        let r = auth(
            c.get(format!("{st}/object/info/raw/meta/missing.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));

        // GET (with and without Range)
        let r = auth(c.get(&url), SERVICE_KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let r = auth(c.get(&url), SERVICE_KEY)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(hdr(&r, "content-range").unwrap(), "bytes 10-19/1000000");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[10..20]);

        // duplicate without upsert, then upsert, then PUT: same Id, new version
        let r = auth(c.post(&url), SERVICE_KEY)
            .header("content-type", "video/mp4")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, KEY_EXISTS.into()));
        let r = auth(c.post(&url), SERVICE_KEY)
            .header("content-type", "video/mp4")
            .header("x-upsert", "false")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, KEY_EXISTS.into()));
        let other = data(1000, 2);
        let r = auth(c.post(&url), SERVICE_KEY)
            .header("content-type", "video/mp4")
            .header("x-upsert", "true")
            .header("x-metadata", "not base64 !!")
            .body(other.clone())
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&text(r).await.1).unwrap();
        assert_eq!(v["Id"], id.as_str());
        let (bytes_now, ct, cc, meta) = s.object("raw", "meta/clip.mp4").unwrap();
        assert_eq!(bytes_now, other);
        assert_eq!(ct, "video/mp4");
        assert_eq!(cc, "no-cache");
        assert_eq!(meta, Value::Null);
        let r = auth(c.put(&url), SERVICE_KEY)
            .header("content-type", "video/webm")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&text(r).await.1).unwrap();
        assert_eq!(v["Id"], id.as_str());
        let info: Value = auth(
            c.get(format!("{st}/object/info/raw/meta/clip.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_ne!(info["version"], first_version.as_str());
        assert_eq!(info["content_type"], "video/webm");
        assert_eq!(info["etag"], etag.as_str(), "same bytes, same etag");

        // list, delete, delete many
        auth(
            c.post(format!("{st}/object/raw/meta/sub/x.mp4")),
            SERVICE_KEY,
        )
        .header("content-type", "video/mp4")
        .body("x")
        .send()
        .await
        .unwrap();
        let list: Value = auth(c.post(format!("{st}/object/list/raw")), SERVICE_KEY)
            .json(&json!({"prefix":"meta","limit":100,"offset":0,"sortBy":{"column":"name","order":"asc"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list[0]["name"], "clip.mp4");
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["metadata"]["size"], 1_000_000);
        assert_eq!(list[0]["metadata"]["mimetype"], "video/webm");
        assert_eq!(list[1]["name"], "sub");
        assert_eq!(list[1]["id"], Value::Null);
        assert_eq!(s.object_count("raw"), 2);
        let r = auth(c.delete(&url), SERVICE_KEY).send().await.unwrap();
        assert_eq!(
            text(r).await,
            (200, r#"{"message":"Successfully deleted"}"#.into())
        );
        let r = auth(c.delete(&url), SERVICE_KEY).send().await.unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
        let rows: Value = auth(c.delete(format!("{st}/object/raw")), SERVICE_KEY)
            .json(&json!({"prefixes":["meta/sub/x.mp4","meta/missing.mp4"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["name"], "meta/sub/x.mp4");
        assert_eq!(s.object_count("raw"), 0);
    }

    #[tokio::test]
    async fn limits_and_missing_buckets_are_wrapped_in_400() {
        let s = StorageApi::start().await;
        s.create_bucket(
            "videos",
            false,
            Some(1_048_576),
            Some(vec!["video/mp4".into(), "image/*".into()]),
        );
        let st = s.storage_url();
        let c = client();
        let up = |path: &str, ct: Option<&str>, n: usize| {
            let mut rb = auth(c.post(format!("{st}/object/{path}")), SERVICE_KEY).body(data(n, 3));
            if let Some(ct) = ct {
                rb = rb.header("content-type", ct);
            }
            rb.send()
        };
        let r = up("videos/big.mp4", Some("video/mp4"), 2_000_000)
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"413","error":"Payload too large","message":"The object exceeded the maximum allowed size","code":"EntityTooLarge"}"#.into()
            )
        );
        let r = up("videos/notvideo.txt", Some("text/plain"), 10)
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"415","error":"invalid_mime_type","message":"mime type text/plain is not supported","code":"InvalidMimeType"}"#.into()
            )
        );
        let r = up("videos/noct.mp4", None, 10).await.unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"415","error":"invalid_mime_type","message":"mime type application/x-www-form-urlencoded is not supported","code":"InvalidMimeType"}"#.into()
            )
        );
        let r = up("videos/cover.webp", Some("image/webp"), 10)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "type/* wildcard");
        let r = up("videos/ok.mp4", Some("video/mp4"), 1_048_576)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "exactly the limit");
        let r = up("nosuchbucket/a.mp4", Some("video/mp4"), 10)
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_BUCKET.into()));
        // The global limit applies too.
        s.set_upload_size_limit(Some(100));
        let r = up("videos/small.mp4", Some("video/mp4"), 101)
            .await
            .unwrap();
        assert!(text(r).await.1.contains("EntityTooLarge"));
        assert_eq!(s.object_count("videos"), 2);
    }

    #[tokio::test]
    async fn anon_and_publishable_keys_are_refused_uploads() {
        let s = StorageApi::start().await;
        s.create_bucket("raw", false, None, None);
        s.put_object("raw", "a.mp4", b"abc", "video/mp4");
        let st = s.storage_url();
        let c = client();
        for key in [anon_jwt(), "sb_publishable_xyz".to_string()] {
            let r = auth(c.post(format!("{st}/object/raw/x.mp4")), &key)
                .header("content-type", "video/mp4")
                .body("data")
                .send()
                .await
                .unwrap();
            assert_eq!(text(r).await, (400, RLS.into()));
            let r = auth(c.post(format!("{st}/bucket")), &key)
                .json(&json!({"name":"mine"}))
                .send()
                .await
                .unwrap();
            assert_eq!(text(r).await, (400, RLS.into()));
            // Reads see nothing.
            let r = auth(c.get(format!("{st}/object/info/raw/a.mp4")), &key)
                .send()
                .await
                .unwrap();
            assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
            // TUS: real status, text body.
            let r = auth(c.post(format!("{st}/upload/resumable")), &key)
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "3")
                .header(
                    "upload-metadata",
                    format!("bucketName {},objectName {}", b64("raw"), b64("t.mp4")),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(
                text(r).await,
                (403, "new row violates row-level security policy".into())
            );
        }
        assert_eq!(s.object_count("raw"), 1);
        // A service_role JWT that is not the emulator's key: signature verification failed.
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"role":"service_role"}"#);
        let r = auth(
            c.get(format!("{st}/object/info/raw/a.mp4")),
            &format!("{h}.{p}.x"),
        )
        .send()
        .await
        .unwrap();
        assert!(text(r).await.1.contains("signature verification failed"));
    }

    #[tokio::test]
    async fn signed_urls_download_without_auth_and_expire() {
        let s = StorageApi::start().await;
        s.create_bucket("raw", false, None, None);
        let bytes = data(5000, 4);
        s.put_object("raw", "meta/clip.mp4", &bytes, "video/mp4");
        let st = s.storage_url();
        let c = client();
        let sign = |path: &str, secs: u64| {
            auth(c.post(format!("{st}/object/sign/raw/{path}")), SERVICE_KEY)
                .json(&json!({"expiresIn": secs}))
                .send()
        };
        let v: Value = sign("meta/clip.mp4", 3600)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let signed = v["signedURL"].as_str().unwrap().to_string();
        assert!(
            signed.starts_with("/object/sign/raw/meta/clip.mp4?token="),
            "{signed}"
        );
        let r = c.get(format!("{st}{signed}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(hdr(&r, "content-type").unwrap(), "video/mp4");
        assert!(hdr(&r, "expires").is_some());
        assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
        let r = c
            .get(format!("{st}{signed}"))
            .header("range", "bytes=0-99")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(hdr(&r, "content-range").unwrap(), "bytes 0-99/5000");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..100]);
        let r = c
            .get(format!("{st}{signed}&download=myname.mp4"))
            .send()
            .await
            .unwrap();
        assert!(
            hdr(&r, "content-disposition")
                .unwrap()
                .starts_with("attachment; filename=myname.mp4")
        );

        let r = sign("meta/missing.mp4", 60).await.unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
        let r = c
            .get(format!("{st}/object/sign/raw/meta/clip.mp4"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"400","error":"Error","message":"querystring must have required property 'token'","code":"InvalidRequest"}"#.into()
            )
        );
        let r = c
            .get(format!("{st}/object/sign/raw/meta/clip.mp4?token=garbage"))
            .send()
            .await
            .unwrap();
        let (status, body) = text(r).await;
        assert_eq!(status, 400);
        assert!(body.contains(r#""code":"InvalidJWT""#), "{body}");

        // expiresIn 1: expired a second later.
        let v: Value = sign("meta/clip.mp4", 1)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let short = v["signedURL"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = c.get(format!("{st}{short}")).send().await.unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"400","error":"InvalidJWT","message":"\"exp\" claim timestamp check failed","code":"InvalidJWT"}"#.into()
            )
        );
        s.expire_signed_urls();
        let r = c.get(format!("{st}{signed}")).send().await.unwrap();
        assert!(text(r).await.1.contains("claim timestamp check failed"));
    }

    async fn tus_create(
        c: &reqwest::Client,
        st: &str,
        len: u64,
        meta: &str,
        upsert: bool,
    ) -> reqwest::Response {
        let mut rb = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
            .header("upload-metadata", meta);
        if upsert {
            rb = rb.header("x-upsert", "true");
        }
        rb.send().await.unwrap()
    }

    fn patch(
        c: &reqwest::Client,
        loc: &str,
        offset: u64,
        body: Vec<u8>,
        upsert: bool,
    ) -> reqwest::RequestBuilder {
        let mut rb = auth(c.patch(loc), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", OFFSET_OCTET)
            .body(body);
        if upsert {
            rb = rb.header("x-upsert", "true");
        }
        rb
    }

    async fn tus_head_offset(c: &reqwest::Client, loc: &str) -> reqwest::Response {
        auth(c.head(loc), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tus_upload_survives_an_interrupted_patch() {
        let s = StorageApi::start().await;
        let st = s.storage_url();
        let c = client();
        auth(c.post(format!("{st}/bucket")), SERVICE_KEY)
            .json(&json!({"id":"raw","name":"raw","public":false,"file_size_limit":"500MB"}))
            .send()
            .await
            .unwrap();
        let total = 13_631_488u64;
        let file = data(total as usize, 5);
        let meta = "bucketName cmF3,objectName dHVzL3ZpZGVvLm1wNA==,contentType dmlkZW8vbXA0,cacheControl MzYwMA==,metadata eyJqb2JfaWQiOiI3In0=";
        let r = tus_create(&c, &st, total, meta, true).await;
        assert_eq!(r.status(), 201);
        assert_eq!(hdr(&r, "tus-resumable").unwrap(), "1.0.0");
        let loc = hdr(&r, "location").unwrap();
        assert!(loc.starts_with(&format!("{st}/upload/resumable/")), "{loc}");
        let id = loc.rsplit('/').next().unwrap();
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(id).unwrap()).unwrap();
        assert!(decoded.starts_with("raw/tus/video.mp4/"), "{decoded}");

        // Chunk 1.
        let chunk = TUS_CHUNK as usize;
        let r = patch(&c, &loc, 0, file[..chunk].to_vec(), true)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "6291456");
        assert!(hdr(&r, "tus-complete").is_none());
        let r = tus_head_offset(&c, &loc).await;
        assert_eq!(r.status(), 200);
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "6291456");
        assert_eq!(hdr(&r, "upload-length").unwrap(), "13631488");
        assert_eq!(hdr(&r, "cache-control").unwrap(), "no-store");
        assert_eq!(
            hdr(&r, "upload-metadata").unwrap(),
            "bucketName cmF3,objectName dHVzL3ZpZGVvLm1wNA==,contentType dmlkZW8vbXA0,cacheControl bWF4LWFnZT0zNjAw,metadata eyJqb2JfaWQiOiI3In0="
        );

        // Wrong offset.
        let r = patch(&c, &loc, 0, file[chunk..2 * chunk].to_vec(), true)
            .send()
            .await
            .unwrap();
        assert_eq!(hdr(&r, "content-type").unwrap(), TEXT_UTF8);
        assert_eq!(text(r).await, (409, "Upload-Offset conflict\n".into()));

        // Chunk 2, interrupted after 1.5 MiB: the client sees a connection error.
        s.interrupt_next_patch(1_572_864);
        let e = patch(&c, &loc, 6_291_456, file[chunk..2 * chunk].to_vec(), true)
            .send()
            .await;
        let e = e.expect_err("the interrupted PATCH must fail");
        assert!(e.is_request() && e.status().is_none(), "{e:?}");
        let r = tus_head_offset(&c, &loc).await;
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "7864320");
        assert!(s.object("raw", "tus/video.mp4").is_none());

        // Resume from the server's offset with the rest (the final chunk).
        let r = patch(&c, &loc, 7_864_320, file[7_864_320..].to_vec(), true)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "13631488");
        let info: Value = auth(
            c.get(format!("{st}/object/info/raw/tus/video.mp4")),
            SERVICE_KEY,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(info["size"], total);
        assert_eq!(info["content_type"], "video/mp4");
        assert_eq!(info["cache_control"], "max-age=3600");
        assert_eq!(info["metadata"], json!({"job_id":"7"}));
        let got = auth(c.get(format!("{st}/object/raw/tus/video.mp4")), SERVICE_KEY)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got.as_ref() == file.as_slice(), "TUS roundtrip identical");
        assert_eq!(s.object("raw", "tus/video.mp4").unwrap().0, file);

        // PATCH after completion; DELETE of a finished upload.
        let r = patch(&c, &loc, total, vec![0; 10], true)
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (413, "upload's size exceeded\n".into()));
        let r = auth(c.delete(&loc), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(s.open_uploads(), 0);
        // The object exists now: creating without x-upsert is refused.
        let r = tus_create(&c, &st, 100, meta, false).await;
        assert_eq!(text(r).await, (409, "The resource already exists".into()));
    }

    #[tokio::test]
    async fn tus_errors_follow_the_contract() {
        let s = StorageApi::start().await;
        s.create_bucket("raw", false, None, None);
        s.create_bucket(
            "videos",
            false,
            Some(1_048_576),
            Some(vec!["video/mp4".into(), "video/webm".into()]),
        );
        let st = s.storage_url();
        let c = client();
        let meta = |b: &str, o: &str, ct: &str| {
            format!(
                "bucketName {},objectName {},contentType {}",
                b64(b),
                b64(o),
                b64(ct)
            )
        };
        let r = tus_create(&c, &st, 100, &meta("nosuch", "a.mp4", "video/mp4"), false).await;
        assert_eq!(text(r).await, (404, "Bucket not found".into()));
        let r = tus_create(
            &c,
            &st,
            2_000_000,
            &meta("videos", "big.mp4", "video/mp4"),
            false,
        )
        .await;
        assert_eq!(text(r).await, (413, "Maximum size exceeded\n".into()));
        let r = tus_create(&c, &st, 100, &meta("videos", "a.txt", "text/plain"), false).await;
        assert_eq!(
            text(r).await,
            (415, "mime type text/plain is not supported".into())
        );
        let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "100")
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (400, "Metadata header is required".into()));
        let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
            .header("upload-length", "100")
            .header("upload-metadata", meta("raw", "n.mp4", "video/mp4"))
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (412, "Tus-Resumable Required\n".into()));
        let r = c
            .post(format!("{st}/upload/resumable"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "100")
            .header("upload-metadata", meta("raw", "n.mp4", "video/mp4"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            text(r).await,
            (
                400,
                r#"{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"Invalid Compact JWS"}"#.into()
            )
        );

        // Non-numeric cacheControl → no-cache; a 1 MiB non-final chunk is refused (hosted rule).
        let m = format!(
            "{},cacheControl {}",
            meta("raw", "c.mp4", "video/mp4"),
            b64("max-age=60")
        );
        let total = TUS_CHUNK + 10;
        let r = tus_create(&c, &st, total, &m, false).await;
        let loc = hdr(&r, "location").unwrap();
        let r = patch(&c, &loc, 0, vec![1; 1_048_576], false)
            .send()
            .await
            .unwrap();
        let (status, body) = text(r).await;
        assert_eq!(status, 400);
        assert!(body.contains("6 MiB"), "{body}");
        let r = tus_head_offset(&c, &loc).await;
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "0");
        let r = patch(&c, &loc, 0, vec![1; TUS_CHUNK as usize], false)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = patch(&c, &loc, TUS_CHUNK, vec![2; 10], false)
            .send()
            .await
            .unwrap();
        assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
        let (_, _, cc, meta_json) = s.object("raw", "c.mp4").unwrap();
        assert_eq!(cc, "no-cache");
        assert_eq!(meta_json, Value::Null);
        // The file backend's behaviour: any chunk size.
        s.set_hosted_chunk_rule(false);
        let r = tus_create(
            &c,
            &st,
            2_097_152,
            &meta("raw", "small.mp4", "video/mp4"),
            false,
        )
        .await;
        let loc = hdr(&r, "location").unwrap();
        let r = patch(&c, &loc, 0, vec![1; 1_048_576], false)
            .send()
            .await
            .unwrap();
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "1048576");
        s.set_hosted_chunk_rule(true);

        // Created with x-upsert for an existing object; a PATCH without it → 409.
        s.put_object("raw", "exists.mp4", b"old", "video/mp4");
        let r = tus_create(&c, &st, 3, &meta("raw", "exists.mp4", "video/mp4"), true).await;
        assert_eq!(r.status(), 201);
        let loc = hdr(&r, "location").unwrap();
        let r = patch(&c, &loc, 0, b"new".to_vec(), false)
            .send()
            .await
            .unwrap();
        assert_eq!(text(r).await, (409, "The resource already exists".into()));
        let r = patch(&c, &loc, 0, b"new".to_vec(), true)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(s.object("raw", "exists.mp4").unwrap().0, b"new");

        // Termination.
        let r = tus_create(&c, &st, 100, &meta("raw", "gone.mp4", "video/mp4"), false).await;
        let loc = hdr(&r, "location").unwrap();
        let r = auth(c.delete(&loc), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = tus_head_offset(&c, &loc).await;
        assert_eq!(r.status(), 404);
        assert_eq!(hdr(&r, "content-length").unwrap(), "36");

        // Creation-with-upload.
        let r = auth(c.post(format!("{st}/upload/resumable")), SERVICE_KEY)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "5")
            .header("upload-metadata", meta("raw", "one-shot.mp4", "video/mp4"))
            .header("content-type", OFFSET_OCTET)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(hdr(&r, "tus-complete").unwrap(), "1");
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "5");
        assert_eq!(s.object("raw", "one-shot.mp4").unwrap().0, b"hello");
    }

    #[tokio::test]
    async fn injected_faults_and_request_log() {
        let s = StorageApi::start().await;
        s.create_bucket("raw", false, None, None);
        let st = s.storage_url();
        let c = client();
        let url = format!("{st}/object/raw/f.mp4");
        let up = || {
            auth(c.post(&url), SERVICE_KEY)
                .header("content-type", "video/mp4")
                .header("x-upsert", "true")
                .body("abc")
                .send()
        };
        s.fail_next("/object/raw/f.mp4", 500, 2);
        for _ in 0..2 {
            let r = up().await.unwrap();
            assert_eq!(
                text(r).await,
                (
                    500,
                    r#"{"statusCode":"500","error":"internal","message":"Internal Server Error","code":"InternalError"}"#.into()
                )
            );
        }
        assert_eq!(s.object_count("raw"), 0);
        s.fail_next("f.mp4", 429, 1);
        let r = up().await.unwrap();
        let (status, body) = text(r).await;
        assert_eq!(status, 429);
        assert!(body.contains(r#""statusCode":"429""#) && body.contains("SlowDown"));
        s.fail_next("f.mp4", 404, 1);
        let r = up().await.unwrap();
        assert_eq!(text(r).await, (400, NO_SUCH_KEY.into()));
        let r = up().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(s.object_count("raw"), 1);

        // TUS: a real status with a text body; the failed PATCH stores nothing.
        let meta = format!("bucketName {},objectName {}", b64("raw"), b64("t.mp4"));
        let r = tus_create(&c, &st, 3, &meta, false).await;
        let loc = hdr(&r, "location").unwrap();
        s.fail_next("/upload/resumable/", 503, 1);
        let r = patch(&c, &loc, 0, b"xyz".to_vec(), false)
            .send()
            .await
            .unwrap();
        assert_eq!(hdr(&r, "tus-resumable").unwrap(), "1.0.0");
        assert_eq!(text(r).await, (503, "emulated fault 503\n".into()));
        let r = tus_head_offset(&c, &loc).await;
        assert_eq!(hdr(&r, "upload-offset").unwrap(), "0");
        let r = patch(&c, &loc, 0, b"xyz".to_vec(), false)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);

        let reqs = s.requests();
        assert_eq!(
            reqs[0],
            (
                "POST".to_string(),
                "/storage/v1/object/raw/f.mp4".to_string()
            )
        );
        assert_eq!(reqs.last().unwrap().0, "PATCH");
        let h = s.last_headers("/object/raw/f.mp4").unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("apikey"), Some(SERVICE_KEY));
        assert_eq!(get("x-upsert"), Some("true"));
        assert_eq!(get("content-type"), Some("video/mp4"));
    }
}
