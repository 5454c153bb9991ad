//! Server and agent configuration: defaults, and errors that name the key.

use super::*;

fn server(text: &str) -> Result<ServerConfig, ConfigError> {
    ServerConfig::parse(Path::new("server.toml"), text)
}

#[test]
fn minimal_server_config_takes_defaults() {
    let c = server("trust_domain = \"example.org\"\ndata_dir = \"/tmp/x\"\n").unwrap();
    assert_eq!(c.ca_ttl, 86_400);
    assert_eq!(c.default_x509_svid_ttl, 3600);
    assert_eq!(c.default_jwt_svid_ttl, 300);
    // Root's default lives under /run/herald, never in a world-writable /tmp.
    assert_eq!(
        c.admin_socket,
        crate::runtime_dir::default_admin_socket(Path::new("/tmp/x"))
    );
    assert!(!c.admin_socket.starts_with("/tmp/herald-server"));
    assert_eq!(c.jwt_issuer, None);
    assert_eq!(c.audit_log, None);
}

#[test]
fn audit_path_is_taken_as_written_and_other_keys_are_refused() {
    let base = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";
    let c = server(&format!("{base}[audit]\npath = \"logs/audit.jsonl\"\n")).unwrap();
    assert_eq!(c.audit_log.as_deref(), Some(Path::new("logs/audit.jsonl")));
    let err = server(&format!("{base}[audit]\npath = \"\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("audit.path") && err.contains("must not be empty"),
        "{err}"
    );
    let err = server(&format!("{base}[audit]\npath = \"a\"\nfsync = true\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fsync"), "{err}");
    let err = server(&format!("{base}[audit]\n")).unwrap_err().to_string();
    assert!(err.contains("path"), "{err}");
}

#[test]
fn jwt_issuer_is_an_absolute_url() {
    let base = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";
    let c = server(&format!("{base}jwt_issuer = \"https://oidc.example.org\"")).unwrap();
    assert_eq!(c.jwt_issuer.as_deref(), Some("https://oidc.example.org"));
    for bad in ["", "oidc.example.org", "/issuer"] {
        let err = server(&format!("{base}jwt_issuer = {bad:?}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("jwt_issuer"), "{bad:?}: {err}");
    }
}

#[test]
fn server_errors_name_the_key() {
    let cases = [
        (
            "trust_domain = \"Example.org\"\ndata_dir = \"/x\"",
            "trust_domain",
        ),
        (
            "trust_domain = \"example.org\"\ndata_dir = \"/x\"\nca_ttl = \"1y\"",
            "ca_ttl",
        ),
        (
            "trust_domain = \"example.org\"\ndata_dir = \"/x\"\nbind_address = \"nowhere\"",
            "bind_address",
        ),
        (
            "trust_domain = \"example.org\"\ndata_dir = \"/x\"\nca_key_type = \"ed25519\"",
            "ca_key_type",
        ),
        (
            "trust_domain = \"example.org\"\ndata_dir = \"/x\"\ndefault_x509_svid_ttl = \"48h\"",
            "default_x509_svid_ttl",
        ),
        (
            "trust_domain = \"example.org\"\ndata_dir = \"/x\"\ncolour = \"blue\"",
            "colour",
        ),
        ("trust_domain = \"example.org\"", "data_dir"),
        ("trust_domain = 5\ndata_dir = \"/x\"", "trust_domain"),
    ];
    for (text, key) in cases {
        let err = server(text).unwrap_err().to_string();
        assert!(err.contains(key), "{text:?}: {err}");
        assert!(err.contains("server.toml"), "{err}");
    }
}

#[test]
fn shipped_example_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    ServerConfig::load(&root.join("server.toml")).unwrap();
    AgentConfig::load(&root.join("agent.toml")).unwrap();
}

#[test]
fn agent_bootstrap_is_explicit() {
    let base =
        "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\n";
    let p = Path::new("agent.toml");
    let err = AgentConfig::parse(p, base).unwrap_err().to_string();
    assert!(err.contains("trust_bundle_path"), "{err}");
    let c = AgentConfig::parse(p, &format!("{base}insecure_bootstrap = true\n")).unwrap();
    assert_eq!(c.bootstrap, Bootstrap::Insecure);
    let both = format!("{base}insecure_bootstrap = true\ntrust_bundle_path = \"/b.pem\"\n");
    assert!(AgentConfig::parse(p, &both)
        .unwrap_err()
        .to_string()
        .contains("insecure_bootstrap"));
    let bad = format!("{base}insecure_bootstrap = true\nserver_address = \"x\"\n");
    assert!(AgentConfig::parse(p, &bad).is_err());
}

#[test]
fn agent_jwt_leeway_is_bounded() {
    let base = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";
    let p = Path::new("agent.toml");
    assert_eq!(AgentConfig::parse(p, base).unwrap().jwt_svid_leeway, 30);
    let c = AgentConfig::parse(p, &format!("{base}jwt_svid_leeway = \"0s\"\n")).unwrap();
    assert_eq!(c.jwt_svid_leeway, 0);
    let err = AgentConfig::parse(p, &format!("{base}jwt_svid_leeway = \"1h\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("jwt_svid_leeway"), "{err}");
}

#[test]
fn agent_workload_api_limits_have_defaults_and_bounds() {
    let base = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";
    let p = Path::new("agent.toml");
    let d = AgentConfig::parse(p, base).unwrap().workload_api;
    assert_eq!(d.max_header_list_size, 16 * 1024);
    assert_eq!(d.max_connections_per_uid, 512);
    assert_eq!(d.max_concurrent_streams, 100);
    assert_eq!(d.keepalive_interval, std::time::Duration::from_secs(60));
    assert_eq!(d.idle_timeout, std::time::Duration::from_secs(300));
    assert_eq!(d.sha256_max_file_size, 64 * 1024 * 1024);

    let set = "workload_api_max_header_list_size = 8192\nworkload_api_max_connections_per_uid = 8\n\
               workload_api_max_concurrent_streams = 10\nworkload_api_keepalive_interval = \"10s\"\n\
               workload_api_idle_timeout = \"1m\"\nunix_sha256_max_file_size = 0\n";
    let c = AgentConfig::parse(p, &format!("{base}{set}"))
        .unwrap()
        .workload_api;
    assert_eq!(c.max_header_list_size, 8192);
    assert_eq!(c.max_connections_per_uid, 8);
    assert_eq!(c.max_concurrent_streams, 10);
    assert_eq!(c.keepalive_interval, std::time::Duration::from_secs(10));
    assert_eq!(c.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(c.sha256_max_file_size, 0);

    for (bad, key) in [
        (
            "workload_api_max_header_list_size = 100",
            "workload_api_max_header_list_size",
        ),
        (
            "workload_api_max_header_list_size = 4194304",
            "workload_api_max_header_list_size",
        ),
        (
            "workload_api_max_connections_per_uid = 0",
            "workload_api_max_connections_per_uid",
        ),
        (
            "workload_api_max_concurrent_streams = 0",
            "workload_api_max_concurrent_streams",
        ),
        (
            "workload_api_max_concurrent_streams = 100000",
            "workload_api_max_concurrent_streams",
        ),
        (
            "workload_api_keepalive_interval = \"0s\"",
            "workload_api_keepalive_interval",
        ),
        (
            "workload_api_idle_timeout = \"soon\"",
            "workload_api_idle_timeout",
        ),
        (
            "unix_sha256_max_file_size = -1",
            "unix_sha256_max_file_size",
        ),
    ] {
        let err = AgentConfig::parse(p, &format!("{base}{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

#[test]
fn ops_listener_is_off_unless_configured_and_its_errors_name_the_key() {
    let server_base = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";
    let agent_base = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";
    let p = Path::new("agent.toml");
    assert_eq!(server(server_base).unwrap().ops, None);
    assert_eq!(AgentConfig::parse(p, agent_base).unwrap().ops, None);
    let on = "[ops]\naddress = \"0.0.0.0:9464\"\n";
    let expected = Some(OpsConfig {
        address: "0.0.0.0:9464".parse().unwrap(),
    });
    assert_eq!(server(&format!("{server_base}{on}")).unwrap().ops, expected);
    assert_eq!(
        AgentConfig::parse(p, &format!("{agent_base}{on}"))
            .unwrap()
            .ops,
        expected
    );
    for (bad, names) in [
        ("[ops]\naddress = \"localhost\"\n", "ops.address"),
        ("[ops]\naddress = \"127.0.0.1:9464\"\nport = 1\n", "port"),
        ("[ops]\n", "address"),
    ] {
        let err = server(&format!("{server_base}{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(names), "{bad:?}: {err}");
        let err = AgentConfig::parse(p, &format!("{agent_base}{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(names), "{bad:?}: {err}");
    }
}

#[test]
fn x509pop_tables_are_checked() {
    let base = "trust_domain = \"example.org\"\ndata_dir = \"/x\"\n";
    assert!(server(base).unwrap().x509pop.is_none());
    let c = server(&format!(
        "{base}[node_attestors.x509pop]\nca_bundle_path = \"/r.pem\"\n"
    ))
    .unwrap();
    assert_eq!(c.x509pop.unwrap().ca_bundle_paths, [Path::new("/r.pem")]);
    let c = server(&format!(
        "{base}[node_attestors.x509pop]\nca_bundle_paths = [\"/a.pem\", \"/b.pem\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.x509pop.unwrap().ca_bundle_paths,
        [Path::new("/a.pem"), Path::new("/b.pem")]
    );
    for (bad, needle) in [
        (
            "ca_bundle_path = \"/r.pem\"\nca_bundle_paths = [\"/a.pem\"]\n",
            "cannot be set together with ca_bundle_path",
        ),
        ("ca_bundle_paths = []\n", "must list at least one file"),
        ("ca_bundle_paths = [\"\"]\n", "ca_bundle_paths"),
    ] {
        let err = server(&format!("{base}[node_attestors.x509pop]\n{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{bad:?}: {err}");
    }
    let bad = format!(
        "{base}[node_attestors.x509pop]\nca_bundle_path = \"/r.pem\"\nagent_path_template = \"/{{{{nope}}}}\"\n"
    );
    let err = server(&bad).unwrap_err().to_string();
    assert!(err.contains("agent_path_template"), "{err}");
    assert!(server(&format!("{base}[node_attestors.x509pop]\n")).is_err());

    let agent = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";
    let p = Path::new("agent.toml");
    let table =
        "[node_attestor.x509pop]\ncertificate_path = \"/c.pem\"\nprivate_key_path = \"/k.pem\"\n";
    let c = AgentConfig::parse(p, &format!("{agent}{table}")).unwrap();
    let node_attestors::NodeAttestation::X509Pop(files) = c.attestation else {
        panic!("not x509pop: {:?}", c.attestation);
    };
    assert_eq!(files.check_interval, std::time::Duration::from_secs(60));
    let every_5s = format!("{agent}{table}certificate_check_interval = \"5s\"\n");
    let c = AgentConfig::parse(p, &every_5s).unwrap();
    assert!(matches!(
        c.attestation,
        node_attestors::NodeAttestation::X509Pop(f) if f.check_interval.as_secs() == 5
    ));
    let zero = format!("{agent}{table}certificate_check_interval = \"0s\"\n");
    let err = AgentConfig::parse(p, &zero).unwrap_err().to_string();
    assert!(err.contains("certificate_check_interval"), "{err}");
    let both = format!("{agent}join_token = \"t\"\n{table}");
    let err = AgentConfig::parse(p, &both).unwrap_err().to_string();
    assert!(err.contains("exactly one attestation method"), "{err}");
}
