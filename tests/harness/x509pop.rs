//! x509pop deployments made at test time: a server trusting machine PKIs
//! (`ca_bundle_paths`), and agents whose machine certificate and key are
//! files in their directory, which a test may replace (a renewal).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald::x509pop::test_pki::{Machine, TestCa};

use super::cluster::Server;

/// A server of example.org in `dir/server` trusting each of `roots` for
/// x509pop (one PEM file each, through `ca_bundle_paths`), with `top`
/// TOML among its top-level keys and `extra` in its
/// `[node_attestors.x509pop]` table.
pub fn server(dir: &Path, roots: &[&TestCa], top: &str, extra: &str) -> Server {
    std::fs::create_dir_all(dir).expect("create the test dir");
    let files: Vec<String> = roots
        .iter()
        .enumerate()
        .map(|(i, root)| {
            let file = dir.join(format!("machine-roots-{i}.pem"));
            std::fs::write(&file, root.pem()).expect("write the machine roots");
            format!("{:?}", file.display().to_string())
        })
        .collect();
    let table = format!(
        "{top}[node_attestors.x509pop]\nca_bundle_paths = [{}]\n{extra}",
        files.join(", ")
    );
    Server::start(&dir.join("server"), &table)
}

/// Writes `machine`'s certificate (and `inter` as intermediates) and key
/// into `dir`, replacing what is there: what a renewal does on a machine.
pub fn write_machine(dir: &Path, machine: &Machine, inter: &TestCa) {
    std::fs::create_dir_all(dir).expect("create the agent dir");
    let leaf = herald::ca::pem::der_to_pem(&machine.leaf, "CERTIFICATE");
    // Key first: a certificate never meets an older key when it is read.
    std::fs::write(dir.join("machine.key"), &machine.key_pem).expect("write machine.key");
    std::fs::write(dir.join("intermediates.pem"), inter.pem()).expect("write intermediates");
    std::fs::write(dir.join("machine.pem"), leaf).expect("write machine.pem");
}

/// Writes `machine`'s files into `dir` and the config of an agent of
/// `server` using them, `extra` TOML appended to its
/// `[node_attestor.x509pop]` table; the config's path.
pub fn agent_config(
    server: &Server,
    dir: &Path,
    machine: &Machine,
    inter: &TestCa,
    extra: &str,
) -> PathBuf {
    write_machine(dir, machine, inter);
    let table = format!(
        "[node_attestor.x509pop]\ncertificate_path = \"{}\"\nprivate_key_path = \"{}\"\nintermediates_path = \"{}\"\n{extra}",
        dir.join("machine.pem").display(),
        dir.join("machine.key").display(),
        dir.join("intermediates.pem").display()
    );
    server.agent_toml(dir, None).extra(&table).write()
}

/// The agent ID of `machine` under the default template.
pub fn default_agent_id(machine: &Machine) -> String {
    format!(
        "spiffe://example.org/herald/agent/x509pop/{}",
        herald::x509pop::fingerprint(&machine.leaf)
    )
}

/// An agent record's selectors as `type:value` strings.
pub fn selector_values(shown: &serde_json::Value) -> Vec<String> {
    shown["selectors"]
        .as_array()
        .expect("selectors in the agent record")
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["type"].as_str().unwrap_or_default(),
                s["value"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Polls `herald agent show` for `agent_id` until `done` holds of the
/// record; panics naming `what` after `within`.
pub fn wait_for_agent(
    server: &Server,
    agent_id: &str,
    within: Duration,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, out, _) =
            server.cli(&["agent", "show", "--spiffe-id", agent_id, "--output", "json"]);
        if code == 0 {
            let shown: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
            if done(&shown) {
                return shown;
            }
        }
        assert!(Instant::now() < deadline, "{what}: last seen {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `herald entry create --node --spiffe-id <id> --selector ...` (a node
/// alias entry), `extra` flags appended: the command line.
pub fn alias_args<'a>(id: &'a str, selectors: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["entry", "create", "--node", "--spiffe-id", id];
    for s in selectors {
        args.extend(["--selector", s]);
    }
    args.extend_from_slice(extra);
    args
}

/// Creates a node alias entry for `id` with `selectors`; its entry ID.
pub fn create_alias(server: &Server, id: &str, selectors: &[&str]) -> String {
    let v = server.cli_json(&alias_args(id, selectors, &[]));
    let entry = &v["results"][0]["entry"];
    assert_eq!(
        entry["parent_id"], "spiffe://example.org/herald/server",
        "{v}"
    );
    entry["id"].as_str().expect("the entry ID").to_string()
}
