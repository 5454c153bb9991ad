//! `herald x509 mint`: an X509-SVID minted outside any agent, for operators
//! and for tests of the certificate profile. By default a running server
//! signs it over its admin socket: the key is generated here and only a CSR
//! (whose one URI SAN is the SPIFFE ID) leaves this process. With
//! `--data-dir` it signs with the CA kept in that server data directory
//! (creating one in a new directory).

use crate::clock::now_unix;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::admin_client::{status_error, AdminClient, SocketArgs};
use super::data_dir::DataDir;
use super::{duration_flag, CliError, Output};
use crate::ca::keys::der_to_pem;
use crate::ca::{KeyPair, KeyType};
use crate::proto::admin;
use crate::server::authorities::CaSettings;
use crate::spiffe::SpiffeId;

/// `herald x509 ...`
#[derive(Debug, Subcommand)]
pub(super) enum X509Cmd {
    /// Mint an X509-SVID and its key.
    Mint(MintArgs),
}

/// Flags of `herald x509 mint`.
#[derive(Debug, Args)]
pub(super) struct MintArgs {
    /// Server data directory whose CA signs (created if new), instead of
    /// asking the server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
    /// The SPIFFE ID to certify, e.g. spiffe://example.org/web.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime of the SVID (capped at the CA's); by default the server's
    /// default, or 1h with --data-dir.
    #[arg(long)]
    ttl: Option<String>,
    /// DNS SAN to add; repeat for several. The first is also the subject CN.
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
    /// Key type of the SVID's key.
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    /// Key type of a CA created in a new data directory (--data-dir only).
    #[arg(long, default_value = "ec-p256")]
    ca_key_type: String,
    /// Lifetime of a CA created in a new data directory (--data-dir only).
    #[arg(long, default_value = "24h")]
    ca_ttl: String,
    /// Write svid.pem (chain), svid.key (0600) and bundle.pem into this
    /// directory instead of printing them.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub(super) fn run(cmd: X509Cmd) -> Result<(), CliError> {
    match cmd {
        X509Cmd::Mint(args) => mint(args),
    }
}

fn mint(args: MintArgs) -> Result<(), CliError> {
    let id = SpiffeId::parse(&args.spiffe_id)
        .map_err(|e| CliError::BadInput(format!("--spiffe-id: {e}")))?;
    if id.is_trust_domain_id() {
        return Err(CliError::BadInput(format!(
            "--spiffe-id: {id} has no path; an X509-SVID needs one (spiffe://<td>/<path>)"
        )));
    }
    let ttl = match &args.ttl {
        Some(v) => {
            let ttl = duration_flag("ttl", v)?;
            if ttl < 1 {
                return Err(CliError::BadInput("--ttl: must be at least 1s".into()));
            }
            Some(ttl)
        }
        None => None,
    };
    let ca_ttl = duration_flag("ca-ttl", &args.ca_ttl)?;
    if ca_ttl < 60 {
        return Err(CliError::BadInput("--ca-ttl: must be at least 60s".into()));
    }
    let key_type: KeyType = args
        .key_type
        .parse()
        .map_err(|e| CliError::BadInput(format!("--key-type: {e}")))?;
    let ca_key_type: KeyType = args
        .ca_key_type
        .parse()
        .map_err(|e| CliError::BadInput(format!("--ca-key-type: {e}")))?;
    for name in &args.dns_names {
        check_dns_name(name)?;
    }

    let minted = match &args.data_dir {
        Some(data_dir) => mint_local(
            data_dir,
            &id,
            key_type,
            ttl.unwrap_or(3600),
            &args.dns_names,
            CaSettings {
                upstream: None,
                key_type: ca_key_type,
                ca_ttl_secs: ca_ttl,
            },
        )?,
        None => mint_remote(&args.socket, &id, key_type, ttl, &args.dns_names)?,
    };
    tracing::info!(spiffe_id = %id, serial = %minted.serial, "minted X509-SVID");
    let Minted {
        serial,
        expires_at,
        chain_pem,
        key_pem,
        bundle_pem,
    } = minted;

    let files = match &args.write {
        Some(out) => {
            std::fs::create_dir_all(out)
                .map_err(|e| CliError::Failed(format!("--write {}: {e}", out.display())))?;
            let svid = out.join("svid.pem");
            let key = out.join("svid.key");
            let bundle = out.join("bundle.pem");
            write_file(&svid, chain_pem.as_bytes(), 0o644)?;
            write_file(&key, key_pem.as_bytes(), 0o600)?;
            write_file(&bundle, bundle_pem.as_bytes(), 0o644)?;
            Some([svid, key, bundle])
        }
        None => None,
    };

    match args.output {
        Output::Json => {
            let mut doc = serde_json::json!({
                "spiffe_id": id.as_str(),
                "serial": serial,
                "expires_at": expires_at,
            });
            match &files {
                Some([svid, key, bundle]) => {
                    doc["svid_file"] = svid.display().to_string().into();
                    doc["key_file"] = key.display().to_string().into();
                    doc["bundle_file"] = bundle.display().to_string().into();
                }
                None => {
                    doc["svid_pem"] = chain_pem.into();
                    doc["key_pem"] = key_pem.into();
                    doc["bundle_pem"] = bundle_pem.into();
                }
            }
            println!("{doc}");
        }
        Output::Table => {
            println!("SPIFFE ID:  {id}");
            println!("Serial:     {serial}");
            println!("Expires at: {expires_at}");
            match &files {
                Some([svid, key, bundle]) => {
                    println!("SVID:       {}", svid.display());
                    println!("Key:        {}", key.display());
                    println!("Bundle:     {}", bundle.display());
                }
                None => print!("{chain_pem}{key_pem}{bundle_pem}"),
            }
        }
    }
    Ok(())
}

/// An X509-SVID ready to print or write.
struct Minted {
    serial: String,
    expires_at: i64,
    chain_pem: String,
    key_pem: String,
    bundle_pem: String,
}

fn pem_certs(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|c| der_to_pem(c, "CERTIFICATE")).collect()
}

/// Signs with the CA of a data directory.
fn mint_local(
    data_dir: &Path,
    id: &SpiffeId,
    key_type: KeyType,
    ttl: i64,
    dns_names: &[String],
    ca: CaSettings,
) -> Result<Minted, CliError> {
    let dir = DataDir::open(data_dir)?;
    let authorities = dir.authorities(id.trust_domain(), ca)?;
    let minted = authorities
        .mint_x509_svid(&dir.store, id, key_type, ttl, dns_names, now_unix())
        .map_err(|e| CliError::failed(&e))?;
    Ok(Minted {
        serial: minted.cert.serial,
        expires_at: minted.cert.not_after,
        chain_pem: pem_certs(&minted.cert.chain),
        key_pem: minted.key.to_pkcs8_pem(),
        bundle_pem: pem_certs(&authorities.bundle().x509_authorities),
    })
}

/// Generates the key here and has the server sign a CSR for it.
fn mint_remote(
    socket: &SocketArgs,
    id: &SpiffeId,
    key_type: KeyType,
    ttl: Option<i64>,
    dns_names: &[String],
) -> Result<Minted, CliError> {
    let ttl = match ttl {
        Some(t) => {
            i32::try_from(t).map_err(|_| CliError::BadInput(format!("--ttl: {t}s is too long")))?
        }
        None => 0,
    };
    let key = KeyPair::generate(key_type).map_err(|e| CliError::failed(&e))?;
    let csr = build_csr(&key, id, dns_names)?;
    let client = AdminClient::connect(&socket.socket)?;
    let reply = client
        .run(
            client
                .svids()
                .mint_x509svid(admin::MintX509svidRequest { csr, ttl }),
        )
        .map_err(status_error)?
        .into_inner();
    let svid = reply
        .svid
        .ok_or_else(|| CliError::Failed("the server answered without an SVID".into()))?;
    let leaf = svid
        .cert_chain
        .first()
        .ok_or_else(|| CliError::Failed("the server answered an empty chain".into()))?;
    let facts = crate::ca::x509::cert_facts(leaf)
        .map_err(|e| CliError::Failed(format!("the server sent an unusable certificate: {e}")))?;
    Ok(Minted {
        serial: facts.serial,
        expires_at: svid.expires_at,
        chain_pem: pem_certs(&svid.cert_chain),
        key_pem: key.to_pkcs8_pem(),
        bundle_pem: pem_certs(&reply.bundle),
    })
}

/// A PKCS#10 request over `key` whose one URI SAN is `id`, plus the DNS SANs.
fn build_csr(key: &KeyPair, id: &SpiffeId, dns_names: &[String]) -> Result<Vec<u8>, CliError> {
    let fail = |e: rcgen::Error| CliError::Failed(format!("cannot build the CSR: {e}"));
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let uri = rcgen::string::Ia5String::try_from(id.as_str()).map_err(fail)?;
    params.subject_alt_names.push(rcgen::SanType::URI(uri));
    for name in dns_names {
        let name = rcgen::string::Ia5String::try_from(name.as_str())
            .map_err(|e| CliError::BadInput(format!("--dns-name: {name:?}: {e}")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    let csr = params.serialize_request(key.rcgen()).map_err(fail)?;
    Ok(csr.der().to_vec())
}

/// DNS SANs must be plain hostnames (a leading `*.` wildcard allowed).
fn check_dns_name(name: &str) -> Result<(), CliError> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let ok = !bare.is_empty()
        && name.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(CliError::BadInput(format!(
            "--dns-name: {name:?} is not a valid DNS name"
        )))
    }
}

/// Writes `contents` to `path` with `mode`, atomically.
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    crate::fsutil::write_atomic(path, contents, mode)
        .map_err(|e| CliError::Failed(format!("writing {}: {e}", path.display())))
}
