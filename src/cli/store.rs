//! `herald store migrate --from <data dir> --to <postgres url>`: moves one
//! server's state from its sled store to an empty PostgreSQL database.
//! Offline: the server must be stopped (sled's lock refuses a running
//! server's directory anyway).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::CliError;
use crate::store::migrate::{sled_to_postgres, MigrateError};
use crate::store::postgres::{ConnectionString, PostgresSettings, PostgresStore, SslMode};
use crate::store::{SledStore, StoreError};

/// `herald store ...`
#[derive(Debug, Subcommand)]
pub(super) enum StoreCmd {
    /// Copy a stopped server's sled store into an empty PostgreSQL database.
    Migrate {
        /// The server's data directory (`data_dir` of server.toml).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL connection string (URL or key-value form). Prefer
        /// HERALD_STORE_URL to keep a password out of the process list.
        #[arg(long, env = "HERALD_STORE_URL", hide_env_values = true)]
        to: String,
        /// TLS to PostgreSQL: disable, prefer, require, verify-full.
        #[arg(long, default_value = "prefer")]
        sslmode: String,
        /// PEM roots of the database's certificate (verify-full).
        #[arg(long)]
        root_cert: Option<PathBuf>,
    },
}

/// sled 0.34 reports a store held by a running server as an I/O error of
/// kind `Other` whose text is "could not acquire lock on ...: WouldBlock":
/// say what it means instead.
fn sled_open_failed(store_dir: &Path, e: &StoreError) -> CliError {
    if let StoreError::Sled {
        source: sled::Error::Io(io),
        ..
    } = e
    {
        if io.to_string().starts_with("could not acquire lock") {
            return CliError::Failed(format!(
                "--from: the sled store {} is locked by a running herald; stop the server first",
                store_dir.display()
            ));
        }
    }
    CliError::failed_in(format_args!("sled store {}", store_dir.display()), e)
}

pub(super) fn run(cmd: StoreCmd) -> Result<(), CliError> {
    let StoreCmd::Migrate {
        from,
        to,
        sslmode,
        root_cert,
    } = cmd;
    let sslmode: SslMode = sslmode
        .parse()
        .map_err(|e: String| CliError::BadInput(format!("--sslmode: {e}")))?;
    let url = ConnectionString::new(to);
    url.parse()
        .map_err(|e| CliError::bad_input_in("--to", &e))?;
    let store_dir = from.join("store");
    if !store_dir.is_dir() {
        return Err(CliError::BadInput(format!(
            "--from: {} holds no sled store (no store/ directory)",
            from.display()
        )));
    }
    let source = SledStore::open(&store_dir).map_err(|e| sled_open_failed(&store_dir, &e))?;
    let settings = PostgresSettings {
        sslmode,
        root_cert,
        ..PostgresSettings::new(url.clone())
    };
    let target = PostgresStore::connect(&settings)
        .map_err(|e| CliError::failed_in(format_args!("PostgreSQL {}", url.redacted()), &e))?;
    let counts = sled_to_postgres(&source, &target).map_err(|e| match e {
        MigrateError::TargetNotEmpty => CliError::BadInput(format!("--to {}: {e}", url.redacted())),
        e => CliError::failed(&e),
    })?;
    println!("migrated {} to {}", store_dir.display(), url.redacted());
    for (family, n) in [
        ("registration entries", counts.entries),
        ("agents", counts.agents),
        ("join tokens", counts.join_tokens),
        ("bundles", counts.bundles),
        ("federation relationships", counts.federation_relationships),
        ("authorities", counts.authorities),
        ("issuance records", counts.issuances),
    ] {
        println!("{n:>8} {family}");
    }
    Ok(())
}
