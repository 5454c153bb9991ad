//! `herald x509 mint`: an X509-SVID minted outside any agent, for operators
//! and for tests of the certificate profile. With `--data-dir` it signs with
//! the CA kept in that server data directory (creating one in a new
//! directory); the admin-API form comes with the server.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::data_dir::DataDir;
use super::{duration_flag, now_unix, CliError, Output};
use crate::ca::keys::der_to_pem;
use crate::ca::KeyType;
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
    /// Server data directory whose CA signs (created if new).
    #[arg(long)]
    data_dir: PathBuf,
    /// The SPIFFE ID to certify, e.g. spiffe://example.org/web.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime of the SVID (capped at the CA's).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// DNS SAN to add; repeat for several. The first is also the subject CN.
    #[arg(long = "dns-name")]
    dns_names: Vec<String>,
    /// Key type of the SVID's key.
    #[arg(long, default_value = "ec-p256")]
    key_type: String,
    /// Key type of a CA created in a new data directory.
    #[arg(long, default_value = "ec-p256")]
    ca_key_type: String,
    /// Lifetime of a CA created in a new data directory.
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
    let ttl = duration_flag("ttl", &args.ttl)?;
    if ttl < 1 {
        return Err(CliError::BadInput("--ttl: must be at least 1s".into()));
    }
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

    let dir = DataDir::open(&args.data_dir)?;
    let authorities = dir.authorities(
        id.trust_domain(),
        CaSettings {
            key_type: ca_key_type,
            ca_ttl_secs: ca_ttl,
        },
    )?;
    let minted = authorities
        .mint_x509_svid(&dir.store, &id, key_type, ttl, &args.dns_names, now_unix())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    tracing::info!(spiffe_id = %id, serial = %minted.cert.serial, "minted X509-SVID");

    let chain_pem: String = minted
        .cert
        .chain
        .iter()
        .map(|c| der_to_pem(c, "CERTIFICATE"))
        .collect();
    let bundle_pem: String = authorities
        .bundle()
        .x509_authorities
        .iter()
        .map(|c| der_to_pem(c, "CERTIFICATE"))
        .collect();
    let key_pem = minted.key.to_pkcs8_pem();

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
                "serial": minted.cert.serial,
                "expires_at": minted.cert.not_after,
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
            println!("Serial:     {}", minted.cert.serial);
            println!("Expires at: {}", minted.cert.not_after);
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

/// Writes `contents` to `path` with `mode`, atomically (temp file + rename).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::Failed(format!("writing {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(contents).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
