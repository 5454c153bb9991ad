//! Real `herald server run` and `herald agent run` processes on temp dirs,
//! Unix sockets and loopback ports, for end-to-end tests.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::herald;

/// A running process whose stderr is collected in the background.
pub struct Proc {
    pub child: Child,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Proc { child, log, lines }
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGTERM, then wait (10 s at most, then SIGKILL). Returns the exit
    /// status of a clean stop, None if it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process and its files.
pub struct Server {
    pub td: String,
    pub proc: Proc,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin_socket: PathBuf,
    pub node_addr: String,
}

/// Writes a server config under `dir` (extra TOML lines appended) and starts it.
pub fn start_server(dir: &Path, extra: &str) -> Server {
    start_server_td(dir, "example.org", extra)
}

/// Like [`start_server`], for trust domain `td`.
pub fn start_server_td(dir: &Path, td: &str, extra: &str) -> Server {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("server.toml");
    let admin_socket = dir.join("admin.sock");
    if !config.exists() {
        let bind = if extra.contains("bind_address") {
            ""
        } else {
            "bind_address = \"127.0.0.1:0\"\n"
        };
        std::fs::write(
            &config,
            format!(
                "trust_domain = \"{td}\"\ndata_dir = \"{}\"\n{bind}admin_socket = \"{}\"\nlog_level = \"info\"\n{extra}",
                dir.join("data").display(),
                admin_socket.display()
            ),
        )
        .unwrap();
    }
    let mut cmd = herald();
    cmd.args(["server", "run", "--config", config.to_str().unwrap()]);
    let mut proc = Proc::spawn(cmd);
    let line = proc.wait_for_line("server listening", Duration::from_secs(30));
    let node_addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("node_api="))
        .expect("node_api in the listening line")
        .to_string();
    Server {
        td: td.to_string(),
        proc,
        dir: dir.to_path_buf(),
        config,
        admin_socket,
        node_addr,
    }
}

impl Server {
    /// Runs an admin CLI command against this server; returns (code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = herald()
            .args(args)
            .env("HERALD_ADMIN_SOCKET", &self.admin_socket)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like `cli`, asserting success.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.cli(args);
        assert_eq!(code, 0, "herald {args:?}: {err}");
        out
    }

    /// A fresh join token and the agent ID it attests as.
    pub fn join_token(&self) -> (String, String) {
        let out = self.cli_ok(&["token", "generate", "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["token"].as_str().unwrap().to_string(),
            v["agent_id"].as_str().unwrap().to_string(),
        )
    }

    /// Writes the trust bundle as PEM for an agent's bootstrap.
    pub fn bootstrap_pem(&self, path: &Path) {
        let pem = self.cli_ok(&["bundle", "show", "--format", "pem"]);
        std::fs::write(path, pem).unwrap();
    }
}

/// An agent process and its files.
pub struct Agent {
    pub proc: Proc,
    pub config: PathBuf,
    pub socket: PathBuf,
}

/// The agent config for `server`, in `dir`.
pub fn agent_config(server: &Server, dir: &Path, token: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    // Workloads of other users must reach the socket: open up the path.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.join("bootstrap.pem");
    server.bootstrap_pem(&bundle);
    let config = dir.join("agent.toml");
    let mut text = format!(
        "trust_domain = \"{}\"\nserver_address = \"{}\"\ndata_dir = \"{}\"\nsocket_path = \"{}\"\ntrust_bundle_path = \"{}\"\nlog_level = \"info\"\n",
        server.td,
        server.node_addr,
        dir.join("data").display(),
        dir.join("api.sock").display(),
        bundle.display()
    );
    if let Some(t) = token {
        text.push_str(&format!("join_token = \"{t}\"\n"));
    }
    std::fs::write(&config, text).unwrap();
    config
}

/// Starts an agent from `config` and waits until it serves.
pub fn start_agent(config: &Path) -> Agent {
    let mut cmd = herald();
    cmd.args(["agent", "run", "--config", config.to_str().unwrap()]);
    let mut proc = Proc::spawn(cmd);
    proc.wait_for_line("agent running", Duration::from_secs(30));
    let socket = config.parent().unwrap().join("api.sock");
    Agent {
        proc,
        config: config.to_path_buf(),
        socket,
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real uid of this test process.
pub fn my_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Runs `herald api fetch x509 --write out` against an agent socket until
/// the workload's SVID is there (bounded), and returns its chain (DER).
pub fn fetch_x509_files(socket: &Path, out: &Path) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = herald()
            .args([
                "api",
                "fetch",
                "x509",
                "--socket",
                socket.to_str().unwrap(),
                "--write",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pem = std::fs::read_to_string(out.join("svid.0.pem")).unwrap();
    herald::ca::keys::pem_blocks(&pem, "CERTIFICATE").unwrap()
}

/// `openssl verify -x509_strict` of a leaf + one intermediate (DER) against
/// the PEM roots file `roots` in `dir`; returns (verified, openssl's output).
pub fn openssl_verify_chain(dir: &Path, certs: &[Vec<u8>], roots: &str) -> (bool, String) {
    std::fs::write(
        dir.join("leaf.pem"),
        herald::ca::keys::der_to_pem(&certs[0], "CERTIFICATE"),
    )
    .unwrap();
    std::fs::write(
        dir.join("inter.pem"),
        herald::ca::keys::der_to_pem(&certs[1], "CERTIFICATE"),
    )
    .unwrap();
    super::openssl(
        dir,
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            roots,
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    )
}
