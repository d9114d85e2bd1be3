//! The metadata database: SQLite (embedded default) or PostgreSQL (production),
//! behind one `Db` handle on sqlx's Any driver. Queries use `$N` placeholders, which
//! both backends accept; timestamps are epoch milliseconds; booleans are 0/1.
//! Where the SQL must differ (job claiming), `Db::backend` says which to use.
//!
//! Rows are read with `#[derive(sqlx::FromRow)]` and `query_as`; columns the Any
//! driver cannot decode straight into the field's type go through [`IntBool`] or
//! [`JsonObject`]; enums stored by name decode themselves (`stored_by_name!`).

pub mod classes;
pub mod history;
pub mod jobs;
pub mod messages;
pub mod overview;
pub mod progress;
pub mod record_events;
pub mod records;
pub mod sockets;
pub mod sweep;
pub mod uploads;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, AnyPool, Decode, Executor, Type};

use crate::domain::{
    AccountType, AvStatus, EventSourceType, FieldType, FileState, JobKind, JobState,
    RecordEventType, UploadState,
};

/// Which database server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the embedded default): one writer at a time, WAL mode.
    Sqlite,
    /// PostgreSQL: several nodes may share it.
    Postgres,
}

/// A handle to the metadata database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// The connection pool.
    pub pool: AnyPool,
    /// Which backend the pool talks to.
    pub backend: Backend,
}

/// How long start-up waits for the first PostgreSQL connection (the process exits
/// within 5 s when the database does not answer).
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects to `url` (`sqlite:` or `postgres://`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url)?;
        if backend == Backend::Postgres {
            // One connection first, outside the pool: the pool retries a refused
            // connection until its acquire timeout and then reports only "pool timed
            // out"; this fails at once with the server's (or the network's) reason.
            let probe = tokio::time::timeout(FIRST_CONNECT_TIMEOUT, async {
                use sqlx::Connection as _;
                sqlx::AnyConnection::connect_with(&options).await
            })
            .await
            .map_err(|_| {
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within 4 s",
                ))
            })??;
            let _ = sqlx::Connection::close(probe).await;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite {
                max_connections.min(8)
            } else {
                max_connections
            })
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // The busy timeout makes writers queue instead of failing with
                        // SQLITE_BUSY; first, since switching to WAL takes a lock too
                        // (a CLI command beside a busy server failed on it). WAL lets
                        // readers run beside the one writer.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Db { pool, backend })
    }

    /// Applies pending migrations for this backend.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&self.pool).await,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&self.pool).await,
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`): a deferred transaction that reads first and then
    /// writes fails with SQLITE_BUSY when another connection wrote in between, where
    /// an immediate one waits its turn (busy timeout).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A trivial query, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// The current time in epoch milliseconds, as stored in the database.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// True when `err` is a unique-constraint violation (both backends).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// A boolean stored as a 0/1 `BIGINT`. The Any driver decodes `bool` only from a
/// real boolean column, so row types read these with `#[sqlx(try_from = "IntBool")]`.
pub struct IntBool(bool);

impl Type<Any> for IntBool {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for IntBool {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(IntBool(<i64 as Decode<Any>>::decode(value)? != 0))
    }
}

impl From<IntBool> for bool {
    fn from(b: IntBool) -> bool {
        b.0
    }
}

/// A JSON object stored as text (the Any driver has no JSON type); row types read
/// it with `#[sqlx(try_from = "JsonObject")]`.
pub struct JsonObject(Map<String, Value>);

impl Type<Any> for JsonObject {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for JsonObject {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Any>>::decode(value)?;
        Ok(JsonObject(serde_json::from_str(text)?))
    }
}

impl From<JsonObject> for Map<String, Value> {
    fn from(o: JsonObject) -> Self {
        o.0
    }
}

/// A stored name that none of an enum's values has.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {name}")]
pub struct UnknownName {
    /// What the column holds, e.g. `upload state`.
    what: &'static str,
    /// The stored name.
    name: String,
}

/// `Type` and `Decode` (on the Any driver) for enums stored by name, so row types
/// read them like any column; an unknown name fails the row's decoding with an
/// [`UnknownName`]. (Not `#[sqlx(try_from = "String")]`: sqlx 0.9 loses the
/// message of a failed `try_from`.)
macro_rules! stored_by_name {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl Type<Any> for $ty {
            fn type_info() -> AnyTypeInfo {
                <String as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as Type<Any>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Any> for $ty {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                let name = <&str as Decode<Any>>::decode(value)?;
                <$ty>::parse(name).ok_or_else(|| {
                    UnknownName { what: $what, name: name.to_owned() }.into()
                })
            }
        }
    )*};
}

stored_by_name!(
    AccountType => "account type",
    FieldType => "field type",
    UploadState => "upload state",
    FileState => "file state",
    JobKind => "job kind",
    JobState => "job state",
    AvStatus => "av-status",
    RecordEventType => "record event type",
    EventSourceType => "event source type",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, sqlx::FromRow)]
    struct Decoded {
        #[sqlx(try_from = "IntBool")]
        flag: bool,
        #[sqlx(try_from = "JsonObject")]
        object: Map<String, Value>,
        state: UploadState,
    }

    async fn decode(db: &Db, select: &'static str) -> Result<Decoded, sqlx::Error> {
        sqlx::query_as(select).fetch_one(&db.pool).await
    }

    #[tokio::test]
    async fn row_decoders_convert_and_refuse_unknown_values() {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        let row = decode(
            &db,
            r#"SELECT 1 AS flag, '{"a": 1}' AS object, 'open' AS state"#,
        )
        .await
        .unwrap();
        assert!(row.flag);
        assert_eq!(Value::Object(row.object), serde_json::json!({ "a": 1 }));
        assert_eq!(row.state, UploadState::Open);
        assert!(
            !decode(&db, "SELECT 0 AS flag, '{}' AS object, 'failed' AS state")
                .await
                .unwrap()
                .flag
        );

        let err = decode(&db, "SELECT 0 AS flag, '{}' AS object, 'gone' AS state")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown upload state gone"),
            "{err}"
        );
        let err = decode(&db, "SELECT 0 AS flag, '[1]' AS object, 'open' AS state")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expected a map"), "{err}");
    }
}
