//! `herald api ...`: a Workload API client for operators debugging a node.
//! It speaks the standard API on the agent's socket, exactly as a workload
//! would (the security header included), so what it prints is what
//! workloads get.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use tonic::transport::Channel;
use tonic::Streaming;

use super::mint::{pem_certs, SvidPem};
use super::runtime::runtime;
use super::{CliError, Output};
use crate::ca::keys::der_to_pem;
use crate::ca::x509::{cert_facts, split_der_certs, CertFacts};
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
    #[arg(
        long,
        env = "SPIFFE_ENDPOINT_SOCKET",
        default_value_t = crate::runtime_dir::default_cli_workload_socket().display().to_string()
    )]
    socket: String,
}

pub(super) fn socket_path(s: &str) -> Result<PathBuf, CliError> {
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
    let unreachable = format!("cannot reach the Workload API at {}", path.display());
    workload_client(&path, unreachable).await
}

/// A Workload API client on the socket at `path`; `unreachable` is what
/// the error says when nothing answers there.
pub(super) async fn workload_client(
    path: &Path,
    unreachable: String,
) -> Result<SpiffeWorkloadApiClient<Channel>, CliError> {
    let channel = crate::uds::connect_unix(path)
        .await
        .map_err(|e| CliError::unreachable(unreachable, &e))?;
    Ok(SpiffeWorkloadApiClient::new(channel))
}

/// `msg` with the header every Workload API request must carry.
pub(super) fn with_header<T>(msg: T) -> tonic::Request<T> {
    crate::uds::workload_request(msg)
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
            }) => fetch_jwt(&socket, audiences, spiffe_id).await,
            ApiCmd::Fetch(FetchCmd::Bundles { socket }) => fetch_bundles(&socket).await,
            ApiCmd::Validate(ValidateCmd::Jwt {
                socket,
                audience,
                svid,
            }) => validate_jwt(&socket, audience, svid).await,
            ApiCmd::Watch { socket, count } => watch(&socket, count).await,
        }
    })
}

/// The X.509 stream: the SVIDs now, then again on every change.
async fn x509_stream(
    socket: &SocketArg,
) -> Result<Streaming<workload::X509svidResponse>, CliError> {
    let mut client = connect(socket).await?;
    let req = with_header(workload::X509svidRequest {});
    Ok(client
        .fetch_x509svid(req)
        .await
        .map_err(status_error)?
        .into_inner())
}

/// A stream's first message, which the API sends at once.
async fn first<T>(stream: &mut Streaming<T>) -> Result<T, CliError> {
    stream
        .message()
        .await
        .map_err(status_error)?
        .ok_or_else(|| CliError::Failed("the stream closed before the first message".into()))
}

/// The leaf of a DER chain, read.
fn leaf_facts(chain: &[u8]) -> Result<CertFacts, CliError> {
    let leaf = split_der_certs(chain)
        .into_iter()
        .next()
        .unwrap_or_default();
    cert_facts(&leaf).map_err(|e| CliError::failed(&e))
}

async fn fetch_jwt(
    socket: &SocketArg,
    audience: Vec<String>,
    spiffe_id: Option<String>,
) -> Result<(), CliError> {
    let req = with_header(workload::JwtsvidRequest {
        audience,
        spiffe_id: spiffe_id.unwrap_or_default(),
    });
    let mut client = connect(socket).await?;
    let resp = client
        .fetch_jwtsvid(req)
        .await
        .map_err(status_error)?
        .into_inner();
    for s in resp.svids {
        println!("{}\n{}", s.spiffe_id, s.svid);
    }
    Ok(())
}

async fn fetch_bundles(socket: &SocketArg) -> Result<(), CliError> {
    let mut client = connect(socket).await?;
    let req = with_header(workload::X509BundlesRequest {});
    let mut stream = client
        .fetch_x509_bundles(req)
        .await
        .map_err(status_error)?
        .into_inner();
    for (td, der) in first(&mut stream).await?.bundles {
        println!("# {td}");
        for cert in split_der_certs(&der) {
            print!("{}", der_to_pem(&cert, "CERTIFICATE"));
        }
    }
    Ok(())
}

async fn validate_jwt(socket: &SocketArg, audience: String, svid: String) -> Result<(), CliError> {
    let mut client = connect(socket).await?;
    let req = with_header(workload::ValidateJwtsvidRequest { audience, svid });
    let resp = client
        .validate_jwtsvid(req)
        .await
        .map_err(|s| CliError::BadInput(format!("the JWT-SVID is not valid: {}", s.message())))?
        .into_inner();
    println!("valid: {}", resp.spiffe_id);
    Ok(())
}

async fn watch(socket: &SocketArg, count: Option<usize>) -> Result<(), CliError> {
    let mut stream = x509_stream(socket).await?;
    let mut seen = 0usize;
    while let Some(msg) = stream.message().await.map_err(status_error)? {
        for s in &msg.svids {
            let facts = leaf_facts(&s.x509_svid)?;
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

async fn fetch_x509(
    socket: &SocketArg,
    write: Option<PathBuf>,
    output: Output,
) -> Result<(), CliError> {
    let msg = first(&mut x509_stream(socket).await?).await?;
    let mut docs = Vec::new();
    for (i, s) in msg.svids.iter().enumerate() {
        let facts = leaf_facts(&s.x509_svid)?;
        if let Some(dir) = &write {
            let pem = SvidPem {
                chain: pem_certs(&split_der_certs(&s.x509_svid)),
                key: der_to_pem(&s.x509_svid_key, "PRIVATE KEY"),
                bundle: pem_certs(&split_der_certs(&s.bundle)),
            };
            pem.write(dir, &format!(".{i}"))?;
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
