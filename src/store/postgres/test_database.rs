//! A throwaway database for tests: created on the server named by
//! `HERALD_TEST_PG_URL` (default [`DEFAULT_TEST_URL`]), dropped (forcibly,
//! with whatever connections remain) when the value is dropped. Used by
//! Herald's own unit and integration tests; not part of the server.

use super::ConnectionString;

/// Where tests find PostgreSQL unless `HERALD_TEST_PG_URL` says otherwise.
pub const DEFAULT_TEST_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A database of its own for one test.
#[derive(Debug)]
pub struct TempDatabase {
    admin: ConnectionString,
    name: String,
    /// Connects to the new database.
    pub url: ConnectionString,
}

/// The connection string tests use to reach the server (not the new
/// database): `HERALD_TEST_PG_URL` or [`DEFAULT_TEST_URL`].
pub fn admin_url() -> ConnectionString {
    ConnectionString::new(
        std::env::var("HERALD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned()),
    )
}

impl TempDatabase {
    /// Creates `herald_test_<random>`; the error says why the server could
    /// not be used (typically: it is not running).
    pub fn create() -> Result<TempDatabase, String> {
        let admin = admin_url();
        let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
        admin_statement(&admin, format!("CREATE DATABASE {name}"))?;
        Ok(TempDatabase {
            url: admin.with_dbname(&name),
            admin,
            name,
        })
    }

    /// A fresh database, or `None` (the test is skipped, loudly) when
    /// PostgreSQL cannot be reached outside CI. Under CI (`CI` set) an
    /// unreachable PostgreSQL fails the calling test: this panics, and is
    /// meant for tests only.
    pub fn for_test() -> Option<TempDatabase> {
        match TempDatabase::create() {
            Ok(db) => Some(db),
            Err(e) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required under CI: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL unreachable ({e}); set HERALD_TEST_PG_URL");
                None
            }
        }
    }

    /// The connection string of the new database, password included (a
    /// test writes it into the server's configuration).
    pub fn url_text(&self) -> &str {
        self.url.expose()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin_statement(&self.admin, sql) {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}

/// Runs one statement on the admin connection, on a thread and runtime of
/// its own so that it works from sync and async callers alike.
fn admin_statement(admin: &ConnectionString, sql: String) -> Result<(), String> {
    let admin = admin.clone();
    let run = move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let config = admin.parse().map_err(|e| e.to_string())?;
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", admin.redacted()))?;
            let conn = tokio::spawn(conn);
            let result = client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {e}"));
            drop(client);
            let _ = conn.await;
            result
        })
    };
    std::thread::spawn(run)
        .join()
        .map_err(|_| "the test database thread panicked".to_owned())?
}
