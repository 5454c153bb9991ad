//! `herald helper`: keeps a program's SVID, key, bundle and JWT-SVIDs fresh
//! on disk and reloads it (see `crate::helper`). Flags override the
//! config file's keys; either alone is enough.

use std::path::PathBuf;

use clap::Args;

use super::runtime::{init_role_logging, runtime, wait_for_signal};
use super::CliError;
use crate::config::helper::{HelperConfig, RawHelper, RawJwt};

/// `herald helper`
#[derive(Debug, Args)]
pub(super) struct HelperArgs {
    /// helper.toml (deploy/helper.toml documents every key).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The agent's Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long)]
    agent_socket: Option<String>,
    /// The directory the files are written to.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// File name of the SVID chain [default: svid.pem].
    #[arg(long)]
    svid_file_name: Option<String>,
    /// File name of the key [default: svid_key.pem].
    #[arg(long)]
    svid_key_file_name: Option<String>,
    /// File name of the bundle [default: bundle.pem].
    #[arg(long)]
    svid_bundle_file_name: Option<String>,
    /// Also write key and chain as PKCS#12 under this name (its password
    /// is `pkcs12_password` in the config file, never a flag).
    #[arg(long)]
    pkcs12_file_name: Option<String>,
    /// Append the federated trust domains' roots to the bundle file.
    #[arg(long)]
    include_federated_bundles: bool,
    /// Owner (numeric uid) of the files written.
    #[arg(long)]
    file_uid: Option<u32>,
    /// Group (numeric gid) of the files written.
    #[arg(long)]
    file_gid: Option<u32>,
    /// Mode of the key file [default: 0600].
    #[arg(long)]
    key_file_mode: Option<String>,
    /// Mode of the certificate, bundle and JWT files [default: 0644].
    #[arg(long)]
    cert_file_mode: Option<String>,
    /// Keep a JWT-SVID fresh: FILE=AUDIENCE; repeat for several.
    #[arg(long = "jwt-svid", value_name = "FILE=AUDIENCE")]
    jwt_svids: Vec<String>,
    /// After an update, signal the pid in this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// The signal sent to the pid file's process [default: SIGHUP].
    #[arg(long)]
    renew_signal: Option<String>,
    /// After an update, run this command instead.
    #[arg(long)]
    cmd: Option<PathBuf>,
    /// An argument of --cmd; repeat for several.
    #[arg(long = "cmd-arg", allow_hyphen_values = true)]
    cmd_args: Vec<String>,
    /// How long --cmd may run before it is killed [default: 30s].
    #[arg(long)]
    cmd_timeout: Option<String>,
}

impl HelperArgs {
    /// The config file's keys with the flags laid over them.
    fn merge(self) -> Result<(PathBuf, RawHelper), CliError> {
        let (path, mut raw) = match &self.config {
            Some(p) => (
                p.clone(),
                RawHelper::load(p).map_err(|e| CliError::bad_input(&e))?,
            ),
            None => (PathBuf::from("(flags)"), RawHelper::default()),
        };
        let socket = self.agent_socket.or_else(|| {
            raw.agent_socket
                .is_none()
                .then(|| std::env::var("SPIFFE_ENDPOINT_SOCKET").ok())
                .flatten()
        });
        if let Some(s) = socket {
            raw.agent_socket = Some(super::api::socket_path(&s)?);
        }
        let over = |flag: Option<String>, file: &mut Option<String>| {
            if flag.is_some() {
                *file = flag;
            }
        };
        over(self.svid_file_name, &mut raw.svid_file_name);
        over(self.svid_key_file_name, &mut raw.svid_key_file_name);
        over(self.svid_bundle_file_name, &mut raw.svid_bundle_file_name);
        over(self.pkcs12_file_name, &mut raw.pkcs12_file_name);
        over(self.key_file_mode, &mut raw.key_file_mode);
        over(self.cert_file_mode, &mut raw.cert_file_mode);
        over(self.renew_signal, &mut raw.renew_signal);
        over(self.cmd_timeout, &mut raw.cmd_timeout);
        raw.dir = self.dir.or(raw.dir);
        raw.file_uid = self.file_uid.or(raw.file_uid);
        raw.file_gid = self.file_gid.or(raw.file_gid);
        raw.pid_file = self.pid_file.or(raw.pid_file);
        raw.cmd = self.cmd.or(raw.cmd);
        if !self.cmd_args.is_empty() {
            raw.cmd_args = Some(self.cmd_args);
        }
        if self.include_federated_bundles {
            raw.include_federated_bundles = Some(true);
        }
        if !self.jwt_svids.is_empty() {
            let mut list = Vec::new();
            for v in self.jwt_svids {
                let (file_name, audience) = v.split_once('=').ok_or_else(|| {
                    CliError::BadInput(format!("--jwt-svid: {v:?} is not FILE=AUDIENCE"))
                })?;
                list.push(RawJwt {
                    audience: audience.to_string(),
                    file_name: file_name.to_string(),
                });
            }
            raw.jwt_svids = Some(list);
        }
        Ok((path, raw))
    }
}

pub(super) fn run(args: HelperArgs, log: Option<&str>) -> Result<(), CliError> {
    let (path, raw) = args.merge()?;
    let config = HelperConfig::check(&path, raw).map_err(|e| CliError::bad_input(&e))?;
    init_role_logging(log, &config.logging);
    runtime()?.block_on(async move {
        tracing::info!(dir = %config.dir.display(), socket = %config.agent_socket.display(), "helper running");
        let tasks = crate::helper::spawn(config);
        wait_for_signal().await;
        for t in tasks {
            t.abort();
        }
        Ok(())
    })
}
