//! `herald server run --config server.toml`: the CA of one trust domain.

use crate::config::ConfigFile as _;
use std::path::PathBuf;

use clap::Subcommand;

use super::runtime::{init_role_logging, run_until_signal};
use super::CliError;
use crate::config::ServerConfig;

/// `herald server ...`
#[derive(Debug, Subcommand)]
pub(super) enum ServerCmd {
    /// Start the server from a TOML configuration file.
    Run {
        /// Path of server.toml (see deploy/server.toml for every key).
        #[arg(long)]
        config: PathBuf,
    },
}

pub(super) fn run(cmd: ServerCmd, log_flag: Option<&str>) -> Result<(), CliError> {
    let ServerCmd::Run { config } = cmd;
    // Before the runtime makes its threads (and their malloc arenas).
    crate::heap::tune_allocator();
    let config = ServerConfig::load(&config).map_err(|e| CliError::bad_input(&e))?;
    init_role_logging(log_flag, &config.logging);
    let start = crate::server::run::start(&config);
    run_until_signal(start, crate::server::run::ServerHandle::shutdown)
}
