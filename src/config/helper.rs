//! `helper.toml`: what `herald helper` keeps fresh on disk for a program
//! that cannot speak the Workload API (nginx, PostgreSQL, a cron job), and
//! how it tells that program to reload. The same keys can be given as
//! flags, which override the file; both go through [`HelperConfig::check`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::check::Checker;
use super::{default_log_level, parse_toml, ConfigError, ConfigFile, LogFormat, Logging};

/// The file as written (every key optional, so that flags can fill in).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelper {
    /// `agent_socket`: the Workload API socket.
    pub agent_socket: Option<PathBuf>,
    /// `dir`: where the files go.
    pub dir: Option<PathBuf>,
    /// `svid_file_name` (default `svid.pem`).
    pub svid_file_name: Option<String>,
    /// `svid_key_file_name` (default `svid_key.pem`).
    pub svid_key_file_name: Option<String>,
    /// `svid_bundle_file_name` (default `bundle.pem`).
    pub svid_bundle_file_name: Option<String>,
    /// `pkcs12_file_name`: a PKCS#12 file of key and chain (off when unset).
    pub pkcs12_file_name: Option<String>,
    /// `pkcs12_password`: the PKCS#12 file's password (default empty).
    pub pkcs12_password: Option<String>,
    /// `include_federated_bundles`: append federated roots to the bundle file.
    pub include_federated_bundles: Option<bool>,
    /// `file_uid`, `file_gid`: owner of the files (needs the right to chown).
    pub file_uid: Option<u32>,
    /// See `file_uid`.
    pub file_gid: Option<u32>,
    /// `cert_file_mode` (default "0644").
    pub cert_file_mode: Option<String>,
    /// `key_file_mode` (default "0600").
    pub key_file_mode: Option<String>,
    /// `jwt_svids`: audiences whose JWT-SVIDs are kept fresh.
    pub jwt_svids: Option<Vec<RawJwt>>,
    /// `pid_file`: the process to signal after an update.
    pub pid_file: Option<PathBuf>,
    /// `renew_signal` (default SIGHUP).
    pub renew_signal: Option<String>,
    /// `cmd`, `cmd_args`: a command run after an update instead.
    pub cmd: Option<PathBuf>,
    /// See `cmd`.
    pub cmd_args: Option<Vec<String>>,
    /// `cmd_timeout` (default 30s).
    pub cmd_timeout: Option<String>,
    /// `log_level`.
    pub log_level: Option<String>,
    /// `log_format`.
    pub log_format: Option<LogFormat>,
}

/// One `[[jwt_svids]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// The audience the token is for.
    pub audience: String,
    /// The file it is written to, in `dir`.
    pub file_name: String,
}

/// How the program using the files learns that they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing to tell.
    None,
    /// Send `signal` to the pid read from this file (read afresh each time:
    /// the program may have restarted).
    Signal {
        /// The pid file.
        pid_file: PathBuf,
        /// The signal's number.
        signal: i32,
        /// Its name, for logs.
        name: String,
    },
    /// Run a command, killed if it outlives `timeout`.
    Command {
        /// The program.
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// How long it may run.
        timeout: Duration,
    },
}

/// A validated helper configuration.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// The Workload API socket.
    pub agent_socket: PathBuf,
    /// The output directory.
    pub dir: PathBuf,
    /// The SVID chain's file name.
    pub svid_file_name: String,
    /// The key's file name.
    pub key_file_name: String,
    /// The bundle's file name.
    pub bundle_file_name: String,
    /// The PKCS#12 output, when configured.
    pub pkcs12: Option<Pkcs12Output>,
    /// Whether the bundle file also holds the federated trust domains' roots.
    pub include_federated_bundles: bool,
    /// Owner given to every file written, when set.
    pub file_uid: Option<u32>,
    /// Group given to every file written, when set.
    pub file_gid: Option<u32>,
    /// Mode of the certificate, bundle and JWT files.
    pub cert_file_mode: u32,
    /// Mode of the key file.
    pub key_file_mode: u32,
    /// (audience, file name) of each JWT-SVID kept fresh.
    pub jwt_svids: Vec<(String, String)>,
    /// What happens after an X.509 update.
    pub reload: Reload,
    /// `log_level` and `log_format`.
    pub logging: Logging,
}

/// A PKCS#12 file (key and chain) for software that reads only that
/// (Java keystores, some .NET and Windows-born programs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs12Output {
    /// Its name in `dir`.
    pub file_name: String,
    /// The password that encrypts it and keys its MAC; may be empty. It
    /// lives in the config file (keep that file 0600), never in a flag.
    pub password: String,
}

/// Signals a reload may send, by name.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGINT", libc::SIGINT),
    ("SIGTERM", libc::SIGTERM),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGWINCH", libc::SIGWINCH),
];

impl RawHelper {
    /// Reads the file's keys (unchecked: flags may still fill gaps).
    pub fn load(path: &Path) -> Result<RawHelper, ConfigError> {
        let text = super::read(path)?;
        Ok(parse_toml::<RawHelper>(path, &text)?.0)
    }
}

impl ConfigFile for HelperConfig {
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let (raw, _) = parse_toml::<RawHelper>(path, text)?;
        HelperConfig::check(path, raw)
    }
}

/// A file name that stays inside `dir`: no separator, not `.` or `..`.
fn file_name(c: &Checker<'_>, key: &'static str, v: String) -> Result<String, ConfigError> {
    if v.is_empty() || v.contains('/') || v == "." || v == ".." || v.starts_with(".herald") {
        return Err(c.invalid(
            key,
            format!("{v:?} must be a plain file name (no '/', not starting with .herald)"),
        ));
    }
    Ok(v)
}

fn mode(
    c: &Checker<'_>,
    key: &'static str,
    v: Option<String>,
    default: u32,
) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match u32::from_str_radix(v.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(c.invalid(key, format!("{v:?} is not an octal mode such as \"0640\""))),
    }
}

fn signal(c: &Checker<'_>, v: &str) -> Result<(i32, String), ConfigError> {
    let upper = v.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, s)| (*s, (*n).to_string()))
        .ok_or_else(|| {
            let known: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
            c.invalid(
                "renew_signal",
                format!("{v:?} is not one of {}", known.join(", ")),
            )
        })
}

impl HelperConfig {
    /// Validates `raw` (the file's keys with the flags laid over them);
    /// `path` names the file in errors.
    pub fn check(path: &Path, raw: RawHelper) -> Result<HelperConfig, ConfigError> {
        let c = Checker { path };
        let agent_socket = raw
            .agent_socket
            .ok_or_else(|| c.invalid("agent_socket", "is required (or --agent-socket)"))?;
        c.non_empty_path("agent_socket", &agent_socket)?;
        let dir = raw
            .dir
            .ok_or_else(|| c.invalid("dir", "is required (or --dir)"))?;
        c.non_empty_path("dir", &dir)?;
        let name =
            |key, v: Option<String>, d: &str| file_name(&c, key, v.unwrap_or_else(|| d.into()));
        let svid_file_name = name("svid_file_name", raw.svid_file_name, "svid.pem")?;
        let key_file_name = name("svid_key_file_name", raw.svid_key_file_name, "svid_key.pem")?;
        let bundle_file_name = name(
            "svid_bundle_file_name",
            raw.svid_bundle_file_name,
            "bundle.pem",
        )?;
        let pkcs12 = match raw.pkcs12_file_name {
            Some(n) => Some(Pkcs12Output {
                file_name: file_name(&c, "pkcs12_file_name", n)?,
                password: raw.pkcs12_password.unwrap_or_default(),
            }),
            None if raw.pkcs12_password.is_some() => {
                return Err(c.invalid("pkcs12_password", "needs pkcs12_file_name"))
            }
            None => None,
        };
        let mut jwt_svids = Vec::new();
        for (i, j) in raw.jwt_svids.unwrap_or_default().into_iter().enumerate() {
            if j.audience.is_empty() {
                return Err(c.item("jwt_svids", "jwt_svids", i, "audience must not be empty"));
            }
            let f = file_name(&c, "jwt_svids", j.file_name)?;
            jwt_svids.push((j.audience, f));
        }
        let mut names: Vec<&String> = vec![&svid_file_name, &key_file_name, &bundle_file_name];
        names.extend(pkcs12.as_ref().map(|p| &p.file_name));
        names.extend(jwt_svids.iter().map(|(_, f)| f));
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(c.invalid("svid_file_name", format!("file name {n:?} is used twice")));
            }
        }
        let reload = match (raw.pid_file, raw.cmd) {
            (Some(_), Some(_)) => {
                return Err(c.invalid("cmd", "cannot be set together with pid_file; choose one"))
            }
            (Some(pid_file), None) => {
                c.non_empty_path("pid_file", &pid_file)?;
                let (signal, name) = signal(&c, raw.renew_signal.as_deref().unwrap_or("SIGHUP"))?;
                Reload::Signal {
                    pid_file,
                    signal,
                    name,
                }
            }
            (None, Some(program)) => {
                c.non_empty_path("cmd", &program)?;
                let timeout = c.duration(
                    "cmd_timeout",
                    raw.cmd_timeout.as_deref().unwrap_or("30s"),
                    1,
                )?;
                Reload::Command {
                    program,
                    args: raw.cmd_args.unwrap_or_default(),
                    timeout: Duration::from_secs(timeout.unsigned_abs()),
                }
            }
            (None, None) => Reload::None,
        };
        if raw.renew_signal.is_some() && !matches!(reload, Reload::Signal { .. }) {
            return Err(c.invalid("renew_signal", "needs pid_file"));
        }
        Ok(HelperConfig {
            agent_socket,
            dir,
            svid_file_name,
            key_file_name,
            bundle_file_name,
            pkcs12,
            include_federated_bundles: raw.include_federated_bundles.unwrap_or(false),
            file_uid: raw.file_uid,
            file_gid: raw.file_gid,
            cert_file_mode: mode(&c, "cert_file_mode", raw.cert_file_mode, 0o644)?,
            key_file_mode: mode(&c, "key_file_mode", raw.key_file_mode, 0o600)?,
            jwt_svids,
            reload,
            logging: c.logging(
                raw.log_level.unwrap_or_else(default_log_level),
                raw.log_format.unwrap_or_default(),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HelperConfig, ConfigError> {
        HelperConfig::parse(Path::new("helper.toml"), text)
    }

    const BASE: &str = "agent_socket = \"/run/herald/agent/api.sock\"\ndir = \"/etc/nginx/svid\"\n";

    #[test]
    fn defaults_are_spiffe_helper_like_and_keys_0600() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.svid_file_name, "svid.pem");
        assert_eq!(c.key_file_name, "svid_key.pem");
        assert_eq!(c.bundle_file_name, "bundle.pem");
        assert_eq!(c.key_file_mode, 0o600);
        assert_eq!(c.reload, Reload::None);
    }

    #[test]
    fn a_pid_file_signals_sighup_unless_told_otherwise() {
        let c = parse(&format!(
            "{BASE}pid_file = \"/run/nginx.pid\"\nrenew_signal = \"usr1\"\n"
        ))
        .unwrap();
        assert!(matches!(c.reload, Reload::Signal { signal, .. } if signal == libc::SIGUSR1));
    }

    #[test]
    fn the_deploy_example_is_valid() {
        let c = parse(include_str!("../../deploy/helper.toml")).unwrap();
        assert!(matches!(c.reload, Reload::Signal { signal, .. } if signal == libc::SIGHUP));
    }

    #[test]
    fn mistakes_name_their_key() {
        for (extra, needle) in [
            (
                "pid_file = \"/p\"\ncmd = \"/bin/true\"\n",
                "cmd: cannot be set together",
            ),
            (
                "pid_file = \"/p\"\nrenew_signal = \"SIGFOO\"\n",
                "renew_signal: \"SIGFOO\"",
            ),
            (
                "renew_signal = \"SIGHUP\"\n",
                "renew_signal: needs pid_file",
            ),
            ("svid_file_name = \"../x\"\n", "svid_file_name"),
            ("key_file_mode = \"999\"\n", "key_file_mode"),
            (
                "cmd = \"/bin/true\"\ncmd_timeout = \"soon\"\n",
                "cmd_timeout",
            ),
            ("svid_key_file_name = \"svid.pem\"\n", "used twice"),
            ("pkcs12_file_name = \"svid.pem\"\n", "used twice"),
            ("pkcs12_password = \"x\"\n", "needs pkcs12_file_name"),
            (
                "[[jwt_svids]]\naudience = \"\"\nfile_name = \"t\"\n",
                "jwt_svids[0]",
            ),
            ("colour = 1\n", "unknown field"),
        ] {
            let e = parse(&format!("{BASE}{extra}")).unwrap_err().to_string();
            assert!(e.contains(needle), "{extra:?}: {e}");
        }
        let e = parse("dir = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("agent_socket: is required"), "{e}");
    }
}
