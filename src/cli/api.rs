//! `herald api ...`: a Workload API client for operators debugging a node.
//! It speaks the standard API on the agent's socket, exactly as a workload
//! would (the security header included), so what it prints is what
//! workloads get.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::runtime::runtime;
use super::{CliError, Output};
use crate::ca::keys::der_to_pem;
use crate::proto::workload::{self, spiffe_workload_api_client::SpiffeWorkloadApiClient};

/// `herald api ...`
#[derive(Debug, Subcommand)]
pub(super) enum ApiCmd {
    /// Fetch SVIDs or bundles once.
    #[command(subcommand)]
    Fetch(FetchCmd),
    /// Validate a JWT-SVID.
    #[command(subcommand)]
    Validate(ValidateCmd),
    /// Print every update of the X.509 stream.
    Watch {
        #[command(flatten)]
        socket: SocketArg,
        /// Stop after this many updates (default: until interrupted).
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `herald api fetch ...`
#[derive(Debug, Subcommand)]
pub(super) enum FetchCmd {
    /// X509-SVIDs, their keys and bundles.
    X509 {
        #[command(flatten)]
        socket: SocketArg,
        /// Write svid.N.pem, svid.N.key (0600) and bundle.N.pem here.
        #[arg(long)]
        write: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// JWT-SVIDs for an audience.
    Jwt {
        #[command(flatten)]
        socket: SocketArg,
        /// Audience; repeat for several.
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// Only this SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<String>,
    },
    /// X.509 bundles, as PEM by trust domain.
    Bundles {
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// `herald api validate ...`
#[derive(Debug, Subcommand)]
pub(super) enum ValidateCmd {
    /// Validate a JWT-SVID for an audience.
    Jwt {
        #[command(flatten)]
        socket: SocketArg,
        /// The validator's audience.
        #[arg(long)]
        audience: String,
        /// The token.
        #[arg(long)]
        svid: String,
    },
}

/// Where the Workload API is.
#[derive(Debug, Args)]
pub(super) struct SocketArg {
    /// The Workload API socket: a path or a unix:// URI.
    #[arg(long, env = "SPIFFE_ENDPOINT_SOCKET", default_value = crate::config::DEFAULT_WORKLOAD_SOCKET)]
    socket: String,
}

fn socket_path(s: &str) -> Result<PathBuf, CliError> {
    let path = s
        .strip_prefix("unix://")
        .or_else(|| s.strip_prefix("unix:"))
        .unwrap_or(s);
    if path.is_empty() || !path.starts_with('/') {
        return Err(CliError::BadInput(format!(
            "--socket: {s:?} is not an absolute path or unix:///path URI"
        )));
    }
    Ok(PathBuf::from(path))
}

async fn connect(socket: &SocketArg) -> Result<SpiffeWorkloadApiClient<Channel>, CliError> {
    let path = socket_path(&socket.socket)?;
    let channel = crate::uds::connect_unix(&path).await.map_err(|e| {
        CliError::Failed(format!(
            "cannot reach the Workload API at {}: {}",
            path.display(),
            e.reason()
        ))
    })?;
    Ok(SpiffeWorkloadApiClient::new(channel))
}

fn with_header<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

fn status_error(s: tonic::Status) -> CliError {
    CliError::Failed(format!("workload API: {:?}: {}", s.code(), s.message()))
}

pub(super) fn run(cmd: ApiCmd) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        match cmd {
            ApiCmd::Fetch(FetchCmd::X509 {
                socket,
                write,
                output,
            }) => fetch_x509(&socket, write, output).await,
            ApiCmd::Fetch(FetchCmd::Jwt {
                socket,
                audiences,
                spiffe_id,
            }) => {
                let mut client = connect(&socket).await?;
                let resp = client
                    .fetch_jwtsvid(with_header(workload::JwtsvidRequest {
                        audience: audiences,
                        spiffe_id: spiffe_id.unwrap_or_default(),
                    }))
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for s in resp.svids {
                    println!("{}\n{}", s.spiffe_id, s.svid);
                }
                Ok(())
            }
            ApiCmd::Fetch(FetchCmd::Bundles { socket }) => {
                let mut client = connect(&socket).await?;
                let mut stream = client
                    .fetch_x509_bundles(with_header(workload::X509BundlesRequest {}))
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let msg = stream
                    .message()
                    .await
                    .map_err(status_error)?
                    .ok_or_else(|| CliError::Failed("the stream closed".into()))?;
                for (td, der) in msg.bundles {
                    println!("# {td}");
                    for cert in crate::ca::x509::split_der_certs(&der) {
                        print!("{}", der_to_pem(&cert, "CERTIFICATE"));
                    }
                }
                Ok(())
            }
            ApiCmd::Validate(ValidateCmd::Jwt {
                socket,
                audience,
                svid,
            }) => {
                let mut client = connect(&socket).await?;
                let resp = client
                    .validate_jwtsvid(with_header(workload::ValidateJwtsvidRequest {
                        audience,
                        svid,
                    }))
                    .await
                    .map_err(|s| {
                        CliError::BadInput(format!("the JWT-SVID is not valid: {}", s.message()))
                    })?
                    .into_inner();
                println!("valid: {}", resp.spiffe_id);
                Ok(())
            }
            ApiCmd::Watch { socket, count } => {
                let mut client = connect(&socket).await?;
                let mut stream = client
                    .fetch_x509svid(with_header(workload::X509svidRequest {}))
                    .await
                    .map_err(status_error)?
                    .into_inner();
                let mut seen = 0usize;
                while let Some(msg) = stream.message().await.map_err(status_error)? {
                    for s in &msg.svids {
                        let leaf = crate::ca::x509::split_der_certs(&s.x509_svid)
                            .into_iter()
                            .next()
                            .unwrap_or_default();
                        let facts =
                            crate::ca::x509::cert_facts(&leaf).map_err(|e| CliError::failed(&e))?;
                        println!(
                            "{} serial={} not_after={}",
                            s.spiffe_id, facts.serial, facts.not_after
                        );
                    }
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        break;
                    }
                }
                Ok(())
            }
        }
    })
}

async fn fetch_x509(
    socket: &SocketArg,
    write: Option<PathBuf>,
    output: Output,
) -> Result<(), CliError> {
    let mut client = connect(socket).await?;
    let mut stream = client
        .fetch_x509svid(with_header(workload::X509svidRequest {}))
        .await
        .map_err(status_error)?
        .into_inner();
    let msg = stream
        .message()
        .await
        .map_err(status_error)?
        .ok_or_else(|| CliError::Failed("the stream closed before the first message".into()))?;
    let mut docs = Vec::new();
    for (i, s) in msg.svids.iter().enumerate() {
        let certs = crate::ca::x509::split_der_certs(&s.x509_svid);
        let leaf = certs.first().cloned().unwrap_or_default();
        let facts = crate::ca::x509::cert_facts(&leaf).map_err(|e| CliError::failed(&e))?;
        if let Some(dir) = &write {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Failed(format!("--write {}: {e}", dir.display())))?;
            let chain: String = certs.iter().map(|c| der_to_pem(c, "CERTIFICATE")).collect();
            let bundle: String = crate::ca::x509::split_der_certs(&s.bundle)
                .iter()
                .map(|c| der_to_pem(c, "CERTIFICATE"))
                .collect();
            super::x509::write_file(&dir.join(format!("svid.{i}.pem")), chain.as_bytes(), 0o644)?;
            super::x509::write_file(
                &dir.join(format!("svid.{i}.key")),
                der_to_pem(&s.x509_svid_key, "PRIVATE KEY").as_bytes(),
                0o600,
            )?;
            super::x509::write_file(
                &dir.join(format!("bundle.{i}.pem")),
                bundle.as_bytes(),
                0o644,
            )?;
        }
        docs.push(serde_json::json!({
            "spiffe_id": s.spiffe_id, "serial": facts.serial, "expires_at": facts.not_after, "hint": s.hint,
        }));
        if output == Output::Table {
            println!("SPIFFE ID:  {}", s.spiffe_id);
            println!("Serial:     {}", facts.serial);
            println!("Expires at: {}", facts.not_after);
            if !s.hint.is_empty() {
                println!("Hint:       {}", s.hint);
            }
        }
    }
    if output == Output::Json {
        println!("{}", serde_json::json!({ "svids": docs }));
    }
    Ok(())
}
