//! How to reach the PostgreSQL database: the connection string (kept out of
//! logs and error messages, with its password redacted), the pool size and
//! the TLS mode.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::super::StoreError;

/// A libpq connection string, URL (`postgres://user:pw@host/db`) or
/// key-value (`host=… user=… password=…`). Its `Debug` and
/// [`ConnectionString::redacted`] forms never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString(String);

impl ConnectionString {
    /// Wraps a connection string as written by the operator.
    pub fn new(value: impl Into<String>) -> Self {
        ConnectionString(value.into().trim().to_owned())
    }

    /// The string itself: for the client library and test databases only.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }

    /// The string with any password replaced by `***`: safe to print.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// Parses the string as the client library does; the error names the
    /// redacted string, never the password.
    pub fn parse(&self) -> Result<tokio_postgres::Config, StoreError> {
        tokio_postgres::Config::from_str(&self.0).map_err(|e| {
            StoreError::Setup(format!(
                "connection string {:?} is not valid: {e}",
                self.redacted()
            ))
        })
    }

    /// The same connection string with the database name replaced.
    pub fn with_dbname(&self, dbname: &str) -> ConnectionString {
        if is_url(&self.0) {
            if let Ok(mut url) = url::Url::parse(&self.0) {
                url.set_path(&format!("/{dbname}"));
                return ConnectionString(url.to_string());
            }
        }
        // In the key-value form a later key overrides an earlier one.
        ConnectionString(format!("{} dbname={dbname}", self.0))
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionString({:?})", self.redacted())
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Replaces the password of a URL (`user:pw@`, `?password=`) or of the
/// key-value form (`password=pw`, `password='p w'`) by `***`.
fn redact(s: &str) -> String {
    if is_url(s) {
        return match url::Url::parse(s) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" { "***".into() } else { v };
                        (k.into_owned(), v.into_owned())
                    })
                    .collect();
                if !pairs.is_empty() {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                url.to_string()
            }
            // Unparseable: show nothing that could be the password.
            Err(_) => "postgres://(unparseable URL)".into(),
        };
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        let Some(value) = trimmed.strip_prefix('=') else {
            out.push_str("password");
            rest = after_key;
            continue;
        };
        out.push_str("password=***");
        let value = value.trim_start();
        rest = skip_value(value);
    }
    out.push_str(rest);
    out
}

/// What follows a key-value value (quoted with `'` and `\` escapes, or up
/// to the next whitespace).
fn skip_value(value: &str) -> &str {
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return &quoted[i + 1..],
                _ => {}
            }
        }
        return "";
    }
    match value.find(char::is_whitespace) {
        Some(i) => &value[i..],
        None => "",
    }
}

/// TLS to PostgreSQL, named as libpq names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is
    /// not verified (libpq's default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is not verified (as libpq's
    /// `require`): protects against eavesdropping, not impersonation.
    Require,
    /// TLS, with the server's chain verified against `root_cert` and its
    /// name against the host connected to.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "{other:?} is not one of \"disable\", \"prefer\", \"require\", \"verify-full\""
                ))
            }
        })
    }
}

/// Everything [`super::PostgresStore::connect`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Where the database is.
    pub url: ConnectionString,
    /// Most connections the server holds open at once.
    pub pool_size: usize,
    /// TLS to the database.
    pub sslmode: SslMode,
    /// PEM roots that verify the database's certificate (`verify-full`).
    pub root_cert: Option<PathBuf>,
}

/// Connections in the pool unless configured: enough for the blocking
/// store calls of a busy server without crowding PostgreSQL's default
/// `max_connections` (100) when several servers share it.
pub const DEFAULT_POOL_SIZE: usize = 8;

impl PostgresSettings {
    /// Settings for `url` with every other key at its default.
    pub fn new(url: ConnectionString) -> Self {
        PostgresSettings {
            url,
            pool_size: DEFAULT_POOL_SIZE,
            sslmode: SslMode::default(),
            root_cert: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (given, shown) in [
            (
                "postgres://herald:s3cret@db.example:5432/herald",
                "postgres://herald:***@db.example:5432/herald",
            ),
            (
                "postgresql://db/herald?password=s3cret&sslmode=disable",
                "postgresql://db/herald?password=***&sslmode=disable",
            ),
            (
                "host=db user=herald password=s3cret dbname=h",
                "host=db user=herald password=*** dbname=h",
            ),
            (
                "host=db password = 'with \\' quote s3cret' dbname=h",
                "host=db password=*** dbname=h",
            ),
            ("host=db user=postgres", "host=db user=postgres"),
        ] {
            let c = ConnectionString::new(given);
            assert_eq!(c.redacted(), shown);
            assert!(!format!("{c:?}").contains("s3cret"));
        }
        let err = ConnectionString::new("host=db password=s3cret port=notaport")
            .parse()
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn dbname_is_replaced() {
        let url = ConnectionString::new("postgres://u@h:5432/test");
        assert_eq!(url.with_dbname("x").expose(), "postgres://u@h:5432/x");
        let kv = ConnectionString::new("host=h dbname=test");
        let parsed = kv.with_dbname("x").parse().unwrap();
        assert_eq!(parsed.get_dbname(), Some("x"));
    }
}
