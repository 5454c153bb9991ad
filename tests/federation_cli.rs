//! `herald federation ...` and `herald bundle list|set|delete|show
//! --trust-domain` as an operator runs them: the real binary against the
//! admin services (served in-process on a Unix socket) of a server that
//! federates with a live peer on loopback. Bad input exits 2 naming the
//! field; a failed refresh exits 1 saying why.

mod harness;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use harness::bin::{assert_fails, assert_success, run, run_on_socket};
use harness::dirs::free_port;
use harness::peer::{serve_unix, Peer};
use herald::server::admin_api::admin_routes;
use herald::server::federation::{add_federation_services, RefresherSettings, WebRoots};

/// The CLI against an admin socket, run off the async workers (which
/// serve the admin API the CLI talks to).
struct Cli(PathBuf);

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        let socket = self.0.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_on_socket(&socket, &args)
        })
        .await
        .unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        assert_success(args, &self.run(args).await)
    }

    /// Runs a command that must fail with `code`, naming `needle`.
    async fn fails(&self, args: &[&str], code: i32, needle: &str) {
        assert_fails(args, &self.run(args).await, code, needle);
    }
}

/// Until `cli/mod.rs` routes `herald federation` here, the command is a
/// placeholder; this test then has nothing to check.
fn federation_cli_wired() -> bool {
    let out = run(&["federation", "create", "--help"]);
    String::from_utf8_lossy(&out.stdout).contains("--bundle-endpoint-url")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_federation_from_the_command_line() {
    assert!(
        federation_cli_wired(),
        "`herald federation create --help` lacks its flags"
    );
    let server = Peer::new("example.org");
    let (refresher, _task) = server.spawn_refresher(
        WebRoots::empty(),
        RefresherSettings {
            fetch_timeout: Duration::from_secs(5),
            ..RefresherSettings::default()
        },
    );
    let socket = server.dir().join("admin.sock");
    let routes = add_federation_services(
        admin_routes(server.state.clone()),
        server.state.clone(),
        refresher,
    );
    serve_unix(routes, &socket).await;
    let dir = tempfile::tempdir().unwrap();
    let peer = Peer::new("b.org");
    let addr = peer.serve_spiffe(60).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let bundle_file = dir.path().join("b.org.json");
    std::fs::write(&bundle_file, peer.bundle().to_spiffe_json().unwrap()).unwrap();
    let bundle_path = bundle_file.to_str().unwrap();
    let cli = Cli(socket);

    // Bad input: exit 2, the field named.
    cli.fails(
        &[
            "federation",
            "create",
            "--trust-domain",
            "example.org",
            "--bundle-endpoint-url",
            &url,
            "--profile",
            "https_web",
        ],
        2,
        "trust_domain",
    )
    .await;
    cli.fails(
        &[
            "federation",
            "create",
            "--trust-domain",
            "b.org",
            "--bundle-endpoint-url",
            &url,
            "--profile",
            "https_spiffe",
        ],
        2,
        "--endpoint-spiffe-id",
    )
    .await;
    cli.fails(
        &[
            "federation",
            "create",
            "--trust-domain",
            "b.org",
            "--bundle-endpoint-url",
            "http://b.org/",
            "--profile",
            "https_web",
        ],
        2,
        "bundle_endpoint_url",
    )
    .await;

    // Create with a bootstrap bundle, then refresh over https_spiffe.
    assert!(cli
        .ok(&[
            "federation",
            "create",
            "--trust-domain",
            "b.org",
            "--bundle-endpoint-url",
            &url,
            "--profile",
            "https_spiffe",
            "--endpoint-spiffe-id",
            "spiffe://b.org/herald/server",
            "--trust-domain-bundle",
            bundle_path,
        ])
        .await
        .contains("Created federation relationship with b.org"));
    assert!(cli
        .ok(&["federation", "refresh", "--trust-domain", "b.org"])
        .await
        .contains("Refreshed the bundle of b.org"));
    let doc: serde_json::Value =
        serde_json::from_str(&cli.ok(&["federation", "list", "--output", "json"]).await).unwrap();
    assert_eq!(doc["federation_relationships"][0]["trust_domain"], "b.org");
    assert_eq!(
        doc["federation_relationships"][0]["endpoint_spiffe_id"],
        "spiffe://b.org/herald/server"
    );
    let text = cli
        .ok(&["federation", "show", "--trust-domain", "b.org"])
        .await;
    assert!(
        text.contains("Endpoint SPIFFE ID") && text.contains("https_spiffe"),
        "{text}"
    );

    // The federated bundle through `herald bundle`.
    assert!(cli.ok(&["bundle", "list"]).await.contains("b.org"));
    let doc: serde_json::Value =
        serde_json::from_str(&cli.ok(&["bundle", "show", "--trust-domain", "b.org"]).await)
            .unwrap();
    assert_eq!(doc["spiffe_refresh_hint"], 60);
    let pem = cli
        .ok(&[
            "bundle",
            "show",
            "--trust-domain",
            "b.org",
            "--format",
            "pem",
        ])
        .await;
    assert!(pem.contains("BEGIN CERTIFICATE"));
    cli.fails(
        &["bundle", "delete", "--trust-domain", "b.org"],
        2,
        "federation relationship",
    )
    .await;

    // A bundle set by hand, from PEM, then deleted.
    let pem_file = dir.path().join("c.pem");
    std::fs::write(
        &pem_file,
        Peer::new("c.org")
            .state
            .authorities()
            .bundle()
            .x509_authorities
            .iter()
            .map(|d| herald::ca::keys::der_to_pem(d, "CERTIFICATE"))
            .collect::<String>(),
    )
    .unwrap();
    assert!(cli
        .ok(&[
            "bundle",
            "set",
            "--trust-domain",
            "c.org",
            "--path",
            pem_file.to_str().unwrap(),
            "--format",
            "pem",
        ])
        .await
        .contains("Set the bundle of c.org"));
    cli.fails(
        &[
            "bundle",
            "set",
            "--trust-domain",
            "example.org",
            "--path",
            bundle_path,
        ],
        2,
        "trust_domain",
    )
    .await;
    cli.ok(&["bundle", "delete", "--trust-domain", "c.org"])
        .await;

    // An endpoint that is down: the refresh fails with exit 1 and says why.
    let down = format!("https://127.0.0.1:{}/", free_port());
    assert!(cli
        .ok(&[
            "federation",
            "update",
            "--trust-domain",
            "b.org",
            "--bundle-endpoint-url",
            &down,
            "--profile",
            "https_spiffe",
            "--endpoint-spiffe-id",
            "spiffe://b.org/herald/server",
        ])
        .await
        .contains("Updated"));
    cli.fails(
        &["federation", "refresh", "--trust-domain", "b.org"],
        1,
        "unreachable",
    )
    .await;

    cli.ok(&["federation", "delete", "--trust-domain", "b.org"])
        .await;
    cli.fails(
        &["federation", "show", "--trust-domain", "b.org"],
        2,
        "trust_domain",
    )
    .await;
    let doc: serde_json::Value =
        serde_json::from_str(&cli.ok(&["bundle", "list", "--output", "json"]).await).unwrap();
    assert_eq!(doc["bundles"].as_array().unwrap().len(), 0);
}
