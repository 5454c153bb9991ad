//! The `[store]` table of `server.toml`: which datastore the server keeps
//! its state in. `kind = "sled"` (the default) is the embedded store in the
//! data directory; `kind = "postgres"` is a PostgreSQL database, reached by
//! exactly one of `url`, `url_env` (an environment variable holding it) or
//! `url_file` (a file holding it), so that no password need sit in the
//! configuration. The connection string is never shown with its password.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;
use crate::store::postgres::{ConnectionString, PostgresSettings, SslMode, DEFAULT_POOL_SIZE};

/// The most pooled connections accepted: far beyond any need, small enough
/// that a typo cannot exhaust the database's `max_connections` by itself.
const MAX_POOL_SIZE: u32 = 1000;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    pool_size: Option<u32>,
    sslmode: Option<String>,
    root_cert: Option<PathBuf>,
}

/// Where the server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreConfig {
    /// The embedded sled store under `data_dir/store`.
    #[default]
    Sled,
    /// A PostgreSQL database.
    Postgres(PostgresSettings),
}

impl StoreConfig {
    /// Validates the `[store]` table (absent: sled).
    pub(super) fn from_toml(
        value: Option<&toml::Value>,
        path: &Path,
    ) -> Result<StoreConfig, ConfigError> {
        let raw: RawStore = super::sub_table(value, path, "store")?;
        let c = Checker { path };
        match raw.kind.as_deref().unwrap_or("sled") {
            "sled" => {
                let postgres_keys = [
                    ("store.url", raw.url.is_some()),
                    ("store.url_env", raw.url_env.is_some()),
                    ("store.url_file", raw.url_file.is_some()),
                    ("store.pool_size", raw.pool_size.is_some()),
                    ("store.sslmode", raw.sslmode.is_some()),
                    ("store.root_cert", raw.root_cert.is_some()),
                ];
                match postgres_keys.iter().find(|(_, set)| *set) {
                    Some((key, _)) => Err(c.invalid(key, "is only used with kind = \"postgres\"")),
                    None => Ok(StoreConfig::Sled),
                }
            }
            "postgres" => postgres(raw, &c).map(StoreConfig::Postgres),
            other => Err(c.invalid(
                "store.kind",
                format!("{other:?} is not one of \"sled\", \"postgres\""),
            )),
        }
    }
}

fn postgres(raw: RawStore, c: &Checker<'_>) -> Result<PostgresSettings, ConfigError> {
    let url = match (raw.url, raw.url_env, raw.url_file) {
        (Some(url), None, None) => ConnectionString::new(url),
        (None, Some(var), None) => match std::env::var(&var) {
            Ok(url) => ConnectionString::new(url),
            Err(e) => {
                return Err(c.invalid(
                    "store.url_env",
                    format!("environment variable {var:?}: {e}"),
                ))
            }
        },
        (None, None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(url) => ConnectionString::new(url),
            Err(e) => {
                return Err(c.invalid(
                    "store.url_file",
                    format!("cannot read {}: {e}", file.display()),
                ))
            }
        },
        _ => {
            return Err(c.invalid(
                "store.url",
                "kind = \"postgres\" needs exactly one of url, url_env, url_file",
            ))
        }
    };
    if url.redacted().is_empty() {
        return Err(c.invalid("store.url", "the connection string is empty"));
    }
    url.parse().map_err(|e| c.invalid("store.url", e))?;
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE as u32);
    if pool_size == 0 || pool_size > MAX_POOL_SIZE {
        return Err(c.invalid(
            "store.pool_size",
            format!("must be between 1 and {MAX_POOL_SIZE}, got {pool_size}"),
        ));
    }
    let sslmode: SslMode = match &raw.sslmode {
        Some(s) => s.parse().map_err(|e| c.invalid("store.sslmode", e))?,
        None => SslMode::default(),
    };
    match (sslmode, &raw.root_cert) {
        (SslMode::VerifyFull, None) => {
            return Err(c.invalid(
                "store.root_cert",
                "is required with sslmode = \"verify-full\"",
            ))
        }
        (SslMode::VerifyFull, Some(p)) => c.non_empty_path("store.root_cert", p)?,
        (_, Some(_)) => {
            return Err(c.invalid(
                "store.root_cert",
                "is only used with sslmode = \"verify-full\"",
            ))
        }
        (_, None) => {}
    }
    Ok(PostgresSettings {
        url,
        pool_size: pool_size as usize,
        sslmode,
        root_cert: raw.root_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(table: &str) -> Result<StoreConfig, ConfigError> {
        let value: toml::Value = toml::from_str(table).unwrap();
        StoreConfig::from_toml(Some(&value), Path::new("server.toml"))
    }

    fn error(table: &str) -> String {
        parse(table).unwrap_err().to_string()
    }

    #[test]
    fn defaults_to_sled() {
        assert_eq!(
            StoreConfig::from_toml(None, Path::new("s")).unwrap(),
            StoreConfig::Sled
        );
        assert_eq!(parse("kind = \"sled\"").unwrap(), StoreConfig::Sled);
    }

    #[test]
    fn postgres_settings() {
        let StoreConfig::Postgres(s) = parse(
            "kind = \"postgres\"\nurl = \"postgres://h:pw@db/herald\"\npool_size = 3\nsslmode = \"require\"",
        )
        .unwrap() else {
            panic!("not postgres")
        };
        assert_eq!(s.pool_size, 3);
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.url.redacted(), "postgres://h:***@db/herald");

        std::env::set_var("HERALD_STORE_TEST_URL", "host=db user=h password=pw");
        let from_env = parse("kind = \"postgres\"\nurl_env = \"HERALD_STORE_TEST_URL\"").unwrap();
        let StoreConfig::Postgres(s) = from_env else {
            panic!("not postgres")
        };
        assert_eq!(s.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(s.url.redacted(), "host=db user=h password=***");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "host=db password=pw\n").unwrap();
        let from_file = parse(&format!(
            "kind = \"postgres\"\nurl_file = {:?}\nsslmode = \"verify-full\"\nroot_cert = \"/ca.pem\"",
            file
        ))
        .unwrap();
        assert!(matches!(from_file, StoreConfig::Postgres(s) if s.sslmode == SslMode::VerifyFull));
    }

    #[test]
    fn mistakes_are_named() {
        for (table, key, why) in [
            ("kind = \"mysql\"", "store.kind", "not one of"),
            ("kind = \"postgres\"", "store.url", "exactly one"),
            (
                "kind = \"postgres\"\nurl = \"host=a\"\nurl_env = \"X\"",
                "store.url",
                "exactly one",
            ),
            ("url = \"host=a\"", "store.url", "only used with kind"),
            (
                "kind = \"postgres\"\nurl_env = \"HERALD_NO_SUCH_VARIABLE\"",
                "store.url_env",
                "HERALD_NO_SUCH_VARIABLE",
            ),
            (
                "kind = \"postgres\"\nurl = \"host=a\"\npool_size = 0",
                "store.pool_size",
                "between",
            ),
            (
                "kind = \"postgres\"\nurl = \"host=a\"\nsslmode = \"verify-ca\"",
                "store.sslmode",
                "not one of",
            ),
            (
                "kind = \"postgres\"\nurl = \"host=a\"\nsslmode = \"verify-full\"",
                "store.root_cert",
                "required",
            ),
            (
                "kind = \"postgres\"\nurl = \"host=a password=pw port=x\"",
                "store.url",
                "not valid",
            ),
        ] {
            let msg = error(table);
            assert!(msg.contains(key) && msg.contains(why), "{table}: {msg}");
            assert!(!msg.contains("pw port"), "password shown: {msg}");
        }
        assert!(
            error("kind = \"postgres\"\nurl = \"host=a\"\npassword = \"x\"")
                .contains("unknown field")
        );
    }
}
