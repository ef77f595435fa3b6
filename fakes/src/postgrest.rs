//! A small emulator of PostgREST's RPC endpoint as Supabase exposes it
//! (`POST {SUPABASE_URL}/rest/v1/rpc/{function}`), running the real SQL functions of a test
//! database, so the REST queue is tested against real SQL, real grants and real result shapes.
//!
//! It is built from the PostgREST RPC contract in the project's shared contracts
//! (`postgrest-rpc.md`), not from PostgREST's code, and follows that contract strictly where
//! the contract says something:
//!
//! * **Request** (§1): only `POST /rest/v1/rpc/{fn}`; any other method answers 405 `PGRST101`.
//!   The body is a JSON object whose top-level keys are the named arguments (an empty body is
//!   `{}`); names match exactly; omitted arguments take their defaults; an unknown key, a
//!   missing required argument or an unknown function is 404 `PGRST202` (message and details
//!   in the contract's wording; `hint` is always null). A function whose only argument is an
//!   unnamed `json`/`jsonb` receives the whole body. Functions are looked up live in
//!   `pg_proc` (schema `public`), so there is no stale schema cache. Among overloads, the one
//!   whose argument names cover the keys is called; if several do, the one using no defaults
//!   wins, otherwise 300 `PGRST203`. The call is one transaction: committed on success,
//!   rolled back on any error.
//! * **Results** (§2): `SETOF`/`RETURNS TABLE` → JSON array (`[]` when empty; `SETOF scalar`
//!   → array of scalars) with `Content-Range: 0-{n-1}/*` (`*/*` when empty); `void` → 204 with
//!   no body and no `Content-Type`; a scalar → the bare JSON value (`null` when NULL); a single
//!   composite / record / OUT parameters → a JSON object, with every field null when the
//!   function returned NULL. 200s carry `Content-Type: application/json; charset=utf-8`.
//!   `Accept: application/vnd.pgrst.object+json` turns a one-row set into that object and
//!   anything else into 406 `PGRST116` (rolled back).
//! * **Errors** (§4): body `{code, message, details, hint}` (all four keys, null when absent),
//!   `Proxy-Status: PostgREST; error=<code>` on every error, `WWW-Authenticate: Bearer` on
//!   every 401. Database errors keep SQLSTATE, MESSAGE, DETAIL and HINT; the HTTP status comes
//!   from the contract's SQLSTATE table ([`status_for_sqlstate`]): `42501` is 401 for the anon
//!   role and 403 for any other role. `RAISE SQLSTATE 'PGRST'` with a JSON message and a JSON
//!   `{"status":…,"headers":{…}}` detail sets the body, status and headers (unparseable →
//!   500 `PGRST121`).
//!
//! Choices the contract leaves open (the emulator's own, documented here):
//!
//! * **The gateway** (Supabase's API gateway in front of PostgREST; contract §5: "The gateway
//!   requires `apikey`"): a request without an `apikey` header is refused with 401 and
//!   `{"message":"No API key found in request","hint":…}`, and one whose `apikey` is not a key
//!   of the project with 401 and `{"message":"Invalid API key","hint":…}` (the gateway's own
//!   bodies, not PostgREST's four keys; rely on the status). The project's keys are the JWTs
//!   signed with [`JWT_SECRET`] and the opaque keys the emulator was started with
//!   ([`SECRET_KEY`] and [`PUBLISHABLE_KEY`] by default, see
//!   [`PostgrestEmulator::start_with_keys`]): an `sb_secret_…` key the project never issued is
//!   refused, as the real gateway refuses it. The Storage emulator's gateway runs the same
//!   check over the same list (`project_keys`), so one project's keys pass both.
//! * **Role selection** (PostgREST, contract §5: "PostgREST uses `Authorization` (without it
//!   the request runs as `anon`)"): only the `Authorization: Bearer <token>` header decides;
//!   without it the request runs as `anon`, whatever the `apikey` says. An opaque key in
//!   `Authorization` is swapped by the gateway for a JWT of its role (`sb_secret_…` →
//!   `service_role`, `sb_publishable_…` → `anon`) when it is the request's `apikey` too;
//!   any other bearer token must be an HS256 JWT signed with
//!   [`JWT_SECRET`]: a malformed token, another algorithm, a bad signature or an
//!   `Authorization` header that is not `Bearer` → 401 `PGRST301`; `exp` passed (or `nbf` in
//!   the future) → 401 `PGRST303`; no `role` claim → `anon`; a role other than `anon`,
//!   `authenticated`, `service_role` → 401 `22023` (`role "…" does not exist`: the emulator
//!   knows only those three API roles). Messages of these `PGRST` errors are the emulator's
//!   own wording: rely on codes and statuses only.
//! * The call runs on the superuser pool given to [`PostgrestEmulator::start`], inside a
//!   transaction that first sets `request.jwt.claims`, `request.method`, `request.path` (local)
//!   and then `SET LOCAL ROLE <role>`; the function is called PostgREST-style with the body
//!   bound as one `json` parameter:
//!   `… from json_to_record($1::json) as _(<arg> <type>, …) cross join lateral public.<fn>(<arg> := _.<arg>, …)`.
//! * `PGRST202` lists the body's keys sorted and joined with `", "`, and says "parameter" for
//!   one key, "parameters" for several. Invalid JSON, or a body that is not an object for a
//!   function without an unnamed json parameter, is 400 `PGRST102`.
//! * A failure to reach the database (pool timeout or closed, I/O) is 503 with code `PGRST000`
//!   and the error text in `details`; other client-side database errors are 500 `PGRST000`.
//! * Not emulated: `GET`/`HEAD` calls of stable functions (405), query-string filters and
//!   `select`/`limit`/`order` (a query string answers 501 with code `EMULATOR`), `Range`,
//!   `Prefer` (ignored: `count=` totals, `handling=strict`, `max-affected`), `Content-Profile`
//!   / `Accept-Profile` other than `public` (406 `PGRST106`), per-role statement timeouts.
//!   An unknown path answers 404 with code `EMULATOR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2_11::Sha256;
use sqlx::postgres::{PgDatabaseError, PgPool};
use sqlx::{AssertSqlSafe, Row};

/// The JWT secret of the emulated project (HS256).
pub const JWT_SECRET: &str = "douyin-worker-test-jwt-secret-at-least-32-chars";

/// The emulated project's secret key (an opaque `sb_secret_…` key, see the module's doc).
pub const SECRET_KEY: &str = "sb_secret_douyin_worker_test_0123456789abcdef";
/// The emulated project's publishable key (runs as `anon`).
pub const PUBLISHABLE_KEY: &str = "sb_publishable_douyin_worker_test_0123456789";

/// The API roles the emulator knows (Supabase's).
const API_ROLES: [&str; 3] = ["anon", "authenticated", "service_role"];
/// The role of requests without a key (PostgREST's `db-anon-role` on Supabase).
const ANON_ROLE: &str = "anon";
/// The only exposed schema.
const SCHEMA: &str = "public";

const JSON_UTF8: &str = "application/json; charset=utf-8";
const OBJECT_MEDIA_TYPE: &str = "application/vnd.pgrst.object+json";

type HmacSha256 = Hmac<Sha256>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 JWT signed with [`JWT_SECRET`] with claims
/// `{"iss":"supabase","ref":"test","role":<role>,"iat":<now>,"exp":<now + 100 years>}`
/// (the shape of Supabase's legacy API keys).
pub fn jwt(role: &str) -> String {
    let iat = now_secs();
    sign_jwt(&json!({
        "iss": "supabase",
        "ref": "test",
        "role": role,
        "iat": iat,
        "exp": iat + 100 * 365 * 24 * 3600,
    }))
}

/// An HS256 JWT with exactly these claims, signed with [`JWT_SECRET`] (e.g. an expired one).
pub fn sign_jwt(claims: &Value) -> String {
    sign_jwt_with(claims, JWT_SECRET)
}

fn sign_jwt_with(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// A running emulator bound to `127.0.0.1:0` (a tokio task; it stops when this is dropped).
pub struct PostgrestEmulator {
    /// Like a `SUPABASE_URL`: `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    calls: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PostgrestEmulator {
    /// Serves `POST {url}/rest/v1/rpc/{function}` for the database of `pool` (a superuser
    /// pool: the emulator switches to the request's role per transaction). The project's
    /// opaque keys are [`SECRET_KEY`] and [`PUBLISHABLE_KEY`].
    pub async fn start(pool: PgPool) -> PostgrestEmulator {
        Self::start_with_keys(pool, &[]).await
    }

    /// [`PostgrestEmulator::start`], with more opaque keys (`sb_secret_…` or
    /// `sb_publishable_…`) issued by the project, e.g. a key shared with the Storage emulator.
    pub async fn start_with_keys(pool: PgPool, keys: &[&str]) -> PostgrestEmulator {
        let requests = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let opaque_keys = project_keys(keys);
        let state = Arc::new(Inner {
            pool,
            requests: requests.clone(),
            calls: calls.clone(),
            opaque_keys,
        });
        let router = Router::new()
            .route("/rest/v1/rpc/{function}", any(rpc))
            .fallback(not_found)
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the PostgREST emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("emulator address");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("PostgREST emulator stopped: {e}");
            }
        });
        PostgrestEmulator {
            url: format!("http://{addr}"),
            addr,
            requests,
            calls,
            task,
        }
    }

    /// Number of requests served (every request, whatever its answer).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Number of requests that called `function` (whatever their answer).
    pub fn calls(&self, function: &str) -> u64 {
        let calls = self.calls.lock().expect("call counts");
        calls.get(function).copied().unwrap_or(0)
    }
}

impl Drop for PostgrestEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Inner {
    pool: PgPool,
    requests: Arc<AtomicU64>,
    calls: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    /// The `sb_…` keys the project issued.
    opaque_keys: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Errors

/// An error answer: `{code, message, details, hint}` plus status and extra headers.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    /// The JSON object `{code, message, details, hint}`.
    body: Value,
    headers: Vec<(String, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::with(
            status,
            Value::String(code.to_owned()),
            Value::String(message.into()),
            Value::Null,
            Value::Null,
        )
    }

    fn with(status: StatusCode, code: Value, message: Value, details: Value, hint: Value) -> Self {
        ApiError {
            status,
            body: json!({ "code": code, "message": message, "details": details, "hint": hint }),
            headers: Vec::new(),
        }
    }

    fn details(mut self, details: impl Into<String>) -> Self {
        self.body["details"] = Value::String(details.into());
        self
    }

    fn into_response(self) -> Response {
        let code_text = match &self.body["code"] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let body = self.body;
        let mut builder = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, JSON_UTF8);
        if let Ok(v) = HeaderValue::from_str(&format!("PostgREST; error={code_text}")) {
            builder = builder.header("proxy-status", v);
        }
        let mut has_www_authenticate = false;
        for (name, value) in &self.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                continue;
            };
            has_www_authenticate |= name == header::WWW_AUTHENTICATE;
            builder = builder.header(name, value);
        }
        if self.status == StatusCode::UNAUTHORIZED && !has_www_authenticate {
            builder = builder.header(header::WWW_AUTHENTICATE, "Bearer");
        }
        builder
            .body(Body::from(body.to_string()))
            .expect("valid error response")
    }
}

/// HTTP status of a SQLSTATE, per the contract's table (§4). `anon`: the request ran as the
/// anon role (decides 401 vs 403 for `42501`).
pub fn status_for_sqlstate(code: &str, anon: bool) -> StatusCode {
    let status = |n: u16| StatusCode::from_u16(n).expect("valid status");
    let class = code.get(..2).unwrap_or(code);
    match code {
        "42501" if anon => status(401),
        "42501" => status(403),
        "P0001" => status(400),
        _ if class == "P0" => status(500),
        _ if class == "PT" => {
            let digits = &code[2..];
            if digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits
                    .parse::<u16>()
                    .ok()
                    .and_then(|n| StatusCode::from_u16(n).ok())
                    .unwrap_or(status(500))
            } else {
                status(500)
            }
        }
        "23505" | "23503" => status(409),
        "42883" | "42P01" => status(404),
        "25006" => status(405),
        "53400" => status(500),
        "57P01" => status(503),
        "21000" => status(500),
        _ if class == "08" || class == "53" => status(503),
        _ if [
            "40", "25", "2D", "38", "39", "3B", "54", "55", "57", "58", "F0", "HV", "XX", "09",
        ]
        .contains(&class) =>
        {
            status(500)
        }
        _ if ["0L", "0P", "28"].contains(&class) => status(403),
        _ => status(400),
    }
}

/// An error of the database or of reaching it.
fn db_error(err: &sqlx::Error, anon: bool) -> ApiError {
    if let Some(db) = err.as_database_error() {
        if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
            return pg_error(pg, anon);
        }
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "XX000", db.message());
    }
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "PGRST000",
            "Database connection error (PostgREST emulator)",
        )
        .details(err.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "PGRST000",
            "Database client error (PostgREST emulator)",
        )
        .details(other.to_string()),
    }
}

fn opt(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn pg_error(pg: &PgDatabaseError, anon: bool) -> ApiError {
    if pg.code() == "PGRST" {
        return raised_pgrst(pg);
    }
    ApiError::with(
        status_for_sqlstate(pg.code(), anon),
        Value::String(pg.code().to_owned()),
        Value::String(pg.message().to_owned()),
        opt(pg.detail()),
        opt(pg.hint()),
    )
}

/// `RAISE SQLSTATE 'PGRST' USING MESSAGE = '<json body>', DETAIL = '{"status":n,"headers":{}}'`.
fn raised_pgrst(pg: &PgDatabaseError) -> ApiError {
    let unparseable = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "PGRST121",
            "Could not parse the JSON in the RAISE SQLSTATE 'PGRST' error (PostgREST emulator)",
        )
        .details(format!(
            "message: {}; detail: {}",
            pg.message(),
            pg.detail().unwrap_or("")
        ))
    };
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(pg.message()) else {
        return unparseable();
    };
    let Some(Ok(Value::Object(detail))) = pg.detail().map(serde_json::from_str::<Value>) else {
        return unparseable();
    };
    let Some(status) = detail
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .and_then(|n| StatusCode::from_u16(n).ok())
    else {
        return unparseable();
    };
    let mut headers = Vec::new();
    match detail.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.push((k.clone(), v));
            }
        }
        Some(_) => return unparseable(),
    }
    let field = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
    ApiError {
        headers,
        ..ApiError::with(
            status,
            field("code"),
            field("message"),
            field("details"),
            field("hint"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Who the request runs as.
struct Auth {
    role: &'static str,
    claims: Value,
}

fn jwt_invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "PGRST301", message)
}

/// The project's opaque keys: [`SECRET_KEY`], [`PUBLISHABLE_KEY`] and `extra` (each an
/// `sb_secret_…` or `sb_publishable_…` key), the list both emulators' gateway checks.
pub(crate) fn project_keys(extra: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = vec![SECRET_KEY.into(), PUBLISHABLE_KEY.into()];
    for key in extra {
        assert!(
            key.starts_with("sb_secret_") || key.starts_with("sb_publishable_"),
            "an opaque Supabase key starts with sb_secret_ or sb_publishable_: {key}"
        );
        keys.push((*key).to_owned());
    }
    keys
}

/// The gateway's refusal of a request's `apikey` (its own body, not PostgREST's); the
/// Storage emulator answers it too.
pub(crate) fn gateway_refusal(message: &str, hint: &str) -> Response {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::CONTENT_TYPE, JSON_UTF8)
        .body(Body::from(
            json!({ "message": message, "hint": hint }).to_string(),
        ))
        .expect("valid gateway response")
}

/// The gateway's check: the request carries one of the project's keys as `apikey`. Returns
/// the key, or the refusal's message and hint. The Storage emulator runs the same check.
pub(crate) fn gateway(
    headers: &HeaderMap,
    opaque_keys: &[String],
) -> Result<String, (&'static str, &'static str)> {
    let Some(value) = headers.get("apikey") else {
        return Err((
            "No API key found in request",
            "No `apikey` request header or url param was found.",
        ));
    };
    let key = value.to_str().map(str::trim).unwrap_or_default();
    let known = if key.starts_with("sb_") {
        opaque_keys.iter().any(|k| k == key)
    } else {
        verify_jwt(key).is_ok()
    };
    if !known {
        return Err((
            "Invalid API key",
            "Double check your Supabase `anon` or `service_role` API key.",
        ));
    }
    Ok(key.to_owned())
}

fn authenticate(headers: &HeaderMap, apikey: &str) -> Result<Auth, ApiError> {
    let token = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| jwt_invalid("Authorization header is not valid text"))?
                .trim();
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(jwt_invalid("Authorization header is not a Bearer token"));
            }
            Some(rest.trim().to_owned())
        }
        None => None,
    };
    let Some(token) = token else {
        return Ok(Auth {
            role: ANON_ROLE,
            claims: json!({ "role": ANON_ROLE }),
        });
    };
    // The gateway swaps the request's own opaque key for a JWT of its role.
    if token == apikey && token.starts_with("sb_secret_") {
        return Ok(Auth {
            role: "service_role",
            claims: json!({ "iss": "supabase", "role": "service_role" }),
        });
    }
    if token == apikey && token.starts_with("sb_publishable_") {
        return Ok(Auth {
            role: ANON_ROLE,
            claims: json!({ "iss": "supabase", "role": ANON_ROLE }),
        });
    }
    let claims = verify_jwt(&token)?;
    let role = match claims.get("role") {
        None | Some(Value::Null) => ANON_ROLE,
        Some(Value::String(r)) => match API_ROLES.iter().find(|known| **known == r.as_str()) {
            Some(known) => known,
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "22023",
                    format!("role \"{r}\" does not exist"),
                ));
            }
        },
        Some(_) => return Err(jwt_invalid("JWT role claim is not a string")),
    };
    Ok(Auth { role, claims })
}

fn decode_json_part(part: &str) -> Result<Value, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| jwt_invalid("JWT part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| jwt_invalid("JWT part is not JSON"))
}

/// Verifies an HS256 JWT signed with [`JWT_SECRET`]; returns its claims.
/// The `role` claim of a JWT of the project (signed with [`JWT_SECRET`], not expired), for the
/// Storage emulator, which takes the role from such a token as storage-api does.
pub(crate) fn verified_role(token: &str) -> Option<String> {
    let claims = verify_jwt(token).ok()?;
    claims.get("role")?.as_str().map(str::to_owned)
}

fn verify_jwt(token: &str) -> Result<Value, ApiError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(jwt_invalid("JWT must have 3 parts"));
    };
    let header = decode_json_part(header_b64)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(jwt_invalid("JWT algorithm must be HS256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| jwt_invalid("JWT signature is not base64url"))?;
    let mut mac = HmacSha256::new_from_slice(JWT_SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{header_b64}.{payload_b64}").as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| jwt_invalid("JWT signature does not match"))?;
    let claims = decode_json_part(payload_b64)?;
    if !claims.is_object() {
        return Err(jwt_invalid("JWT claims are not a JSON object"));
    }
    let now = now_secs() as f64;
    match claims.get("exp") {
        None | Some(Value::Null) => {}
        Some(Value::Number(exp)) => {
            if now >= exp.as_f64().unwrap_or(0.0) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "PGRST303",
                    "JWT expired",
                ));
            }
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "PGRST303",
                "JWT exp claim is not a number",
            ));
        }
    }
    match claims.get("nbf") {
        None | Some(Value::Null) => {}
        Some(Value::Number(nbf)) if now >= nbf.as_f64().unwrap_or(f64::MAX) => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "PGRST303",
                "JWT not yet valid (nbf)",
            ));
        }
    }
    Ok(claims)
}

// ---------------------------------------------------------------------------------------------
// Functions

/// One function of `pg_proc`, as far as the call needs it.
#[derive(Debug)]
struct Function {
    returns_set: bool,
    returns_void: bool,
    /// Composite / record / OUT, INOUT or TABLE parameters: rows, i.e. JSON objects.
    returns_row: bool,
    /// IN (and INOUT, VARIADIC) arguments, in order.
    args: Vec<Arg>,
    /// How many of the last `args` have defaults.
    n_defaults: usize,
}

#[derive(Debug)]
struct Arg {
    /// Empty when unnamed.
    name: String,
    /// `format_type` of its type.
    ty: String,
    variadic: bool,
}

impl Function {
    fn required(&self) -> &[Arg] {
        &self.args[..self.args.len().saturating_sub(self.n_defaults)]
    }

    /// Callable with exactly these named arguments.
    fn accepts(&self, keys: &[String]) -> bool {
        keys.iter()
            .all(|k| self.args.iter().any(|a| !a.name.is_empty() && a.name == *k))
            && self
                .required()
                .iter()
                .all(|a| !a.name.is_empty() && keys.contains(&a.name))
    }

    /// One unnamed `json`/`jsonb` argument: it receives the whole body.
    fn takes_whole_body(&self) -> bool {
        self.args.len() == 1
            && self.args[0].name.is_empty()
            && matches!(self.args[0].ty.as_str(), "json" | "jsonb")
    }
}

const LOOKUP_SQL: &str = r#"
select p.proretset as returns_set,
       p.pronargdefaults::int4 as n_defaults,
       (p.prorettype = 'pg_catalog.void'::pg_catalog.regtype) as returns_void,
       (rt.typtype = 'c'
        or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype
        or coalesce(p.proargmodes::text[] && array['o', 'b', 't'], false)) as returns_row,
       array(select coalesce(p.proargnames[a.ord], '')
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord)
              where coalesce(p.proargmodes[a.ord]::text, 'i') in ('i', 'b', 'v')
              order by a.ord) as arg_names,
       array(select pg_catalog.format_type(a.typ, null)
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord)
              where coalesce(p.proargmodes[a.ord]::text, 'i') in ('i', 'b', 'v')
              order by a.ord) as arg_types,
       array(select coalesce(p.proargmodes[a.ord]::text, 'i')
               from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality a(typ, ord)
              where coalesce(p.proargmodes[a.ord]::text, 'i') in ('i', 'b', 'v')
              order by a.ord) as arg_modes
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_type rt on rt.oid = p.prorettype
 where n.nspname = $1 and p.proname = $2 and p.prokind = 'f'
 order by p.oid
"#;

async fn lookup(pool: &PgPool, name: &str) -> Result<Vec<Function>, sqlx::Error> {
    let rows = sqlx::query(LOOKUP_SQL)
        .bind(SCHEMA)
        .bind(name)
        .fetch_all(pool)
        .await?;
    let mut functions = Vec::with_capacity(rows.len());
    for row in rows {
        let names: Vec<String> = row.try_get("arg_names")?;
        let types: Vec<String> = row.try_get("arg_types")?;
        let modes: Vec<String> = row.try_get("arg_modes")?;
        let n_defaults: i32 = row.try_get("n_defaults")?;
        let args = names
            .into_iter()
            .zip(types)
            .zip(modes)
            .map(|((name, ty), mode)| Arg {
                name,
                ty,
                variadic: mode == "v",
            })
            .collect();
        functions.push(Function {
            returns_set: row.try_get("returns_set")?,
            returns_void: row.try_get("returns_void")?,
            returns_row: row.try_get("returns_row")?,
            args,
            n_defaults: usize::try_from(n_defaults).unwrap_or(0),
        });
    }
    Ok(functions)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// 404 PGRST202, in the contract's wording.
fn function_not_found(function: &str, keys: &[String]) -> ApiError {
    let mut keys = keys.to_vec();
    keys.sort();
    let qualified = format!("{SCHEMA}.{function}");
    let (message, details) = if keys.is_empty() {
        (
            format!(
                "Could not find the function {qualified} without parameters in the schema cache"
            ),
            format!(
                "Searched for the function {qualified} without parameters or with a single \
                 unnamed json/jsonb parameter, but no matches were found in the schema cache."
            ),
        )
    } else {
        let list = keys.join(", ");
        let noun = if keys.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        (
            format!("Could not find the function {qualified}({list}) in the schema cache"),
            format!(
                "Searched for the function {qualified} with {noun} {list} or with a single \
                 unnamed json/jsonb parameter, but no matches were found in the schema cache."
            ),
        )
    };
    ApiError::new(StatusCode::NOT_FOUND, "PGRST202", message).details(details)
}

/// How the call's result is shaped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// JSON array.
    Set,
    /// 204.
    Void,
    /// A bare JSON value.
    Scalar,
    /// A JSON object.
    Row,
}

/// The SQL of the call: one row `(json text, row count int8)`; whether it uses `$1` (the body).
fn call_sql(name: &str, f: &Function, keys: &[String], whole_body: bool) -> (String, Shape, bool) {
    let fn_name = format!("{}.{}", quote_ident(SCHEMA), quote_ident(name));
    let (from, uses_body) = if whole_body {
        let ty = &f.args[0].ty;
        (format!("{fn_name}($1::pg_catalog.json::{ty})"), true)
    } else {
        let used: Vec<&Arg> = f
            .args
            .iter()
            .filter(|a| !a.name.is_empty() && keys.contains(&a.name))
            .collect();
        if used.is_empty() {
            (format!("{fn_name}()"), false)
        } else {
            let defs = used
                .iter()
                .map(|a| format!("{} {}", quote_ident(&a.name), a.ty))
                .collect::<Vec<_>>()
                .join(", ");
            let call_args = used
                .iter()
                .map(|a| {
                    let q = quote_ident(&a.name);
                    let variadic = if a.variadic { "variadic " } else { "" };
                    format!("{variadic}{q} := _.{q}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            (
                format!(
                    "pg_catalog.json_to_record($1::pg_catalog.json) as _({defs}) \
                     cross join lateral {fn_name}({call_args})"
                ),
                true,
            )
        }
    };
    let (shape, sql) = if f.returns_void {
        (
            Shape::Void,
            format!("select null::text, count(*)::int8 from {from} as _f"),
        )
    } else if f.returns_set && f.returns_row {
        (
            Shape::Set,
            format!(
                "select coalesce(pg_catalog.json_agg(_f), '[]')::text, count(*)::int8 \
                 from (select _f0.* from {from} as _f0) _f"
            ),
        )
    } else if f.returns_set {
        (
            Shape::Set,
            format!(
                "select coalesce(pg_catalog.json_agg(_f.v), '[]')::text, count(*)::int8 \
                 from {from} as _f(v)"
            ),
        )
    } else if f.returns_row {
        (
            Shape::Row,
            format!(
                "select coalesce(pg_catalog.json_agg(_f) -> 0, 'null')::text, count(*)::int8 \
                 from (select _f0.* from {from} as _f0) _f"
            ),
        )
    } else {
        (
            Shape::Scalar,
            format!("select pg_catalog.to_json(_f.v)::text, 1::int8 from {from} as _f(v)"),
        )
    };
    (sql, shape, uses_body)
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn not_found(State(state): State<Arc<Inner>>, uri: Uri) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    ApiError::new(
        StatusCode::NOT_FOUND,
        "EMULATOR",
        format!(
            "the PostgREST emulator serves only POST /rest/v1/rpc/{{function}}, not {}",
            uri.path()
        ),
    )
    .into_response()
}

async fn rpc(
    State(state): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state
        .calls
        .lock()
        .expect("call counts")
        .entry(function.clone())
        .or_default() += 1;
    let apikey = match gateway(&headers, &state.opaque_keys) {
        Ok(key) => key,
        Err((message, hint)) => return gateway_refusal(message, hint),
    };
    match handle(&state, &method, &uri, &function, &headers, &apikey, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &Inner,
    method: &Method,
    uri: &Uri,
    function: &str,
    headers: &HeaderMap,
    apikey: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    if method != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PGRST101",
            format!("Only POST calls of functions are emulated, not {method} (PostgREST emulator)"),
        ));
    }
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "EMULATOR",
            format!("the PostgREST emulator does not support query parameters on RPC (?{query})"),
        ));
    }
    for profile in ["content-profile", "accept-profile"] {
        if let Some(p) = headers.get(profile)
            && p.to_str().map(str::trim).ok() != Some(SCHEMA)
        {
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST106",
                format!("The schema must be one of the following: {SCHEMA}"),
            ));
        }
    }
    let auth = authenticate(headers, apikey)?;
    let anon = auth.role == ANON_ROLE;
    let want_object = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(OBJECT_MEDIA_TYPE));

    // The body: a JSON object of named arguments (empty = {}), or anything for a function
    // that takes the whole body.
    let body_text: &str = if body.iter().all(u8::is_ascii_whitespace) {
        "{}"
    } else {
        std::str::from_utf8(body).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PGRST102",
                "Empty or invalid json (body is not UTF-8)",
            )
        })?
    };
    let parsed: Value = serde_json::from_str(body_text).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "PGRST102", "Empty or invalid json")
            .details(e.to_string())
    })?;
    let keys: Vec<String> = match &parsed {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };

    let candidates = lookup(&state.pool, function)
        .await
        .map_err(|e| db_error(&e, anon))?;
    let (chosen, whole_body) = choose(function, &candidates, &parsed, &keys)?;

    let (sql, shape, uses_body) = call_sql(function, chosen, &keys, whole_body);

    let mut tx = state.pool.begin().await.map_err(|e| db_error(&e, anon))?;
    let result: Result<(Option<String>, i64), sqlx::Error> = async {
        sqlx::query(
            "select pg_catalog.set_config('request.jwt.claims', $1, true), \
                    pg_catalog.set_config('request.method', 'POST', true), \
                    pg_catalog.set_config('request.path', $2, true)",
        )
        .bind(auth.claims.to_string())
        .bind(uri.path())
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "set local role {}",
            quote_ident(auth.role)
        )))
        .execute(&mut *tx)
        .await?;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if uses_body {
            query = query.bind(body_text);
        }
        let row = query.fetch_one(&mut *tx).await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
    .await;
    let (json_text, count) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(db_error(&e, anon));
        }
    };

    // `Accept: application/vnd.pgrst.object+json`: exactly one row.
    let mut content_type = JSON_UTF8.to_owned();
    let mut json_text = json_text;
    if want_object && shape == Shape::Set {
        if count != 1 {
            let _ = tx.rollback().await;
            return Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
            )
            .details(format!("The result contains {count} rows")));
        }
        let array: Value = serde_json::from_str(json_text.as_deref().unwrap_or("[]"))
            .unwrap_or(Value::Array(Vec::new()));
        json_text = array.get(0).map(Value::to_string);
        content_type = format!("{OBJECT_MEDIA_TYPE}; charset=utf-8");
    }

    tx.commit().await.map_err(|e| db_error(&e, anon))?;

    if shape == Shape::Void {
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("valid 204"));
    }
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type);
    if shape == Shape::Set && !want_object {
        let range = if count > 0 {
            format!("0-{}/*", count - 1)
        } else {
            "*/*".to_owned()
        };
        builder = builder.header(header::CONTENT_RANGE, range);
    }
    Ok(builder
        .body(Body::from(json_text.unwrap_or_else(|| "null".to_owned())))
        .expect("valid 200"))
}

/// The overload to call, and whether it takes the whole body.
fn choose<'f>(
    function: &str,
    candidates: &'f [Function],
    body: &Value,
    keys: &[String],
) -> Result<(&'f Function, bool), ApiError> {
    let by_name: Vec<&Function> = if body.is_object() {
        candidates.iter().filter(|f| f.accepts(keys)).collect()
    } else {
        Vec::new()
    };
    let chosen = match by_name.len() {
        0 => None,
        1 => Some(by_name[0]),
        _ => {
            let exact: Vec<&&Function> = by_name
                .iter()
                .filter(|f| f.args.len() == keys.len())
                .collect();
            if exact.len() == 1 {
                Some(*exact[0])
            } else {
                return Err(ApiError::new(
                    StatusCode::MULTIPLE_CHOICES,
                    "PGRST203",
                    format!(
                        "Could not choose the best candidate function between several \
                         overloads of {SCHEMA}.{function} (PostgREST emulator)"
                    ),
                ));
            }
        }
    };
    if let Some(f) = chosen {
        return Ok((f, false));
    }
    if let Some(f) = candidates.iter().find(|f| f.takes_whole_body()) {
        return Ok((f, true));
    }
    if !body.is_object() && !candidates.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "PGRST102",
            "The body must be a JSON object of named arguments",
        ));
    }
    Err(function_not_found(function, keys))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fresh_pg;

    type JsonObject = serde_json::Map<String, Value>;

    /// POSTs `body` to `/rest/v1/rpc/{function}` with `key` as `apikey` and bearer token.
    async fn call(
        emu: &PostgrestEmulator,
        key: Option<&str>,
        function: &str,
        body: Value,
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(format!("{}/rest/v1/rpc/{function}", emu.url))
            .json(&body);
        if let Some(key) = key {
            req = req.header("apikey", key).bearer_auth(key);
        }
        req.send().await.expect("request to the emulator")
    }

    fn header<'r>(r: &'r reqwest::Response, name: &str) -> Option<&'r str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    /// Status and JSON body of an error; checks the four keys and `Proxy-Status`.
    async fn error_of(r: reqwest::Response) -> (u16, JsonObject, reqwest::header::HeaderMap) {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/json; charset=utf-8"
        );
        let body: Value = r.json().await.expect("error body is JSON");
        let Value::Object(map) = body else {
            panic!("error body is not an object: {body}")
        };
        for k in ["code", "message", "details", "hint"] {
            assert!(map.contains_key(k), "error body lacks {k}: {map:?}");
        }
        assert_eq!(map.len(), 4, "{map:?}");
        let code = map["code"].as_str().unwrap();
        assert_eq!(
            headers.get("proxy-status").unwrap(),
            &format!("PostgREST; error={code}")
        );
        (status, map, headers)
    }

    async fn json_200(r: reqwest::Response) -> Value {
        let status = r.status().as_u16();
        let ct = header(&r, "content-type").map(str::to_owned);
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(ct.as_deref(), Some("application/json; charset=utf-8"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[tokio::test]
    async fn service_role_keys_call_the_worker_functions() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        assert!(emu.url.starts_with("http://127.0.0.1:") && !emu.url.ends_with('/'));
        for key in [jwt("service_role"), SECRET_KEY.to_owned()] {
            let key = Some(key.as_str());

            let stats = json_200(call(&emu, key, "get_worker_stats", json!({})).await).await;
            let rows = stats.as_array().expect("array");
            assert_eq!(rows.len(), 1, "{stats}");
            let row = rows[0].as_object().unwrap();
            let mut names: Vec<&str> = row.keys().map(String::as_str).collect();
            names.sort();
            assert_eq!(
                names,
                [
                    "active_workers",
                    "completed_jobs",
                    "failed_jobs",
                    "pending_jobs",
                    "running_jobs",
                    "total_jobs"
                ]
            );
            assert_eq!(row["total_jobs"], json!(0));

            let r = call(&emu, key, "douyin_worker_schema_version", json!({})).await;
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(header(&r, "content-range"), None);
            assert_eq!(
                r.text().await.unwrap(),
                douyin_worker::queue::SCHEMA_VERSION.to_string()
            );

            let r = call(
                &emu,
                key,
                "claim_download_jobs",
                json!({"p_worker_id": "w", "p_limit": 5}),
            )
            .await;
            assert_eq!(header(&r, "content-range"), Some("*/*"));
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.text().await.unwrap(), "[]");

            let r = call(
                &emu,
                key,
                "report_download_progress",
                json!({
                    "p_worker_id": "w",
                    "p_job_id": uuid::Uuid::new_v4(),
                    "p_lease_id": uuid::Uuid::new_v4(),
                    "p_bytes_done": 10,
                }),
            )
            .await;
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.text().await.unwrap(), "false");
        }
        assert_eq!(emu.requests(), 8);
    }

    #[tokio::test]
    async fn a_queued_job_goes_through_enqueue_claim_and_inspect() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let token = jwt("service_role");
        let key = Some(token.as_str());

        let queued = json_200(
            call(
                &emu,
                key,
                "enqueue_download_job",
                json!({"p_url": "https://www.douyin.com/video/7400000000000000001"}),
            )
            .await,
        )
        .await;
        assert_eq!(queued[0]["outcome"], "queued", "{queued}");
        let job_id = queued[0]["job_id"].as_str().unwrap().to_owned();

        let r = call(
            &emu,
            key,
            "claim_download_jobs",
            json!({"p_worker_id": "w", "p_limit": 5, "p_lease_seconds": 60}),
        )
        .await;
        assert_eq!(header(&r, "content-range"), Some("0-0/*"));
        let claimed = json_200(r).await;
        assert_eq!(claimed.as_array().unwrap().len(), 1, "{claimed}");
        assert_eq!(claimed[0]["id"], json!(job_id));
        assert!(claimed[0]["lease_id"].is_string());
        assert!(claimed[0]["payload"].is_null());

        // Committed: visible to a plain query.
        let status: String =
            sqlx::query_scalar("select status from public.download_jobs where id = $1::uuid")
                .bind(&job_id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(status, "running");

        // Singular object on request.
        let r = reqwest::Client::new()
            .post(format!("{}/rest/v1/rpc/get_download_job", emu.url))
            .header("apikey", &token)
            .bearer_auth(&token)
            .header("accept", "application/vnd.pgrst.object+json")
            .json(&json!({"p_job_id": job_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            header(&r, "content-type"),
            Some("application/vnd.pgrst.object+json; charset=utf-8")
        );
        let job: Value = r.json().await.unwrap();
        assert_eq!(job["status"], "running", "{job}");
    }

    #[tokio::test]
    async fn anon_gets_401_and_authenticated_gets_403() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let anon = jwt("anon");
        let body = json!({"p_worker_id": "w", "p_limit": 5});
        for key in [anon.as_str(), PUBLISHABLE_KEY] {
            let r = call(&emu, Some(key), "claim_download_jobs", body.clone()).await;
            let (status, err, headers) = error_of(r).await;
            assert_eq!(status, 401, "{key:?}: {err:?}");
            assert_eq!(err["code"], "42501");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains("permission denied for function claim_download_jobs"),
                "{err:?}"
            );
            assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
        }
        // Without Authorization the request runs as anon, whatever the apikey.
        let r = reqwest::Client::new()
            .post(format!("{}/rest/v1/rpc/claim_download_jobs", emu.url))
            .header("apikey", SECRET_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("42501")));

        let authenticated = jwt("authenticated");
        let r = call(&emu, Some(&authenticated), "claim_download_jobs", body).await;
        let (status, err, headers) = error_of(r).await;
        assert_eq!(status, 403, "{err:?}");
        assert_eq!(err["code"], "42501");
        assert!(headers.get("www-authenticate").is_none());
        // Every request counts, refused or not.
        assert_eq!(emu.requests(), 4);
    }

    /// The gateway's answer: 401 with its own `{message, hint}` body.
    async fn gateway_refusal_of(r: reqwest::Response) -> String {
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().get("proxy-status").is_none(), "not PostgREST's");
        let body: Value = r.json().await.unwrap();
        body["message"].as_str().expect("a message").to_owned()
    }

    #[tokio::test]
    async fn the_gateway_requires_a_key_of_the_project() {
        let db = fresh_pg().await;
        let extra = "sb_secret_shared_with_the_storage_emulator";
        let emu = PostgrestEmulator::start_with_keys(db.pool.clone(), &[extra]).await;
        let body = json!({});
        let post = || {
            reqwest::Client::new()
                .post(format!("{}/rest/v1/rpc/get_worker_stats", emu.url))
                .json(&body)
        };
        // No apikey: refused before PostgREST, even with a good bearer token.
        let r = post().bearer_auth(SECRET_KEY).send().await.unwrap();
        assert_eq!(gateway_refusal_of(r).await, "No API key found in request");
        // Keys the project never issued.
        let foreign_jwt = sign_jwt_with(
            &json!({"role": "service_role", "exp": now_secs() + 3600}),
            "another-project-secret-at-least-32-chars",
        );
        for key in [
            "sb_secret_never_issued_0123",
            "sb_publishable_never_issued",
            "x",
        ] {
            let r = call(&emu, Some(key), "get_worker_stats", body.clone()).await;
            assert_eq!(gateway_refusal_of(r).await, "Invalid API key", "{key}");
        }
        let r = call(&emu, Some(&foreign_jwt), "get_worker_stats", body.clone()).await;
        assert_eq!(gateway_refusal_of(r).await, "Invalid API key");
        // A key the emulator was started with works like the default one.
        for key in [extra, SECRET_KEY] {
            let r = call(&emu, Some(key), "get_worker_stats", body.clone()).await;
            assert_eq!(r.status().as_u16(), 200, "{key}");
        }
        // An opaque bearer token is swapped only when it is the request's own apikey.
        let r = post()
            .header("apikey", PUBLISHABLE_KEY)
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .unwrap();
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("PGRST301")));
        // A legacy service-role JWT as apikey with the secret key as bearer: not swapped.
        let service = jwt("service_role");
        let r = post()
            .header("apikey", &service)
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .unwrap();
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("PGRST301")));
        assert_eq!(emu.requests(), 9);
    }

    #[tokio::test]
    async fn unknown_functions_and_arguments_are_pgrst202() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let token = jwt("service_role");
        let key = Some(token.as_str());

        let r = call(&emu, key, "no_such_function", json!({"b": 1, "a": 2})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(status, 404);
        assert_eq!(err["code"], "PGRST202");
        assert_eq!(
            err["message"],
            "Could not find the function public.no_such_function(a, b) in the schema cache"
        );
        assert_eq!(
            err["details"],
            "Searched for the function public.no_such_function with parameters a, b or with a \
             single unnamed json/jsonb parameter, but no matches were found in the schema cache."
        );
        assert_eq!(err["hint"], Value::Null);

        let r = call(
            &emu,
            key,
            "claim_download_jobs",
            json!({"p_wrker": "w", "p_worker_id": "w"}),
        )
        .await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(status, 404);
        assert_eq!(
            err["message"],
            "Could not find the function public.claim_download_jobs(p_worker_id, p_wrker) in \
             the schema cache"
        );

        // One key: singular "parameter".
        let r = call(&emu, key, "get_download_job", json!({"p_id": 1})).await;
        let (_, err, _) = error_of(r).await;
        assert_eq!(
            err["details"],
            "Searched for the function public.get_download_job with parameter p_id or with a \
             single unnamed json/jsonb parameter, but no matches were found in the schema cache."
        );

        // A required argument missing: no arguments at all.
        let r = call(&emu, key, "claim_download_jobs", json!({})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(status, 404);
        assert_eq!(
            err["message"],
            "Could not find the function public.claim_download_jobs without parameters in the \
             schema cache"
        );
        assert_eq!(
            err["details"],
            "Searched for the function public.claim_download_jobs without parameters or with a \
             single unnamed json/jsonb parameter, but no matches were found in the schema cache."
        );

        // Only POST.
        let r = reqwest::Client::new()
            .get(format!(
                "{}/rest/v1/rpc/douyin_worker_schema_version",
                emu.url
            ))
            .header("apikey", &token)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (405, Some("PGRST101")));
    }

    #[tokio::test]
    async fn bad_or_expired_tokens_are_401() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let claims = json!({"iss": "supabase", "ref": "test", "role": "service_role"});
        let forged = sign_jwt_with(&claims, "not-the-project-secret-not-the-project-secret");
        let expired = sign_jwt(&json!({"role": "service_role", "exp": now_secs() - 10}));
        let unknown_role = sign_jwt(&json!({"role": "postgres"}));
        let cases = [
            (forged.as_str(), "PGRST301"),
            ("not.a.jwt", "PGRST301"),
            ("garbage", "PGRST301"),
            (expired.as_str(), "PGRST303"),
            (unknown_role.as_str(), "22023"),
        ];
        // The gateway passes the project's anon key; PostgREST checks the bearer token.
        let anon = jwt("anon");
        for (key, code) in cases {
            let r = reqwest::Client::new()
                .post(format!(
                    "{}/rest/v1/rpc/douyin_worker_schema_version",
                    emu.url
                ))
                .header("apikey", &anon)
                .bearer_auth(key)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let (status, err, headers) = error_of(r).await;
            assert_eq!((status, err["code"].as_str()), (401, Some(code)), "{key}");
            assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
        }
        // No role claim: anon.
        let no_role = sign_jwt(&json!({"iss": "supabase"}));
        let r = call(&emu, Some(&no_role), "get_worker_stats", json!({})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("42501")));
        // A good key after all that.
        let good = jwt("service_role");
        let r = call(&emu, Some(&good), "douyin_worker_schema_version", json!({})).await;
        assert_eq!(
            r.text().await.unwrap(),
            douyin_worker::queue::SCHEMA_VERSION.to_string()
        );
    }

    #[tokio::test]
    async fn void_scalar_and_composite_shapes() {
        let db = fresh_pg().await;
        sqlx::raw_sql(
            "create function public.t_void() returns void language sql as 'select';
             revoke execute on function public.t_void() from public;
             grant execute on function public.t_void() to service_role;
             create type public.t_pair as (x integer, y text);
             create function public.t_pair(p_null boolean default false) returns public.t_pair
                 language sql as $$ select case when p_null then null else (10, 'five')::public.t_pair end $$;
             create function public.t_out(n integer, out num_plus_one integer)
                 language sql as $$ select n + 1 $$;
             create function public.t_null_int() returns integer language sql as 'select null::int';
             create function public.t_ints() returns setof integer language sql as 'select 1 union all select 2';
             create function public.t_tab() returns table (a text) language sql as $$ select 'A' $$;
             create function public.t_text(p_a text, p_b text default 'B') returns text
                 language sql as $$ select p_a || p_b $$;
             create function public.t_body(jsonb) returns jsonb language sql as $$ select $1 $$;",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let key = jwt("service_role");
        let key = Some(key.as_str());

        let r = call(&emu, key, "t_void", json!({})).await;
        assert_eq!(r.status().as_u16(), 204);
        assert!(r.headers().get("content-type").is_none());
        assert!(r.headers().get("content-length").is_none());
        assert_eq!(r.bytes().await.unwrap().len(), 0);
        // Not executable by anon (revoked from PUBLIC).
        let r = call(&emu, Some(PUBLISHABLE_KEY), "t_void", json!({})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (401, Some("42501")));

        let pair = json_200(call(&emu, key, "t_pair", json!({})).await).await;
        assert_eq!(pair, json!({"x": 10, "y": "five"}));
        let pair = json_200(call(&emu, key, "t_pair", json!({"p_null": true})).await).await;
        assert_eq!(pair, json!({"x": null, "y": null}));
        let out = json_200(call(&emu, key, "t_out", json!({"n": 5})).await).await;
        assert_eq!(out, json!({"num_plus_one": 6}));
        let r = call(&emu, key, "t_null_int", json!({})).await;
        assert_eq!(r.text().await.unwrap(), "null");
        let ints = json_200(call(&emu, key, "t_ints", json!({})).await).await;
        assert_eq!(ints, json!([1, 2]));
        let tab = json_200(call(&emu, key, "t_tab", json!({})).await).await;
        assert_eq!(tab, json!([{"a": "A"}]));
        let text = json_200(call(&emu, key, "t_text", json!({"p_a": "A"})).await).await;
        assert_eq!(text, json!("AB"));
        let text =
            json_200(call(&emu, key, "t_text", json!({"p_a": "A", "p_b": null})).await).await;
        assert_eq!(text, Value::Null);
        let whole = json_200(call(&emu, key, "t_body", json!([{"a": 1}])).await).await;
        assert_eq!(whole, json!([{"a": 1}]));
    }

    #[tokio::test]
    async fn raised_errors_map_to_statuses_and_roll_back() {
        let db = fresh_pg().await;
        sqlx::raw_sql(
            r#"create table public.t_log (v text);
             create function public.t_raise(p_code text) returns integer language plpgsql as $$
             begin
                 insert into public.t_log values (p_code);
                 if p_code = 'P0001' then
                     raise exception 'I refuse!' using detail = 'Pretty simple', hint = 'There is nothing you can do.';
                 elsif p_code = 'PGRST' then
                     raise sqlstate 'PGRST' using
                         message = '{"code":"123","message":"Payment Required","details":"Quota exceeded","hint":"Upgrade your plan"}',
                         detail = '{"status":402,"headers":{"X-Powered-By":"Nerd Rage"}}';
                 elsif p_code = 'PGRST-bad' then
                     raise sqlstate 'PGRST' using message = 'not json';
                 else
                     raise exception using errcode = p_code, message = 'raised ' || p_code;
                 end if;
                 return 1;
             end $$;
             grant all on public.t_log to service_role;"#,
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        let key = jwt("service_role");
        let key = Some(key.as_str());

        let r = call(&emu, key, "t_raise", json!({"p_code": "P0001"})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(status, 400);
        assert_eq!(
            Value::Object(err),
            json!({"code": "P0001", "message": "I refuse!", "details": "Pretty simple",
                   "hint": "There is nothing you can do."})
        );

        for (code, want) in [
            ("P0002", 500),
            ("PT409", 409),
            ("PT40A", 500),
            ("23505", 409),
            ("22023", 400),
            ("40001", 500),
            ("53300", 503),
            ("28000", 403),
        ] {
            let r = call(&emu, key, "t_raise", json!({"p_code": code})).await;
            let (status, err, _) = error_of(r).await;
            assert_eq!(status, want, "{code}: {err:?}");
            assert_eq!(err["code"], code);
            assert_eq!(err["message"], format!("raised {code}"));
            assert_eq!(err["details"], Value::Null);
        }

        let r = call(&emu, key, "t_raise", json!({"p_code": "PGRST"})).await;
        assert_eq!(r.status().as_u16(), 402);
        assert_eq!(header(&r, "x-powered-by"), Some("Nerd Rage"));
        let (_, err, _) = error_of(r).await;
        assert_eq!(err["code"], "123");
        assert_eq!(err["message"], "Payment Required");
        let r = call(&emu, key, "t_raise", json!({"p_code": "PGRST-bad"})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (500, Some("PGRST121")));

        // Every call rolled back.
        let logged: i64 = sqlx::query_scalar("select count(*) from public.t_log")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(logged, 0);

        // enqueue_download_job without any way to name the video raises P0001.
        let r = call(&emu, key, "enqueue_download_job", json!({})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(status, 400);
        assert_eq!(err["code"], "P0001");
        assert_eq!(
            err["message"],
            "enqueue_download_job: give p_video_id, p_url or p_douyin_id"
        );

        // A bad argument value is a data error (22P02) → 400.
        let r = call(
            &emu,
            key,
            "get_download_job",
            json!({"p_job_id": "not-a-uuid"}),
        )
        .await;
        let (status, err, _) = error_of(r).await;
        assert_eq!((status, err["code"].as_str()), (400, Some("22P02")));
    }

    #[tokio::test]
    async fn an_unreachable_database_is_503() {
        let db = fresh_pg().await;
        let emu = PostgrestEmulator::start(db.pool.clone()).await;
        db.pool.close().await;
        let key = jwt("service_role");
        let r = call(&emu, Some(&key), "douyin_worker_schema_version", json!({})).await;
        let (status, err, _) = error_of(r).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (503, Some("PGRST000")),
            "{err:?}"
        );
    }

    #[test]
    fn sqlstate_table() {
        let cases: &[(&str, bool, u16)] = &[
            ("42501", true, 401),
            ("42501", false, 403),
            ("P0001", false, 400),
            ("P0004", false, 500),
            ("PT402", false, 402),
            ("PTabc", false, 500),
            ("23503", false, 409),
            ("23502", false, 400),
            ("23514", false, 400),
            ("42883", false, 404),
            ("42P01", false, 404),
            ("25006", false, 405),
            ("25001", false, 500),
            ("08006", false, 503),
            ("53300", false, 503),
            ("53400", false, 500),
            ("57P01", false, 503),
            ("57014", false, 500),
            ("40P01", false, 500),
            ("2D000", false, 500),
            ("3B000", false, 500),
            ("54000", false, 500),
            ("55P03", false, 500),
            ("58030", false, 500),
            ("F0000", false, 500),
            ("HV000", false, 500),
            ("XX000", false, 500),
            ("09000", false, 500),
            ("21000", false, 500),
            ("0L000", false, 403),
            ("0P000", false, 403),
            ("28P01", false, 403),
            ("22P02", false, 400),
            ("42P02", false, 400),
        ];
        for &(code, anon, want) in cases {
            assert_eq!(status_for_sqlstate(code, anon).as_u16(), want, "{code}");
        }
    }
}
