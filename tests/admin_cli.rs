//! The admin commands (`entry`, `token`, `agent`, and the socket forms of
//! `bundle show`, `x509 mint` and `jwt mint`) against a real
//! `herald server run` process: round trips, and bad input refused with
//! exit 2 and the field named on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `herald server run` process on a temp directory; killed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "trust_domain = \"example.org\"\ndata_dir = \"{}\"\nbind_address = \"127.0.0.1:0\"\nadmin_socket = \"{}\"\n",
                dir.path().join("data").display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["server", "run", "--config", config.to_str().unwrap()])
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_ADMIN_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn herald server run");
        let mut server = Server { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.socket.exists() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("herald server run exited with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "no admin socket after 20 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `herald args... --socket <ours>`.
    fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--socket", self.socket.to_str().unwrap()]);
        herald(&all)
    }

    /// Runs a command that must succeed; returns stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "herald {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs a command that must fail with `code`, naming `needle` on stderr.
    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, needle: &str) -> String {
        let out = self.run(args);
        check_failure(args, &out, code, needle)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_LOG")
        .env_remove("HERALD_ADMIN_SOCKET")
        .output()
        .expect("spawn herald")
}

#[track_caller]
fn check_failure(args: &[&str], out: &Output, code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "herald {args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "herald {args:?}: expected {needle:?} in {stderr:?}"
    );
    assert!(
        stderr.starts_with("herald: ") || stderr.starts_with("error:"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

const PARENT: &str = "spiffe://example.org/herald/agent/join_token/t1";

#[test]
fn entry_commands_round_trip() {
    let s = Server::start();
    let created = s.json(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        PARENT,
        "--selector",
        "unix:uid:1000",
        "--selector",
        "unix:gid:50",
        "--x509-svid-ttl",
        "2h",
        "--dns-name",
        "web.example.org",
        "--hint",
        "web",
    ]);
    let entry = &created["results"][0]["entry"];
    assert_eq!(created["results"][0]["status"]["code"], 0);
    assert_eq!(entry["x509_svid_ttl"], 7200);
    assert_eq!(entry["selectors"][0]["value"], "uid:1000");
    let id = entry["id"].as_str().unwrap().to_string();

    let shown = s.json(&["entry", "show", "--entry-id", &id]);
    assert_eq!(&shown, entry);
    let table = s.ok(&["entry", "show", "--entry-id", &id]);
    assert!(table.contains("spiffe://example.org/web") && table.contains("unix:gid:50"));

    // Whole-entry replace.
    let updated = s.json(&[
        "entry",
        "update",
        "--entry-id",
        &id,
        "--spiffe-id",
        "spiffe://example.org/web",
        "--parent-id",
        PARENT,
        "--selector",
        "unix:uid:1001",
        "--admin",
    ]);
    let u = &updated["results"][0]["entry"];
    assert_eq!(u["revision_number"], 2);
    assert_eq!(u["admin"], true);
    assert_eq!(u["x509_svid_ttl"], 0);
    assert_eq!(u["selectors"].as_array().unwrap().len(), 1);

    // A batch from a file; the duplicate fails alone, with its own line.
    let data = s.dir.path().join("entries.json");
    let batch: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/batch/{i}"),
                "parent_id": PARENT,
                "selectors": [{"type": "k8s", "value": format!("pod:{i}")}],
            })
        })
        .chain([serde_json::json!({
            "spiffeId": "spiffe://example.org/batch/0",
            "parentId": PARENT,
            "selectors": ["k8s:pod:0"],
        })])
        .collect();
    std::fs::write(&data, serde_json::json!({ "entries": batch }).to_string()).unwrap();
    let stderr = s.fails(
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "1 of 6 entries failed",
    );
    assert!(
        stderr.contains("entry 5 (spiffe://example.org/batch/0)")
            && stderr.contains("already exists"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // Listing follows every page.
    let listed = s.json(&["entry", "list", "--page-size", "2"]);
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    let table = s.ok(&["entry", "list"]);
    assert!(
        table.starts_with("ENTRY ID") && table.contains("6 entries"),
        "{table}"
    );
    let listed = s.json(&[
        "entry",
        "list",
        "--selector",
        "k8s:pod:3",
        "--match",
        "superset",
    ]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
    let listed = s.json(&["entry", "list", "--spiffe-id", "spiffe://example.org/web"]);
    assert_eq!(listed["entries"][0]["id"], id.as_str());
    let listed = s.json(&["entry", "list", "--parent-id", PARENT]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 6);

    // The list output feeds back as --data (ids included): all duplicates now.
    let dump = s.dir.path().join("dump.json");
    std::fs::write(&dump, s.ok(&["entry", "list", "--output", "json"])).unwrap();
    s.fails(
        &["entry", "create", "--data", dump.to_str().unwrap()],
        2,
        "6 of 6 entries failed",
    );

    let out = s.ok(&["entry", "delete", "--entry-id", &id]);
    assert!(out.contains(&id));
    s.fails(
        &["entry", "show", "--entry-id", &id],
        2,
        &format!("entry {id} not found"),
    );
    let listed = s.json(&["entry", "list"]);
    assert_eq!(listed["entries"].as_array().unwrap().len(), 5);
}

#[test]
fn bad_entry_input_names_the_field() {
    let s = Server::start();
    fn create<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            PARENT,
        ];
        args.extend(extra);
        args
    }
    s.fails(
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://Example.org/x",
            "--parent-id",
            PARENT,
            "--selector",
            "unix:uid:1",
        ],
        2,
        "spiffe_id: \"spiffe://Example.org/x\" is not a valid SPIFFE ID",
    );
    s.fails(
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            "spiffe://unknown.org/agent",
            "--selector",
            "unix:uid:1",
        ],
        2,
        "parent_id: spiffe://unknown.org/agent is not in trust domain example.org",
    );
    s.fails(
        &create(&["--selector", "unix:"]),
        2,
        "selectors[0].value: must not be empty",
    );
    s.fails(&create(&["--selector", "nocolon"]), 2, "--selector");
    s.fails(
        &create(&["--selector", "unix:uid:1", "--x509-svid-ttl", "400d"]),
        2,
        "x509_svid_ttl: 34560000 out of range",
    );
    s.fails(
        &create(&["--selector", "unix:uid:1", "--jwt-svid-ttl", "soon"]),
        2,
        "--jwt-svid-ttl",
    );
    s.fails(
        &create(&["--selector", "unix:uid:1", "--federates-with", "other.org"]),
        2,
        "federates_with: no bundle for trust domain other.org",
    );
    // Missing required flags are clap usage errors: also exit 2.
    let out = s.run(&["entry", "create", "--spiffe-id", "spiffe://example.org/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--parent-id"));

    s.fails(
        &["entry", "show", "--entry-id", "nope"],
        2,
        "entry nope not found",
    );
    s.fails(
        &[
            "entry",
            "update",
            "--entry-id",
            "nope",
            "--spiffe-id",
            "spiffe://example.org/x",
            "--parent-id",
            PARENT,
            "--selector",
            "unix:uid:1",
        ],
        2,
        "entry nope not found",
    );
    s.fails(
        &["entry", "delete", "--entry-id", "nope"],
        2,
        "entry nope not found",
    );
    s.fails(&["entry", "list", "--page-size", "20000"], 2, "page_size");
    s.fails(
        &["entry", "list", "--spiffe-id", "spiffe://Example.org/x"],
        2,
        "filter.by_spiffe_id",
    );

    let data = s.dir.path().join("bad.json");
    std::fs::write(
        &data,
        r#"{"entries":[{"spiffe_id":"spiffe://example.org/a","ttl":5}]}"#,
    )
    .unwrap();
    s.fails(
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "--data: entries[0].ttl: unknown field",
    );
    std::fs::write(&data, "not json").unwrap();
    s.fails(
        &["entry", "create", "--data", data.to_str().unwrap()],
        2,
        "--data",
    );
    s.fails(
        &["entry", "create", "--data", "/nonexistent/e.json"],
        2,
        "--data",
    );
}

#[test]
fn tokens_agents_bundle_and_mint_over_the_socket() {
    let s = Server::start();
    let before = now();
    let token = s.json(&["token", "generate", "--ttl", "2m"]);
    let value = token["token"].as_str().unwrap();
    assert_eq!(value.len(), 32);
    let expires_at = token["expires_at"].as_i64().unwrap();
    assert!(
        (before + 120..=now() + 120).contains(&expires_at),
        "{token}"
    );
    assert_eq!(
        token["agent_id"],
        format!("spiffe://example.org/herald/agent/join_token/{value}")
    );
    let table = s.ok(&[
        "token",
        "generate",
        "--spiffe-id",
        "spiffe://example.org/node/1",
    ]);
    assert!(table.contains("Token:") && table.contains("spiffe://example.org/node/1"));
    s.fails(
        &[
            "token",
            "generate",
            "--spiffe-id",
            "spiffe://other.org/node",
        ],
        2,
        "agent_id: spiffe://other.org/node is not in trust domain",
    );
    s.fails(&["token", "generate", "--ttl", "x"], 2, "--ttl");

    let agents = s.json(&["agent", "list"]);
    assert!(agents["agents"].as_array().unwrap().is_empty());
    assert!(s.ok(&["agent", "list"]).contains("0 agents"));
    let unknown = "spiffe://example.org/herald/agent/join_token/nobody";
    for cmd in ["show", "evict", "ban"] {
        s.fails(
            &["agent", cmd, "--spiffe-id", unknown],
            2,
            &format!("agent {unknown} not found"),
        );
        s.fails(
            &["agent", cmd, "--spiffe-id", "spiffe://Example.org/a"],
            2,
            "id: ",
        );
    }

    // The bundle over the socket.
    let bundle = s.ok(&["bundle", "show"]);
    let parsed = herald::spiffe::Bundle::from_spiffe_json(
        herald::spiffe::TrustDomain::new("example.org").unwrap(),
        bundle.as_bytes(),
    )
    .unwrap();
    assert!(!parsed.x509_authorities.is_empty());
    assert!(s
        .ok(&["bundle", "show", "--format", "pem"])
        .contains("BEGIN CERTIFICATE"));

    // An X509-SVID: key made here, CSR signed by the server.
    let out = s.dir.path().join("svid");
    let summary = s.json(&[
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/cli",
        "--dns-name",
        "cli.example.org",
        "--ttl",
        "10m",
        "--write",
        out.to_str().unwrap(),
    ]);
    assert_eq!(summary["spiffe_id"], "spiffe://example.org/cli");
    assert!(summary["expires_at"].as_i64().unwrap() <= now() + 600);
    check_svid_files(&out, "spiffe://example.org/cli");
    s.fails(
        &[
            "x509",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/herald/x",
        ],
        2,
        "csr: URI SAN",
    );
    s.fails(
        &["x509", "mint", "--spiffe-id", "spiffe://other.org/x"],
        2,
        "not in trust domain",
    );

    // A JWT-SVID that verifies against the bundle.
    let token = s.ok(&[
        "jwt",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/cli",
        "--audience",
        "db",
    ]);
    let claims = herald::ca::verify_jwt_svid(token.trim(), |_| Some(&parsed), "db", now()).unwrap();
    assert_eq!(claims.sub.as_str(), "spiffe://example.org/cli");
    s.fails(
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://example.org/cli",
            "--audience",
            "",
        ],
        2,
        "--audience",
    );
    s.fails(
        &[
            "jwt",
            "mint",
            "--spiffe-id",
            "spiffe://other.org/cli",
            "--audience",
            "db",
        ],
        2,
        "id: spiffe://other.org/cli is not in trust domain",
    );
}

#[test]
fn an_unreachable_socket_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().unwrap();
    for args in [
        vec!["entry", "list", "--socket", socket],
        vec!["token", "generate", "--socket", socket],
        vec!["agent", "list", "--socket", socket],
        vec!["bundle", "show", "--socket", socket],
    ] {
        let out = herald(&args);
        check_failure(
            &args,
            &out,
            1,
            &format!("cannot reach the server admin socket at {socket}: "),
        );
    }
    // The environment names the socket too.
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["entry", "show", "--entry-id", "x"])
        .env("HERALD_ADMIN_SOCKET", socket)
        .output()
        .unwrap();
    check_failure(&["entry", "show"], &out, 1, socket);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn check_svid_files(dir: &Path, id: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let key = dir.join("svid.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = herald::ca::KeyPair::from_pem(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let chain = std::fs::read_to_string(dir.join("svid.pem")).unwrap();
    let leaf = herald::ca::keys::pem_blocks(&chain, "CERTIFICATE")
        .unwrap()
        .remove(0);
    let facts = herald::ca::x509::cert_facts(&leaf).unwrap();
    assert_eq!(facts.uri_sans, vec![id.to_string()]);
    assert_eq!(facts.public_key_spki, key.public_key_spki());
    let bundle = std::fs::read_to_string(dir.join("bundle.pem")).unwrap();
    assert!(bundle.contains("BEGIN CERTIFICATE"));
}
