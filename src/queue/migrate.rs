//! Schema migrations, embedded in the binary.
//!
//! PostgreSQL: the files in `migrations/` are idempotent, so they can also be pasted, in
//! order, into the Supabase SQL editor. `douyin-worker migrate` applies each file that is new
//! or changed since it was last applied (recorded with a checksum in
//! `douyin_worker_migrations`), one transaction per file, each under a transaction-level
//! advisory lock so that runs starting together do not race (also through a
//! transaction-mode connection pooler, where a session-level lock would not be held).
//!
//! SQLite: one schema file with the same tables, applied the same way.

use sha2::{Digest, Sha256};
use sqlx::{PgPool, SqlitePool};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Order and identity.
    pub version: i32,
    /// The file name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

impl Migration {
    /// The hex SHA-256 of the SQL, recorded when applied.
    pub fn checksum(&self) -> String {
        format!("{:x}", Sha256::digest(self.sql.as_bytes()))
    }
}

/// The PostgreSQL migrations, in order.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_schema.sql",
        sql: include_str!("../../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_queue.sql",
        sql: include_str!("../../migrations/0002_queue.sql"),
    },
    Migration {
        version: 3,
        name: "0003_compat_and_grants.sql",
        sql: include_str!("../../migrations/0003_compat_and_grants.sql"),
    },
    Migration {
        version: 4,
        name: "0004_admin.sql",
        sql: include_str!("../../migrations/0004_admin.sql"),
    },
    Migration {
        version: 5,
        name: "0005_row_security.sql",
        sql: include_str!("../../migrations/0005_row_security.sql"),
    },
    Migration {
        version: 6,
        name: "0006_one_row_per_video.sql",
        sql: include_str!("../../migrations/0006_one_row_per_video.sql"),
    },
    Migration {
        version: 7,
        name: "0007_video_events.sql",
        sql: include_str!("../../migrations/0007_video_events.sql"),
    },
    Migration {
        version: 8,
        name: "0008_covers.sql",
        sql: include_str!("../../migrations/0008_covers.sql"),
    },
];

/// The PostgreSQL files as a person pastes them: `migrations/0001_schema.sql, 0002_queue.sql,
/// ... and 0005_row_security.sql` (for the messages that tell how to apply them by hand).
pub(crate) fn postgres_files_in_order() -> String {
    let names: Vec<&str> = POSTGRES.iter().map(|m| m.name).collect();
    match names.split_last() {
        Some((last, [])) => format!("migrations/{last}"),
        Some((last, rest)) => format!("migrations/{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The SQLite schema (the embedded default's queue), in order.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "sqlite/0001_schema.sql",
        sql: include_str!("sqlite_schema.sql"),
    },
    Migration {
        version: 2,
        name: "sqlite/0002_merged_into.sql",
        sql: include_str!("sqlite_merged_into.sql"),
    },
];

/// Which files a migration run applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files applied now (new or changed).
    pub applied: Vec<&'static str>,
    /// Files already applied with the same content.
    pub unchanged: Vec<&'static str>,
}

/// A failed migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A file failed; the transaction was rolled back.
    #[error("migration {name} failed: {source}")]
    File {
        /// The file.
        name: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached or the bookkeeping failed.
    #[error("migration bookkeeping failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Lock key for migrations ("dywk" + "migr").
const LOCK_KEY: i64 = 0x6479_776b_6d69_6772;

/// Applies the PostgreSQL migrations that are new or changed.
pub async fn apply_postgres(pool: &PgPool) -> Result<MigrationReport, MigrateError> {
    let mut conn = pool.acquire().await?;
    apply_postgres_on(&mut conn).await
}

/// [`apply_postgres`] on one connection.
///
/// Each file is checked and applied in one transaction that first takes a transaction-level
/// advisory lock, then reads whether the file is already recorded with the same checksum: of
/// two runs at once, the second waits for the first's file and then finds it done. Nothing
/// outlives a transaction (no session lock, no named prepared statement), so this is safe
/// through a transaction-mode pooler, where consecutive transactions of one client may run
/// on different server connections, as well as on a direct connection.
pub async fn apply_postgres_on(
    conn: &mut sqlx::PgConnection,
) -> Result<MigrationReport, MigrateError> {
    let mut report = MigrationReport::default();
    for m in POSTGRES {
        if apply_postgres_file(&mut *conn, m).await? {
            report.applied.push(m.name);
        } else {
            report.unchanged.push(m.name);
        }
    }
    Ok(report)
}

/// Applies `m` unless it is recorded with the same checksum; whether it applied it.
async fn apply_postgres_file(
    conn: &mut sqlx::PgConnection,
    m: &Migration,
) -> Result<bool, MigrateError> {
    let checksum = m.checksum();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // Statements are unnamed (`persistent(false)`): a named one would outlive the
    // transaction on a pooler's shared server connection.
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    let has_table: bool =
        sqlx::query_scalar("select to_regclass('public.douyin_worker_migrations') is not null")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
    let done = has_table
        && sqlx::query_scalar::<_, bool>(
            "select exists (select from public.douyin_worker_migrations
                             where version = $1 and checksum = $2)",
        )
        .bind(m.version)
        .bind(&checksum)
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
    if done {
        tx.commit().await?;
        return Ok(false);
    }
    let file_err = |source| MigrateError::File {
        name: m.name,
        source,
    };
    sqlx::raw_sql("set local client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(m.sql)
        .execute(&mut *tx)
        .await
        .map_err(file_err)?;
    sqlx::query(
        "insert into public.douyin_worker_migrations (version, name, checksum) values ($1, $2, $3)
         on conflict (version) do update set name = excluded.name, checksum = excluded.checksum,
             applied_at = now()",
    )
    .bind(m.version)
    .bind(m.name)
    .bind(&checksum)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Applies the SQLite schema files that are new or changed.
pub(crate) async fn apply_sqlite(pool: &SqlitePool) -> Result<MigrationReport, MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(
        "create table if not exists douyin_worker_migrations (
             version integer primary key, name text not null, checksum text,
             applied_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    )
    .execute(&mut *conn)
    .await?;
    let recorded: Vec<(i64, Option<String>)> =
        sqlx::query_as("select version, checksum from douyin_worker_migrations")
            .fetch_all(&mut *conn)
            .await?;
    let mut report = MigrationReport::default();
    for m in SQLITE {
        let checksum = m.checksum();
        if recorded
            .iter()
            .any(|(v, c)| *v == i64::from(m.version) && c.as_deref() == Some(checksum.as_str()))
        {
            report.unchanged.push(m.name);
            continue;
        }
        // IMMEDIATE: two processes creating the file together wait on the busy timeout
        // instead of failing on a lock upgrade.
        let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
        // Another process may have applied it since the read above: a file that is not
        // idempotent (an `alter table ... add column`) must not run twice.
        let done: Option<Option<String>> =
            sqlx::query_scalar("select checksum from douyin_worker_migrations where version = ?")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.flatten().as_deref() == Some(checksum.as_str()) {
            tx.commit().await?;
            report.unchanged.push(m.name);
            continue;
        }
        sqlx::raw_sql(m.sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| MigrateError::File {
                name: m.name,
                source,
            })?;
        sqlx::query(
            "insert into douyin_worker_migrations (version, name, checksum) values (?, ?, ?)
             on conflict (version) do update set name = excluded.name, checksum = excluded.checksum",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(&checksum)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        report.applied.push(m.name);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_order_and_names_match_files() {
        for list in [POSTGRES, SQLITE] {
            // Numbers are handed out ahead to changes made side by side, so a branch may
            // skip one; the order is what counts.
            assert_eq!(list[0].version, 1);
            for pair in list.windows(2) {
                assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
            }
            for m in list {
                assert!(!m.sql.trim().is_empty());
            }
        }
        for m in POSTGRES {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} must start with its version",
                m.name
            );
        }
        // The last file records the version the worker checks at start-up.
        assert!(
            POSTGRES
                .last()
                .unwrap()
                .sql
                .contains(&format!("$$ select {} $$", crate::queue::SCHEMA_VERSION))
        );
    }

    #[test]
    fn the_paste_list_names_every_file_in_order() {
        let list = postgres_files_in_order();
        assert!(
            list.starts_with("migrations/0001_schema.sql, 0002_queue.sql, "),
            "{list}"
        );
        assert!(
            list.ends_with(&format!(" and {}", POSTGRES.last().unwrap().name)),
            "{list}"
        );
        assert_eq!(list.matches(".sql").count(), POSTGRES.len());
    }

    #[test]
    fn every_file_records_itself_for_the_sql_editor_path() {
        for m in POSTGRES {
            assert!(
                m.sql
                    .contains(&format!("values ({}, '{}')", m.version, m.name)),
                "{} must insert its own row into douyin_worker_migrations",
                m.name
            );
        }
    }
}
