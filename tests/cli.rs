//! The `herald` command line as a user meets it: real processes, real data
//! directories. Bad input exits 2 with one line naming what was wrong.

mod harness;

use harness::bin::{assert_fails, now, run, run_ok};

#[track_caller]
fn assert_bad_input(args: &[&str], needle: &str) {
    assert_fails(args, &run(args), 2, needle);
}

#[test]
fn help_lists_every_command_group() {
    let help = run_ok(&["--help"]);
    for group in [
        "server",
        "agent",
        "dev",
        "entry",
        "bundle",
        "federation",
        "token",
        "x509",
        "jwt",
        "authority",
        "check",
        "healthcheck",
        "api",
    ] {
        assert!(help.contains(group), "--help lacks {group}: {help}");
    }
}

#[test]
fn bad_mint_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://Example.org/x",
        ],
        "--spiffe-id",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/a//b",
        ],
        "--spiffe-id",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org",
        ],
        "has no path",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/x",
            "--ttl",
            "1x",
        ],
        "--ttl",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/x",
            "--ttl",
            "0",
        ],
        "--ttl",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/x",
            "--key-type",
            "ed448",
        ],
        "--key-type",
    );
    assert_bad_input(
        &[
            "x509",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/x",
            "--dns-name",
            "bad name",
        ],
        "--dns-name",
    );
    assert_bad_input(
        &[
            "jwt",
            "mint",
            "--data-dir",
            d,
            "--spiffe-id",
            "spiffe://example.org/x",
            "--audience",
            "",
        ],
        "--audience",
    );
    assert_bad_input(
        &["bundle", "show", "--data-dir", "/nonexistent/herald"],
        "--data-dir",
    );
    // Missing required flags are clap usage errors: also exit 2.
    assert_bad_input(&["x509", "mint", "--data-dir", d], "--spiffe-id");
}

#[test]
fn a_data_dir_keeps_one_ca_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    run_ok(&[
        "x509",
        "mint",
        "--data-dir",
        d,
        "--spiffe-id",
        "spiffe://example.org/a",
        "--output",
        "json",
    ]);
    let first = run_ok(&["bundle", "show", "--data-dir", d]);
    run_ok(&[
        "x509",
        "mint",
        "--data-dir",
        d,
        "--spiffe-id",
        "spiffe://example.org/b",
    ]);
    let second = run_ok(&["bundle", "show", "--data-dir", d]);
    assert_eq!(
        first, second,
        "a second mint must reuse the CA, not make a new one"
    );
    let bundle: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(bundle["spiffe_sequence"], 1);
    let uses: Vec<_> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["use"].as_str().unwrap().to_string())
        .collect();
    assert!(uses.contains(&"x509-svid".to_string()) && uses.contains(&"jwt-svid".to_string()));

    // Another trust domain in the same data dir is refused with a clear line.
    let out = run(&[
        "x509",
        "mint",
        "--data-dir",
        d,
        "--spiffe-id",
        "spiffe://other.org/a",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trust domain example.org"));
}

#[test]
fn jwt_mint_prints_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    let token = run_ok(&[
        "jwt",
        "mint",
        "--data-dir",
        d,
        "--spiffe-id",
        "spiffe://example.org/w",
        "--audience",
        "db",
    ]);
    let token = token.trim();
    let json = run_ok(&["bundle", "show", "--data-dir", d]);
    let td = herald::spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = herald::spiffe::Bundle::from_spiffe_json(td, json.as_bytes()).unwrap();
    let claims = herald::ca::verify_jwt_svid(token, |_| Some(&bundle), "db", now()).unwrap();
    assert_eq!(claims.sub.as_str(), "spiffe://example.org/w");
}

#[test]
fn check_validates_config_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for f in ["server.toml", "agent.toml", "federation.toml"] {
        let p = root.join(f);
        let out = run_ok(&["check", "--config", p.to_str().unwrap()]);
        assert!(out.contains("valid"), "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("server.toml");
    std::fs::write(
        &bad,
        "trust_domain = \"example.org\"\ndata_dir = \"/x\"\nca_ttl = \"soon\"\n",
    )
    .unwrap();
    assert_bad_input(&["check", "--config", bad.to_str().unwrap()], "ca_ttl");
    assert_bad_input(&["healthcheck"], "--admin-socket");
}
