//! `herald x509 mint`: an X509-SVID minted outside any agent, for operators
//! and for tests of the certificate profile. By default a running server
//! signs it over its admin socket: the key is generated here and only a CSR
//! (whose one URI SAN is the SPIFFE ID) leaves this process. With
//! `--data-dir` it signs with the CA kept in that server data directory
//! (creating one in a new directory).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::admin_client::AdminClient;
use super::mint::{pem_certs, server_ttl, LocalKeys, MintFlags, SignedBy, SvidPem};
use super::{duration_flag, CliError, Output};
use crate::ca::{KeyPair, KeyType};
use crate::clock::now_unix;
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
    #[command(flatten)]
    mint: MintFlags,
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
}

pub(super) fn run(cmd: X509Cmd) -> Result<(), CliError> {
    let X509Cmd::Mint(args) = cmd;
    let id = args.mint.spiffe_id()?;
    if id.is_trust_domain_id() {
        return Err(CliError::BadInput(format!(
            "--spiffe-id: {id} has no path; an X509-SVID needs one (spiffe://<td>/<path>)"
        )));
    }
    let ttl = args.mint.ttl()?;
    if ttl.is_some_and(|t| t < 1) {
        return Err(CliError::BadInput("--ttl: must be at least 1s".into()));
    }
    let ca_ttl = duration_flag("ca-ttl", &args.ca_ttl)?;
    if ca_ttl < 60 {
        return Err(CliError::BadInput("--ca-ttl: must be at least 60s".into()));
    }
    let key_type = key_type_flag("key-type", &args.key_type)?;
    let ca_key_type = key_type_flag("ca-key-type", &args.ca_key_type)?;
    for name in &args.dns_names {
        check_dns_name(name)?;
    }
    let spec = SvidSpec {
        id: &id,
        key_type,
        ttl,
        dns_names: &args.dns_names,
    };
    let ca = CaSettings {
        upstream: None,
        key_type: ca_key_type,
        ca_ttl_secs: ca_ttl,
        // The data directory's own (DataDir::authorities fills it in).
        server_id: String::new(),
    };
    let minted = match args.mint.open(&id, ca)? {
        SignedBy::DataDir(local) => mint_local(&local, &spec)?,
        SignedBy::Server(socket) => mint_remote(socket, &spec)?,
    };
    tracing::info!(spiffe_id = %id, serial = %minted.serial, "minted X509-SVID");
    let files = match &args.write {
        Some(out) => Some(minted.pem.write(out, "")?),
        None => None,
    };
    print_minted(&id, minted, files, args.mint.output);
    Ok(())
}

fn key_type_flag(flag: &str, value: &str) -> Result<KeyType, CliError> {
    value
        .parse()
        .map_err(|e| CliError::bad_input_in(format_args!("--{flag}"), &e))
}

fn print_minted(id: &SpiffeId, minted: Minted, files: Option<[PathBuf; 3]>, output: Output) {
    let Minted {
        serial,
        expires_at,
        pem,
    } = minted;
    match output {
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
                    doc["svid_pem"] = pem.chain.into();
                    doc["key_pem"] = pem.key.into();
                    doc["bundle_pem"] = pem.bundle.into();
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
                None => print!("{}{}{}", pem.chain, pem.key, pem.bundle),
            }
        }
    }
}

/// What to mint: the flags, judged.
struct SvidSpec<'a> {
    id: &'a SpiffeId,
    key_type: KeyType,
    /// The lifetime asked for; the signer's default when absent.
    ttl: Option<i64>,
    dns_names: &'a [String],
}

/// An X509-SVID ready to print or write.
struct Minted {
    serial: String,
    expires_at: i64,
    pem: SvidPem,
}

/// Signs with the CA of a data directory.
fn mint_local(local: &LocalKeys, spec: &SvidSpec) -> Result<Minted, CliError> {
    let LocalKeys { dir, authorities } = local;
    let ttl = spec.ttl.unwrap_or(3600);
    let minted = authorities
        .mint_x509_svid(
            &dir.store,
            spec.id,
            spec.key_type,
            ttl,
            spec.dns_names,
            now_unix(),
        )
        .map_err(|e| CliError::failed(&e))?;
    Ok(Minted {
        serial: minted.cert.serial,
        expires_at: minted.cert.not_after,
        pem: SvidPem {
            chain: pem_certs(&minted.cert.chain),
            key: minted.key.to_pkcs8_pem(),
            bundle: pem_certs(&authorities.bundle().x509_authorities),
        },
    })
}

/// Generates the key here and has the server sign a CSR for it.
fn mint_remote(socket: &std::path::Path, spec: &SvidSpec) -> Result<Minted, CliError> {
    let ttl = server_ttl(spec.ttl)?;
    let key = KeyPair::generate(spec.key_type).map_err(|e| CliError::failed(&e))?;
    let csr = build_csr(&key, spec.id, spec.dns_names)?;
    let client = AdminClient::connect(socket)?;
    let reply = client.call(
        client
            .svids()
            .mint_x509svid(admin::MintX509svidRequest { csr, ttl }),
    )?;
    let svid = reply
        .svid
        .ok_or_else(|| CliError::Failed("the server answered without an SVID".into()))?;
    let leaf = svid
        .cert_chain
        .first()
        .ok_or_else(|| CliError::Failed("the server answered an empty chain".into()))?;
    let facts = crate::ca::x509::cert_facts(leaf)
        .map_err(|e| CliError::failed_in("the server sent an unusable certificate", &e))?;
    Ok(Minted {
        serial: facts.serial,
        expires_at: svid.expires_at,
        pem: SvidPem {
            chain: pem_certs(&svid.cert_chain),
            key: key.to_pkcs8_pem(),
            bundle: pem_certs(&reply.bundle),
        },
    })
}

/// A PKCS#10 request over `key` whose one URI SAN is `id`, plus the DNS SANs.
fn build_csr(key: &KeyPair, id: &SpiffeId, dns_names: &[String]) -> Result<Vec<u8>, CliError> {
    let fail = |e: rcgen::Error| CliError::failed_in("cannot build the CSR", &e);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let uri = rcgen::string::Ia5String::try_from(id.as_str()).map_err(fail)?;
    params.subject_alt_names.push(rcgen::SanType::URI(uri));
    for name in dns_names {
        let name = rcgen::string::Ia5String::try_from(name.as_str())
            .map_err(|e| CliError::bad_input_in(format_args!("--dns-name: {name:?}"), &e))?;
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
