//! Database pools and migrations for SQLite (default) and PostgreSQL.

use std::str::FromStr;
use std::sync::{Arc, Once};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL `{0}` (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
    #[error("cannot open database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which database engine a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl FromStr for Backend {
    type Err = DbError;
    fn from_str(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl(url.to_owned()))
        }
    }
}

/// An open, migrated database.
#[derive(Clone)]
pub struct Database {
    pub pool: AnyPool,
    /// The URL it was opened with (other nodes of the deployment use it too).
    pub url: String,
    pub backend: Backend,
    /// SQLite allows one writer at a time; writers that queue here instead
    /// of in SQLite's busy handler (which sleeps up to 100 ms per retry)
    /// keep write latency flat under contention. `None` for PostgreSQL.
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Node-local state the layers above keep beside this database, one
    /// value per type, shared by every clone of the handle (the audit
    /// trail's refusal folding lives here without this layer naming it).
    extensions: Arc<std::sync::Mutex<Extensions>>,
}

type Extensions = std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>;

impl Database {
    /// Open `url`, creating an SQLite file when missing, and run migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend: Backend = url.parse()?;
        let (url, max) = match backend {
            Backend::Sqlite if url.contains('?') => (url.to_owned(), 8),
            Backend::Sqlite => (format!("{url}?mode=rwc"), 8),
            Backend::Postgres => (url.to_owned(), 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer;
                        // writers wait for each other instead of failing.
                        sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                        )
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(DbError::Connect)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Self {
            pool,
            url: url.to_owned(),
            backend,
            writer,
            extensions: Arc::default(),
        })
    }

    /// The node-local `T` kept beside this database, created on first use;
    /// every clone of this handle gets the same one.
    pub fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self
            .extensions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let any = map
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()) as Arc<dyn std::any::Any + Send + Sync>)
            .clone();
        drop(map);
        // The key is T's TypeId, so the value is a T.
        any.downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }

    /// Begin a write transaction, first queueing behind other writers when
    /// the database is SQLite.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = match &self.writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _guard: guard })
    }
}

/// A write transaction holding the SQLite writer slot until it ends.
pub struct WriteTx {
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commit the transaction and release the writer slot.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}
