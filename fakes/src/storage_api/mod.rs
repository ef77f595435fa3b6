//! A small in-memory emulator of Supabase Storage (storage-api) as hosted Supabase mounts it:
//! `STORAGE = {url}/storage/v1`, for the Supabase Storage backend's tests.
//!
//! It is built from the Supabase Storage wire contract in the project's shared contracts (verified against a real storage-api server), not from storage-api's code
//! (the contract is `supabase-storage.md`). Where the contract shows a transcript, the emulator
//! answers the same status, headers and body (byte for byte for error bodies, including their
//! key order); everything else below is the emulator's own choice and is marked as such.
//!
//! # The gateway (contract §0)
//!
//! "`apikey` is consumed by the hosted API gateway, which rejects requests without a valid
//! `apikey`", and new-style `sb_secret_…` keys "are only accepted through the hosted
//! gateway": every request but the keyless ones (a signed-URL download, a public-bucket download,
//! `OPTIONS` of the TUS root, which browsers make without a key) must carry one of the project's keys as
//! `apikey`, checked before anything else (faults included). The project's keys, shared with
//! the PostgREST emulator (the same check, `crate::postgrest`): JWTs signed with its
//! `JWT_SECRET` that have not expired, and the opaque keys it issued: its `SECRET_KEY`
//! ([`SERVICE_KEY`]), its `PUBLISHABLE_KEY`, and those given to
//! [`StorageApi::start_with_keys`] (or an `sb_secret_…` key given to
//! [`StorageApi::start_with_key`]). No `apikey` → 401 `{"message":"No API key found in
//! request","hint":…}`; one that is not the project's (an `sb_secret_…` key it never issued,
//! another project's JWT, an expired one) → 401 `{"message":"Invalid API key","hint":…}`
//! (the gateway's bodies, not storage-api's).
//!
//! # Auth (contract §0, §6)
//!
//! Past the gateway, every route except the signed-URL download requires `Authorization:
//! Bearer <key>` (the scheme is matched case-insensitively, as the server's `^Bearer\s+`
//! regex). The token decides the role:
//!
//! * an opaque key of the project that is also the request's `apikey` (the gateway swaps it
//!   for a JWT of its role, contract §0): `sb_secret_…` → service_role, `sb_publishable_…`
//!   → anon;
//! * a JWT of the project (signature and `exp` checked, as storage-api does) whose `role` is
//!   `service_role` or `anon` → that role;
//! * anything else → 400 `{"statusCode":"403","error":"Unauthorized","message":"signature
//!   verification failed","code":"AccessDenied"}`;
//! * no `Authorization` → 400 `{"statusCode":"400","error":"Error","message":"headers must have
//!   required property 'authorization'","code":"InvalidRequest"}` on REST routes, and 400
//!   `{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"Invalid
//!   Compact JWS"}` on the TUS routes (as the contract's transcript shows).
//!
//! Tests that care about the headers read them with [`StorageApi::last_headers`].
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
//!   the contract does not show it; 0 or null = no limit of its own, so the global one
//!   applies; `allowed_mime_types` exact or `type/*`) → `{"name":id}`; a limit above the
//!   global upload limit → `EntityTooLarge` (§10; checked first, the emulator's choice),
//!   existing → `BucketAlreadyExists`. `GET /bucket/{id}` → the row
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
//! * `GET /object/public/{bucket}/{path}` needs no auth: the object of a public bucket, served
//!   as above; a missing or private bucket → `NoSuchBucket`, a missing object → `NoSuchKey`
//!   (from the server's route, not the verified contract: see `rest::public_download`).
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
//! * `OPTIONS /upload/resumable` → 204 with `tus-extension`, `tus-max-size` (the global
//!   upload limit, §7), `tus-version`, `tus-resumable`. No auth.
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
//! * **Expiry** (contract §7: "Upload URLs expire after `TUS_URL_EXPIRY_MS` (default 1 h)"):
//!   an upload's URL lives [`DEFAULT_TUS_URL_LIFETIME`] from its creation
//!   ([`StorageApi::set_tus_url_lifetime`] for uploads created afterwards,
//!   [`StorageApi::expire_tus_uploads`] ends every one now). The contract shows no transcript
//!   of an expired upload; the answers follow `@tus/server`, which storage-api's TUS routes
//!   are built on: the create and each PATCH of an unfinished upload carry `Upload-Expires`
//!   (an HTTP date); past it `HEAD` and `PATCH` answer 410 `The file for this url no longer
//!   exists\n` (checked right after the upload is found), `DELETE` still removes it, and it
//!   no longer counts as open.
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
//! `misreport_size(needle, delta, n)`: the next `n` answers about an existing object whose
//! path contains `needle`, `GET /object/info/…` (its `size`) and `HEAD /object/…` (its
//! `content-length`), report the object's size plus `delta` (at least 0), as a store that
//! lost or padded bytes after acknowledging the upload would. Downloads stay whole.
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
//! image transformations,
//! `/object/move`, `/object/copy`, bucket update/delete/empty, signed *upload* URLs and
//! `/upload/resumable/sign`, TUS `Upload-Defer-Length`, the removal of expired uploads' bytes
//! (they are only refused), roles other than `service_role` and `anon` (`authenticated`),
//! object-key validation rules, `owner` (always `""`), `last_accessed_at` tracking, sort
//! columns other than name, rate limits, the gateway's refusal of browser-like `User-Agent`s
//! for secret keys, the lock wait before 503, and HTTP/2.
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

/// The emulator's default service-role key: the project's secret key, shared with the
/// PostgREST emulator (`sb_secret_…` keys the project did not issue are refused).
pub const SERVICE_KEY: &str = crate::postgrest::SECRET_KEY;

/// The chunk size hosted Supabase requires for every TUS PATCH but the last.
pub const TUS_CHUNK: u64 = 6 * 1024 * 1024;

/// The global upload limit the emulator starts with: the contract's server (§7's `OPTIONS`
/// transcript: `tus-max-size: 524288000`). Every real server has one (§10); change it with
/// [`StorageApi::set_upload_size_limit`].
pub const DEFAULT_UPLOAD_SIZE_LIMIT: u64 = 524_288_000;

/// The global upload limit of Supabase's Free plan and of the self-hosting compose file
/// ("50 MB", contract §10; `UPLOAD_FILE_SIZE_LIMIT=52428800` there).
pub const FREE_PLAN_UPLOAD_SIZE_LIMIT: u64 = 52_428_800;

/// How long a TUS upload URL lives: storage-api's `TUS_URL_EXPIRY_MS` default (contract §7:
/// "Upload URLs expire after `TUS_URL_EXPIRY_MS` (default 1 h)"); change it with
/// [`StorageApi::set_tus_url_lifetime`].
pub const DEFAULT_TUS_URL_LIFETIME: Duration = Duration::from_secs(3600);

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
    /// Starts an emulator whose service key is [`SERVICE_KEY`] (the project's secret key);
    /// the project's keys are its JWTs and the opaque keys of `crate::postgrest::project_keys`.
    pub async fn start() -> StorageApi {
        Self::launch(&[]).await
    }

    /// Starts an emulator whose service key is `service_key`: a JWT of the project (signed
    /// with [`crate::postgrest::JWT_SECRET`], e.g. [`crate::postgrest::jwt`]`("service_role")`,
    /// shared with the PostgREST emulator) or an `sb_secret_…` key, which the project then
    /// issues.
    pub async fn start_with_key(service_key: &str) -> StorageApi {
        if service_key.starts_with("sb_secret_") {
            return Self::launch(&[service_key]).await;
        }
        assert_eq!(
            crate::postgrest::verified_role(service_key).as_deref(),
            Some("service_role"),
            "a service key is an sb_secret_ key or a service_role JWT of the project"
        );
        Self::launch(&[]).await
    }

    /// Starts an emulator whose project also issued `keys` (`sb_secret_…` or
    /// `sb_publishable_…`, e.g. a key shared with the PostgREST emulator's
    /// `start_with_keys`).
    pub async fn start_with_keys(keys: &[&str]) -> StorageApi {
        Self::launch(keys).await
    }

    async fn launch(keys: &[&str]) -> StorageApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the storage-api emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("emulator address");
        let emu = Arc::new(Emu {
            keys: crate::postgrest::project_keys(keys),
            addr,
            st: Mutex::new(St {
                hosted_chunk_rule: true,
                global_limit: Some(DEFAULT_UPLOAD_SIZE_LIMIT),
                tus_url_lifetime: DEFAULT_TUS_URL_LIFETIME,
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

    /// A bucket's row as `GET /bucket/{id}` answers it, without a request.
    pub fn bucket(&self, id: &str) -> Option<serde_json::Value> {
        let row = self.emu.st().buckets.get(id)?.row();
        serde_json::from_str(&row).ok()
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

    /// The next `n` answers about a stored object whose request path contains `needle`
    /// (`GET /object/info/…` and `HEAD /object/…`) report its size off by `delta` bytes (at
    /// least 0): the store says it holds another size than what was uploaded. The object, its
    /// other answers and its downloads are untouched.
    pub fn misreport_size(&self, needle: &str, delta: i64, n: u32) {
        self.emu.st().misreports.push(Misreport {
            needle: needle.to_string(),
            delta,
            remaining: n,
        });
    }

    /// Forgets every pending fault, hang and misreported size (the store is healthy again; a
    /// request already hanging stays so).
    pub fn clear_faults(&self) {
        let mut st = self.emu.st();
        st.faults.clear();
        st.hangs.clear();
        st.misreports.clear();
    }

    /// The next TUS PATCH that passes its checks keeps `after` body bytes, then its connection
    /// is killed without an answer (see the module documentation).
    pub fn interrupt_next_patch(&self, after: u64) {
        self.emu.st().interrupt = Some(after);
    }

    /// The global upload size limit (the project's `UPLOAD_FILE_SIZE_LIMIT`; hosted Free plan:
    /// [`FREE_PLAN_UPLOAD_SIZE_LIMIT`]), applied with the bucket limits to standard and TUS
    /// uploads, answered as `tus-max-size`, and above which a bucket's own limit is refused.
    /// Default: [`DEFAULT_UPLOAD_SIZE_LIMIT`]; `None` takes it away (no real server is so).
    pub fn set_upload_size_limit(&self, limit: Option<u64>) {
        self.emu.st().global_limit = limit;
    }

    /// Turns the hosted "6 MiB chunks except the last" TUS rule on (the default) or off (the
    /// file backend's behaviour).
    pub fn set_hosted_chunk_rule(&self, on: bool) {
        self.emu.st().hosted_chunk_rule = on;
    }

    /// How long the TUS upload URLs created from now on live (storage-api's
    /// `TUS_URL_EXPIRY_MS`; [`DEFAULT_TUS_URL_LIFETIME`] unless set).
    pub fn set_tus_url_lifetime(&self, lifetime: Duration) {
        self.emu.st().tus_url_lifetime = lifetime;
    }

    /// Makes every TUS upload URL created so far expired.
    pub fn expire_tus_uploads(&self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for u in self.emu.st().uploads.values_mut() {
            u.expires = past;
        }
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

    /// Number of TUS uploads created and neither finished, terminated nor expired.
    pub fn open_uploads(&self) -> usize {
        let st = self.emu.st();
        st.uploads
            .values()
            .filter(|u| !u.completed && !st.expired(u))
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

    /// Every request served, in order: method, path and headers (names lowercase).
    pub fn requests_with_headers(&self) -> Vec<LoggedRequest> {
        self.emu
            .st()
            .log
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.headers.clone()))
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
    /// The project's opaque keys (the gateway's list).
    keys: Vec<String>,
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
        // The gateway swaps the request's own opaque key for a JWT of its role.
        let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
        if apikey.map(str::trim) == Some(token) && self.keys.iter().any(|k| k == token) {
            return Ok(if token.starts_with("sb_secret_") {
                Role::Service
            } else {
                Role::Anon
            });
        }
        match crate::postgrest::verified_role(token).as_deref() {
            Some("service_role") => Ok(Role::Service),
            Some("anon") => Ok(Role::Anon),
            _ => Err(AuthError::Invalid),
        }
    }

    /// The gateway in front of storage-api: `Some(refusal)` when the request carries no
    /// `apikey`, or one that is not a key of the project.
    fn gateway(&self, headers: &HeaderMap) -> Option<Response> {
        crate::postgrest::gateway(headers, &self.keys)
            .err()
            .map(|(message, hint)| crate::postgrest::gateway_refusal(message, hint))
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

#[derive(Default)]
struct St {
    buckets: BTreeMap<String, Bucket>,
    objects: BTreeMap<(String, String), Obj>,
    tokens: HashMap<String, SignedToken>,
    uploads: HashMap<String, TusUpload>,
    faults: Vec<Fault>,
    hangs: Vec<Hang>,
    misreports: Vec<Misreport>,
    interrupt: Option<u64>,
    log: Vec<Logged>,
    global_limit: Option<u64>,
    hosted_chunk_rule: bool,
    tus_url_lifetime: Duration,
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
    /// When its URL expires: its creation plus the lifetime then set.
    expires: SystemTime,
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

struct Misreport {
    needle: String,
    delta: i64,
    remaining: u32,
}

/// A request as served: method, path and headers (names lowercase).
pub type LoggedRequest = (String, String, Vec<(String, String)>);

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

    /// Whether the upload's URL has expired (`@tus/server`: now past creation + lifetime).
    fn expired(&self, u: &TusUpload) -> bool {
        SystemTime::now() > u.expires
    }

    /// The size change of the next misreported answer about `path`, if one is pending.
    fn take_misreport(&mut self, path: &str) -> Option<i64> {
        let m = self
            .misreports
            .iter_mut()
            .find(|m| m.remaining > 0 && path.contains(&m.needle))?;
        m.remaining -= 1;
        let delta = m.delta;
        self.misreports.retain(|m| m.remaining > 0);
        Some(delta)
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

mod rest;
mod tus;
mod wire;

use rest::*;
use tus::*;
use wire::*;

#[cfg(test)]
mod tests;
