//! Server and agent configuration files, written the one way every test
//! and bench writes them: a builder over the keys that vary, TOML text
//! rendered from it, a file in the role's directory.
//!
//! Layout of a role's directory `dir`: `server.toml` or `agent.toml`,
//! `data/` (its data dir), `admin.sock` (server) or `api.sock` (agent),
//! `bootstrap.pem` (agent).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The trust domain unless a test names another.
pub const TRUST_DOMAIN: &str = "example.org";

/// A `herald server run` configuration.
#[derive(Debug, Clone)]
pub struct ServerToml {
    dir: PathBuf,
    trust_domain: String,
    bind_address: String,
    log_level: String,
    extra: String,
}

impl ServerToml {
    /// A server of [`TRUST_DOMAIN`] living in `dir`, its node API on a
    /// free loopback port, logging at `info` (tests wait on its log lines).
    pub fn new(dir: &Path) -> ServerToml {
        ServerToml {
            dir: dir.to_path_buf(),
            trust_domain: TRUST_DOMAIN.to_string(),
            bind_address: "127.0.0.1:0".to_string(),
            log_level: "info".to_string(),
            extra: String::new(),
        }
    }

    pub fn trust_domain(mut self, td: &str) -> ServerToml {
        self.trust_domain = td.to_string();
        self
    }

    /// The node API's address (a fixed port, to come back on after a restart).
    pub fn bind_address(mut self, addr: &str) -> ServerToml {
        self.bind_address = addr.to_string();
        self
    }

    pub fn log_level(mut self, level: &str) -> ServerToml {
        self.log_level = level.to_string();
        self
    }

    /// TOML appended as it is: more top-level keys first, then any tables
    /// (`[federation]`…). Called again, it appends again.
    pub fn extra(mut self, toml: &str) -> ServerToml {
        self.extra.push_str(toml);
        self
    }

    pub fn td(&self) -> &str {
        &self.trust_domain
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("server.toml")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    pub fn render(&self) -> String {
        format!(
            "trust_domain = \"{}\"\ndata_dir = \"{}\"\nbind_address = \"{}\"\n\
             admin_socket = \"{}\"\nlog_level = \"{}\"\n{}",
            self.trust_domain,
            self.dir.join("data").display(),
            self.bind_address,
            self.admin_socket().display(),
            self.log_level,
            self.extra
        )
    }

    /// Writes `server.toml` (creating the directory); its path.
    pub fn write(&self) -> PathBuf {
        std::fs::create_dir_all(&self.dir).expect("create the server dir");
        let path = self.path();
        std::fs::write(&path, self.render()).expect("write server.toml");
        path
    }
}

/// A `herald agent run` configuration.
#[derive(Debug, Clone)]
pub struct AgentToml {
    dir: PathBuf,
    trust_domain: String,
    server_address: String,
    /// When set, `server_address` is written as this array instead.
    server_addresses: Option<Vec<String>>,
    bootstrap_pem: String,
    join_token: Option<String>,
    log_level: String,
    extra: String,
}

impl AgentToml {
    /// An agent living in `dir` that joins the server of `trust_domain` at
    /// `server_address`, trusting it by the roots in `bootstrap_pem`;
    /// logging at `info`, without a join token (it reuses a saved SVID).
    pub fn new(
        dir: &Path,
        trust_domain: &str,
        server_address: &str,
        bootstrap_pem: &str,
    ) -> AgentToml {
        AgentToml {
            dir: dir.to_path_buf(),
            trust_domain: trust_domain.to_string(),
            server_address: server_address.to_string(),
            server_addresses: None,
            bootstrap_pem: bootstrap_pem.to_string(),
            join_token: None,
            log_level: "info".to_string(),
            extra: String::new(),
        }
    }

    pub fn join_token(mut self, token: Option<&str>) -> AgentToml {
        self.join_token = token.map(str::to_string);
        self
    }

    /// Several servers: `server_address` as an array, tried in this order.
    pub fn server_addresses(mut self, addrs: &[String]) -> AgentToml {
        self.server_addresses = Some(addrs.to_vec());
        self
    }

    pub fn log_level(mut self, level: &str) -> AgentToml {
        self.log_level = level.to_string();
        self
    }

    /// TOML appended as it is, after every top-level key: tables such as
    /// `[workload_attestors.k8s]` or `[ops]`. Called again, it appends again.
    pub fn extra(mut self, toml: &str) -> AgentToml {
        self.extra.push_str(toml);
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// The Workload API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    fn bootstrap_path(&self) -> PathBuf {
        self.dir.join("bootstrap.pem")
    }

    pub fn render(&self) -> String {
        let servers = match &self.server_addresses {
            Some(list) => format!("{list:?}"),
            None => format!("\"{}\"", self.server_address),
        };
        let mut text = format!(
            "trust_domain = \"{}\"\nserver_address = {}\ndata_dir = \"{}\"\n\
             socket_path = \"{}\"\ntrust_bundle_path = \"{}\"\nlog_level = \"{}\"\n",
            self.trust_domain,
            servers,
            self.dir.join("data").display(),
            self.socket().display(),
            self.bootstrap_path().display(),
            self.log_level,
        );
        if let Some(t) = &self.join_token {
            text.push_str(&format!("join_token = \"{t}\"\n"));
        }
        text.push_str(&self.extra);
        text
    }

    /// Writes `bootstrap.pem` and `agent.toml` (creating the directory,
    /// open to all so workloads of other users reach the socket); the
    /// config's path.
    pub fn write(&self) -> PathBuf {
        std::fs::create_dir_all(&self.dir).expect("create the agent dir");
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
            .expect("open up the agent dir");
        std::fs::write(self.bootstrap_path(), &self.bootstrap_pem).expect("write bootstrap.pem");
        let path = self.path();
        std::fs::write(&path, self.render()).expect("write agent.toml");
        path
    }
}
