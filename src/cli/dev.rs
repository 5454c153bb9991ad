//! `herald dev`: a server and an agent in one process with zero
//! configuration, the first thing a newcomer runs.
//!
//! The data lives under `./.herald` (server/ and agent/), the node API
//! listens on a free loopback port, the calling user's uid is registered as
//! a workload, and the line to export `SPIFFE_ENDPOINT_SOCKET` is printed,
//! with the URLs of the metrics and of the web dashboard (one ops listener
//! on a loopback port serves both roles; `/ready` answers 200 when both
//! are ready).
//! Running it again reuses everything: the CA, the agent's SVID, the entry.

use crate::clock::now_unix;
use std::path::{Path, PathBuf};

use clap::Args;

use super::runtime::{init_role_logging, runtime, wait_for_signal};
use super::CliError;
use crate::config::{AgentConfig, Bootstrap, Logging, ServerConfig};
use crate::registration::{RegistrationEntry, Selector};
use crate::server::state::ServerEvent;
use crate::spiffe::{SpiffeId, TrustDomain};
use crate::store::{JoinToken, StoreError};

/// Flags of `herald dev`.
#[derive(Debug, Args)]
pub(super) struct DevArgs {
    /// Trust domain of the embedded server.
    #[arg(long, default_value = "example.org")]
    trust_domain: String,
    /// Where server and agent keep their state.
    #[arg(long, default_value = ".herald")]
    data_dir: PathBuf,
    /// Register this SPIFFE ID for the calling user instead of
    /// spiffe://<td>/dev/user/<uid>.
    #[arg(long)]
    spiffe_id: Option<String>,
}

/// The real user ID of this process, from /proc (no libc: the crate forbids unsafe).
fn current_uid() -> Result<u32, CliError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| CliError::failed_in("cannot read /proc/self/status", &e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CliError::Failed("no Uid line in /proc/self/status".into()))
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(path)
        .map_err(|e| CliError::failed_in(format_args!("--data-dir {}", path.display()), &e))?;
    path.canonicalize()
        .map_err(|e| CliError::failed_in(format_args!("--data-dir {}", path.display()), &e))
}

pub(super) fn run(args: DevArgs, log_flag: Option<&str>) -> Result<(), CliError> {
    let td = TrustDomain::new(&args.trust_domain)
        .map_err(|e| CliError::bad_input_in("--trust-domain", &e))?;
    let uid = current_uid()?;
    let workload_id = match &args.spiffe_id {
        Some(s) => {
            let id = SpiffeId::parse(s).map_err(|e| CliError::bad_input_in("--spiffe-id", &e))?;
            if id.trust_domain() != &td || id.is_trust_domain_id() {
                return Err(CliError::BadInput(format!(
                    "--spiffe-id: {id} must be in trust domain {td} and have a path"
                )));
            }
            id
        }
        None => {
            SpiffeId::new(&td, &format!("/dev/user/{uid}")).map_err(|e| CliError::failed(&e))?
        }
    };
    let dir = absolute(&args.data_dir)?;
    let server_config = ServerConfig {
        x509pop: None,
        k8s_psat: None,
        trust_domain: td.clone(),
        data_dir: dir.join("server"),
        bind_address: "127.0.0.1:0"
            .parse()
            .map_err(|_| CliError::Failed("loopback address".into()))?,
        admin_socket: dir.join("server/admin.sock"),
        ca_key_type: crate::ca::KeyType::EcP256,
        ca_ttl: 24 * 3600,
        default_x509_svid_ttl: 3600,
        default_jwt_svid_ttl: 300,
        agent_svid_ttl: 3600,
        ca_activation_deadline: 300,
        upstream: crate::config::UpstreamConfig::SelfSigned,
        logging: Logging::default(),
        federation: Default::default(),
        admin_allowed_uids: Vec::new(),
        downstream_ca_max_ttl: 24 * 3600,
        downstream_ca_path_len: 0,
        limits: Default::default(),
        prune: Default::default(),
        jwt_issuer: None,
        dashboard: None,
        // One listener serves both roles, below.
        ops: None,
        audit_log: None,
        // `herald dev` is one server: always the embedded store.
        store: crate::config::StoreConfig::Sled,
    };
    init_role_logging(log_flag, &Logging::default());
    runtime()?.block_on(async move {
        let server = crate::server::run::start(&server_config)
            .await
            .map_err(|e| CliError::failed(&e))?;
        let state = server.state.clone();

        // The agent attests in-process: a fresh join token and the bundle
        // handed over as a file, exactly as an operator would.
        let agent_dir = dir.join("agent");
        std::fs::create_dir_all(&agent_dir)
            .map_err(|e| CliError::failed_in(agent_dir.display(), &e))?;
        let bootstrap = agent_dir.join("bootstrap.pem");
        let pem: String = state
            .authorities()
            .bundle()
            .x509_authorities
            .iter()
            .map(|c| crate::ca::keys::der_to_pem(c, "CERTIFICATE"))
            .collect();
        std::fs::write(&bootstrap, pem)
            .map_err(|e| CliError::failed_in(bootstrap.display(), &e))?;
        let token = format!("dev-{}", uuid::Uuid::new_v4().simple());
        let join = JoinToken {
            token: token.clone(),
            expires_at: now_unix() + 600,
            agent_id: SpiffeId::new(&td, "/herald/agent/dev").ok(),
        };
        state
            .with_store(move |s| s.create_join_token(join))
            .await
            .map_err(|e| CliError::failed(&e))?;
        let socket_path = agent_dir.join("public/api.sock");
        let agent_config = AgentConfig {
            trust_domain: td.clone(),
            server_addresses: vec![server.node_addr.into()],
            data_dir: agent_dir.clone(),
            socket_path: socket_path.clone(),
            bootstrap: Bootstrap::TrustBundle(bootstrap),
            attestation: crate::config::node_attestors::NodeAttestation::JoinToken(token),
            jwt_svid_leeway: crate::ca::DEFAULT_JWT_LEEWAY_SECS,
            workload_api: Default::default(),
            logging: Logging::default(),
            sds: Default::default(),
            k8s: None,
            ops: None,
            rebootstrap: None,
        };
        let agent = crate::agent::run::start(&agent_config)
            .await
            .map_err(|e| CliError::failed(&e))?;

        let selector =
            Selector::new("unix", format!("uid:{uid}")).map_err(|e| CliError::failed(&e))?;
        let entry = RegistrationEntry {
            created_at: now_unix(),
            ..RegistrationEntry::new(workload_id.clone(), agent.spiffe_id.clone(), vec![selector])
        };
        let created = state
            .with_store(move |s| s.create_entries(vec![entry]))
            .await
            .map_err(|e| CliError::failed(&e))?;
        for r in created {
            match r {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(CliError::failed_in("registering the dev workload", &e)),
            }
        }
        state.publish(ServerEvent::EntriesChanged);

        // One ops listener for both roles: ready when both are.
        let (ops_stop, ops_stop_rx) = tokio::sync::watch::channel(false);
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let ops = crate::ops::serve(
            loopback,
            vec![server.ops_role(), agent.ops_role()],
            ops_stop_rx,
        )
        .await
        .map_err(|e| CliError::failed(&e))?;

        println!("herald dev: trust domain {td}, data in {}", dir.display());
        println!("  workload {workload_id} is registered for unix:uid:{uid} (this user)");
        println!(
            "  admin CLI: export HERALD_ADMIN_SOCKET={}",
            server.admin_socket.display()
        );
        println!("  then try: herald api fetch x509");
        println!("metrics: http://{}/metrics", ops.address);
        if ops.dashboard {
            println!("dashboard: http://{}/", ops.address);
        }
        println!(
            "export SPIFFE_ENDPOINT_SOCKET=unix://{}",
            socket_path.display()
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();

        wait_for_signal().await;
        agent.shutdown().await;
        server.shutdown().await;
        let _ = ops_stop.send(true);
        ops.stopped().await;
        Ok(())
    })
}
