//! The SQLite queue's value forms: its one timestamp text, UUID and JSON columns, the
//! Douyin id in a link, and its errors with context.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::time::Duration;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::TIMESTAMP_FORMAT;
use crate::queue::{Lease, QueueError};

/// Formats a time the way the SQLite queue stores it (`TIMESTAMP_FORMAT`), truncated to
/// milliseconds. Bind this, never a `DateTime` (sqlx would write another form).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.trunc_subsecs(3).format(TIMESTAMP_FORMAT).to_string()
}

/// Now, at the precision the queue stores.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The lease length as the PostgreSQL functions take it: whole seconds, at least one.
pub(super) fn lease_secs(lease: Duration) -> i64 {
    lease.as_secs().clamp(1, i32::MAX as u64) as i64
}

/// A u64 as the `bigint` the PostgreSQL backend binds.
pub(super) fn clamp_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// JSON for a TEXT column: `None` and JSON `null` are SQL NULL (as `jsonb_to_recordset` reads a
/// JSON null).
pub(super) fn json_text(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(Value::to_string)
}

/// Reads a JSON TEXT column. Text that is not JSON (written by someone else) is logged and
/// read as absent rather than failing the whole batch (and, for a claim, blocking the queue).
pub(super) fn json_column(row: &SqliteRow, column: &str) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    Ok(text.and_then(|t| match serde_json::from_str(&t) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(column, error = %e, "ignoring a value that is not JSON");
            None
        }
    }))
}

/// Parses a uuid read as text.
pub(super) fn parse_uuid(s: &str) -> Result<Uuid, sqlx::Error> {
    Uuid::parse_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The `{"job_id", "lease_id"}` item of a batch, as text uuids.
pub(super) fn lease_item(l: &Lease) -> Value {
    json!({
        "job_id": l.job_id.hyphenated().to_string(),
        "lease_id": l.lease_id.hyphenated().to_string(),
    })
}

/// Reads a uuid TEXT column.
pub(super) fn uuid_column(row: &SqliteRow, column: &str) -> Result<Uuid, sqlx::Error> {
    Ok(row.try_get::<Hyphenated, _>(column)?.into_uuid())
}

/// The Douyin (aweme) id in a link, as `enqueue_download_job` finds it: a link that is only
/// 8 to 25 digits, else the first `/video/ID`, `/note/ID`, `/slides/ID`, `?modal_id=ID`,
/// `&modal_id=ID`, `?vid=ID` or `&vid=ID` with an ID of 8 to 25 digits (longer runs of digits
/// give their first 25, as the regex does). Short links (`v.douyin.com/...`) have none.
pub fn douyin_id_from_url(url: &str) -> Option<String> {
    let trimmed = url.trim();
    if (8..=25).contains(&trimmed.len()) && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Some(trimmed.to_owned());
    }
    const MARKERS: [&[u8]; 7] = [
        b"/video/",
        b"/note/",
        b"/slides/",
        b"?modal_id=",
        b"&modal_id=",
        b"?vid=",
        b"&vid=",
    ];
    let bytes = trimmed.as_bytes();
    for start in 0..bytes.len() {
        for marker in MARKERS {
            if !bytes[start..].starts_with(marker) {
                continue;
            }
            let from = start + marker.len();
            let digits = bytes[from..]
                .iter()
                .take(25)
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits >= 8 {
                // ASCII digits: always a char boundary.
                return Some(trimmed[from..from + digits].to_owned());
            }
        }
    }
    None
}

/// Maps an sqlx error (a missing table or column is a schema problem, see `QueueError`).
pub(super) fn db_error(e: sqlx::Error) -> QueueError {
    QueueError::from(e)
}

/// The same error with `context` in front of its message.
pub(super) fn with_context(e: QueueError, context: &str) -> QueueError {
    match e {
        QueueError::Unavailable(m) => QueueError::Unavailable(format!("{context}: {m}")),
        QueueError::Database(m) => QueueError::Database(format!("{context}: {m}")),
        QueueError::Schema(m) => QueueError::Schema(format!("{context}: {m}")),
        QueueError::PermissionDenied(m) => QueueError::PermissionDenied(format!("{context}: {m}")),
        QueueError::Rejected(m) => QueueError::Rejected(format!("{context}: {m}")),
    }
}
