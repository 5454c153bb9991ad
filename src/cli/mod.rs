//! The `herald` command line: one file per command group.
//!
//! Every command reports failure as one line on stderr, `herald: <what went
//! wrong>`, and an exit code: 2 for bad input (a flag, a file, an ID), 1 for
//! a failure while doing the work. Nothing here panics on input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

mod admin_client;
mod agent_run;
mod agents;
mod api;
mod authority;
mod bundle;
mod check;
mod check_live;
mod data_dir;
mod dev;
mod entry;
mod error;
mod federated_bundle;
mod federation;
mod helper;
mod jwt;
mod mint;
mod oidc;
mod paging;
mod print;
mod runtime;
mod server;
mod token;
mod x509;

/// Herald: SPIFFE workload identity. A server is the CA of one trust domain;
/// an agent on each node attests workloads and serves them SVIDs over the
/// SPIFFE Workload API.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    /// Default: warn for commands, the config file's log_level for roles.
    #[arg(long, global = true, env = "HERALD_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// The command groups (shared/design/ARCHITECTURE.md, "Roles").
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the CA of one trust domain (`herald server run --config server.toml`).
    #[command(subcommand)]
    Server(server::ServerCmd),
    /// Run a node agent, or manage attested agents through the server.
    #[command(subcommand)]
    Agent(agents::AgentCmd),
    /// Run server and agent in one process with zero configuration, for trying Herald out.
    Dev(dev::DevArgs),
    /// The groups that need nothing but their own flags (boxed: the flags
    /// of some are large).
    #[command(flatten)]
    Group(Box<Group>),
    /// Check a configuration file, or vet a running server (`--socket`).
    Check(check::CheckArgs),
    /// Ask a running server or agent whether it is healthy (for probes).
    Healthcheck(check::HealthcheckArgs),
    /// A Workload API client, for operators debugging a node.
    #[command(subcommand)]
    Api(api::ApiCmd),
    /// Keep a program's SVID, key, bundle and JWT-SVIDs fresh in files, and reload it.
    Helper(Box<helper::HelperArgs>),
    /// Serve the OIDC discovery document and JWKS of the trust domain's JWT-SVID keys.
    Oidc(oidc::OidcArgs),
}

/// Declares [`Group`] and its dispatch from one list, `Name(module::Cmd)`
/// each, every module having `run(module::Cmd)`.
macro_rules! command_groups {
    ($($(#[$doc:meta])* $name:ident($module:ident::$cmd:ident),)*) => {
        /// The command groups that need nothing but their own flags.
        #[derive(Debug, Subcommand)]
        enum Group {
            $($(#[$doc])* #[command(subcommand)] $name($module::$cmd),)*
        }

        impl Group {
            fn run(self) -> Result<(), CliError> {
                match self {
                    $(Group::$name(cmd) => $module::run(cmd),)*
                }
            }
        }
    };
}

command_groups! {
    /// Registration entries: which workloads get which SPIFFE IDs.
    Entry(entry::EntryCmd),
    /// Trust bundles: this trust domain's, and federated ones.
    Bundle(bundle::BundleCmd),
    /// Federation relationships with other trust domains.
    Federation(federation::FederationCmd),
    /// Join tokens that let a new agent attest.
    Token(token::TokenCmd),
    /// X509-SVIDs minted directly, outside any agent.
    X509(x509::X509Cmd),
    /// JWT-SVIDs minted directly, outside any agent.
    Jwt(jwt::JwtCmd),
    /// The server's signing authorities: show, prepare, activate, taint, revoke.
    Authority(authority::AuthorityCmd),
}

/// Output formats shared by every command that prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub(crate) enum Output {
    /// Human-readable text.
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON document.
    Json,
}

/// Parses the command line, runs the command, and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Roles (server, agent, dev) set up logging from their configuration.
    if !matches!(
        cli.command,
        Command::Server(_)
            | Command::Dev(_)
            | Command::Helper(_)
            | Command::Agent(agents::AgentCmd::Run(_))
    ) {
        init_logging(cli.log_level.as_deref().unwrap_or("warn"));
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e}");
            e.exit_code()
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second init (tests calling main twice) is harmless; ignore it.
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<(), CliError> {
    let log = cli.log_level.as_deref();
    match cli.command {
        Command::Server(cmd) => server::run(cmd, log),
        Command::Agent(agents::AgentCmd::Run(agent_run::RunCmd::Run { config })) => {
            agent_run::run(&config, log)
        }
        Command::Agent(cmd) => agents::run(cmd),
        Command::Dev(args) => dev::run(args, log),
        Command::Group(group) => group.run(),
        Command::Check(args) => check::check(args),
        Command::Healthcheck(args) => check::healthcheck(args),
        Command::Api(cmd) => api::run(cmd),
        Command::Helper(args) => helper::run(*args, log),
        Command::Oidc(args) => oidc::run(args),
    }
}

/// Parses a duration flag, naming the flag in the error.
pub(crate) fn duration_flag(flag: &str, value: &str) -> Result<i64, CliError> {
    crate::duration::parse_duration_secs(value)
        .map_err(|e| CliError::bad_input_in(format_args!("--{flag}"), &e))
}
