//! Real `herald server run` and `herald agent run` processes on temp dirs,
//! Unix sockets and loopback ports, and the admin CLI run against them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use super::bin::{assert_fails, assert_success, herald, my_uid, run_on_socket};
use super::config::{AgentToml, ServerToml};
use super::peer::Peer;
use super::process::Proc;

/// How long a role may take to say it serves.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `herald <role> run --config <config>`, not waited on.
pub fn spawn_role(role: &str, config: &Path) -> Proc {
    let mut cmd = herald();
    cmd.args([role, "run", "--config"]).arg(config);
    Proc::spawn(role, cmd)
}

/// Runs `herald <role> run --config <config>` to completion: for a
/// configuration the role must refuse.
pub fn run_role(role: &str, config: &Path) -> Output {
    herald()
        .args([role, "run", "--config"])
        .arg(config)
        .output()
        .expect("spawn herald")
}

/// A server process and its files. Fields drop in order: the process is
/// killed before a temp dir it owns goes.
pub struct Server {
    pub td: String,
    pub proc: Proc,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin_socket: PathBuf,
    pub node_addr: SocketAddr,
    tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server of example.org in `dir`, `extra` TOML appended to its config.
    pub fn start(dir: &Path, extra: &str) -> Server {
        Server::start_with(&ServerToml::new(dir).extra(extra))
    }

    /// A server of example.org in a temp dir of its own.
    pub fn start_temp() -> Server {
        let tmp = tempfile::tempdir().expect("create a temp dir");
        let mut server = Server::start(tmp.path(), "");
        server.tmp = Some(tmp);
        server
    }

    /// Writes `toml` and starts the server; returns once it serves.
    pub fn start_with(toml: &ServerToml) -> Server {
        Server::start_within(toml, START_TIMEOUT)
    }

    /// Like [`Server::start_with`], waiting up to `timeout`.
    pub fn start_within(toml: &ServerToml, timeout: Duration) -> Server {
        let config = toml.write();
        Server::launch(toml.td(), toml.dir(), config, toml.admin_socket(), timeout)
    }

    /// Starts every server of `tomls` at the same moment (all processes
    /// spawned before any is waited on); returns once each serves.
    pub fn start_many(tomls: &[ServerToml]) -> Vec<Server> {
        let procs: Vec<(Proc, PathBuf)> = tomls
            .iter()
            .map(|t| {
                let config = t.write();
                (spawn_role("server", &config), config)
            })
            .collect();
        procs
            .into_iter()
            .zip(tomls)
            .map(|((proc, config), t)| {
                Server::wait_serving(
                    proc,
                    t.td(),
                    t.dir(),
                    config,
                    t.admin_socket(),
                    START_TIMEOUT,
                )
            })
            .collect()
    }

    /// Starts again from the same directory and config, once the previous
    /// process has stopped.
    pub fn relaunch(self) -> Server {
        let Server {
            td,
            mut proc,
            dir,
            config,
            admin_socket,
            tmp,
            ..
        } = self;
        proc.stop();
        let mut server = Server::launch(&td, &dir, config, admin_socket, START_TIMEOUT);
        server.tmp = tmp;
        server
    }

    fn launch(
        td: &str,
        dir: &Path,
        config: PathBuf,
        admin_socket: PathBuf,
        timeout: Duration,
    ) -> Server {
        let proc = spawn_role("server", &config);
        Server::wait_serving(proc, td, dir, config, admin_socket, timeout)
    }

    fn wait_serving(
        mut proc: Proc,
        td: &str,
        dir: &Path,
        config: PathBuf,
        admin_socket: PathBuf,
        timeout: Duration,
    ) -> Server {
        // Logged once the node API and the admin socket both accept.
        let line = proc.wait_for_line("server listening", timeout);
        let node_addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("node_api="))
            .expect("node_api= in the listening line")
            .parse()
            .expect("node_api= is an address");
        Server {
            td: td.to_string(),
            proc,
            dir: dir.to_path_buf(),
            config,
            admin_socket,
            node_addr,
            tmp: None,
        }
    }

    /// Runs `herald args... --socket <this server's admin socket>`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_on_socket(&self.admin_socket, args)
    }

    /// Like [`Server::run`]: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.run(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs an admin command that must succeed; its stdout.
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        assert_success(args, &self.run(args))
    }

    /// Runs an admin command with `--output json` that must succeed.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.cli_ok(&all)).expect("JSON output")
    }

    /// Runs an admin command that must fail with `code`, naming `needle`
    /// on stderr; its stderr.
    #[track_caller]
    pub fn cli_fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        assert_fails(args, &self.run(args), code, needle)
    }

    /// A fresh join token and the agent ID it attests as.
    pub fn join_token(&self) -> (String, String) {
        self.token_generate(&["token", "generate"])
    }

    /// A fresh join token for the agent ID `agent_id`.
    pub fn join_token_for(&self, agent_id: &str) -> String {
        self.token_generate(&["token", "generate", "--spiffe-id", agent_id])
            .0
    }

    fn token_generate(&self, args: &[&str]) -> (String, String) {
        let v = self.cli_json(args);
        (
            v["token"].as_str().expect("token").to_string(),
            v["agent_id"].as_str().expect("agent_id").to_string(),
        )
    }

    /// Writes a PEM bundle of a fresh trust domain `td` in `dir` and sets
    /// it by hand (`herald bundle set`).
    pub fn set_foreign_bundle(&self, td: &str, dir: &Path) {
        let pem: String = Peer::new(td)
            .bundle()
            .x509_authorities
            .iter()
            .map(|d| herald::ca::keys::der_to_pem(d, "CERTIFICATE"))
            .collect();
        let file = dir.join(format!("{td}.pem"));
        std::fs::write(&file, pem).expect("write the foreign bundle");
        self.cli_ok(&[
            "bundle",
            "set",
            "--trust-domain",
            td,
            "--path",
            file.to_str().expect("a UTF-8 temp path"),
            "--format",
            "pem",
        ]);
    }

    /// The trust bundle's roots as PEM.
    pub fn bundle_pem(&self) -> String {
        self.cli_ok(&["bundle", "show", "--format", "pem"])
    }

    /// Writes the trust bundle as PEM, e.g. for a bootstrap.
    pub fn bootstrap_pem(&self, path: &Path) {
        std::fs::write(path, self.bundle_pem()).expect("write the bundle PEM");
    }

    /// The config of an agent of this server living in `dir`.
    pub fn agent_toml(&self, dir: &Path, token: Option<&str>) -> AgentToml {
        AgentToml::new(
            dir,
            &self.td,
            &self.node_addr.to_string(),
            &self.bundle_pem(),
        )
        .join_token(token)
    }

    /// Writes the config of an agent of this server in `dir`; its path.
    pub fn agent_config(&self, dir: &Path, token: Option<&str>) -> PathBuf {
        self.agent_toml(dir, token).write()
    }

    /// An agent with a fresh join token in `dir`, started; and its ID.
    pub fn start_agent(&self, dir: &Path) -> (Agent, String) {
        let (token, agent_id) = self.join_token();
        let agent = Agent::start(&self.agent_config(dir, Some(&token)));
        (agent, agent_id)
    }

    /// Creates an entry for this very process (`unix:uid:<my uid>`) under
    /// `parent`, `extra` flags appended; its ID.
    #[track_caller]
    pub fn create_entry(&self, id: &str, parent: &str, extra: &[&str]) -> String {
        let mut flags = extra.to_vec();
        flags.extend(["--output", "json"]);
        let out = entry_create_on(&self.admin_socket, id, parent, &flags);
        let stdout = assert_success(&["entry", "create", "--spiffe-id", id], &out);
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
        v["results"][0]["entry"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// An agent process and its files.
pub struct Agent {
    pub proc: Proc,
    pub config: PathBuf,
    /// The Workload API socket.
    pub socket: PathBuf,
}

impl Agent {
    /// Starts an agent from `config` (in the layout of [`AgentToml`]) and
    /// waits until it serves.
    pub fn start(config: &Path) -> Agent {
        let mut proc = spawn_role("agent", config);
        proc.wait_for_line("agent running", START_TIMEOUT);
        Agent {
            proc,
            config: config.to_path_buf(),
            socket: config.with_file_name("api.sock"),
        }
    }
}

/// `herald entry create` through the admin socket `socket` of an entry
/// `id` for this process (`unix:uid:<my uid>`) under `parent`, `extra`
/// flags appended; the command's output, success or not (a test of
/// faults wants to see refusals).
pub fn entry_create_on(socket: &Path, id: &str, parent: &str, extra: &[&str]) -> Output {
    let selector = format!("unix:uid:{}", my_uid());
    let mut args = vec![
        "entry",
        "create",
        "--spiffe-id",
        id,
        "--parent-id",
        parent,
        "--selector",
        &selector,
    ];
    args.extend_from_slice(extra);
    run_on_socket(socket, &args)
}
