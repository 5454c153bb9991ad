//! OpenSSL as an independent verifier of what Herald signs.

use std::path::Path;
use std::process::Command;

/// Runs `openssl args...` in `dir`; (success, stdout and stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed to run these tests");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `openssl verify -x509_strict` of a leaf + one intermediate (DER) against
/// the PEM roots file `roots` in `dir`; (verified, openssl's output).
pub fn verify_chain(dir: &Path, certs: &[Vec<u8>], roots: &str) -> (bool, String) {
    let pem = |der: &[u8]| herald::ca::keys::der_to_pem(der, "CERTIFICATE");
    std::fs::write(dir.join("leaf.pem"), pem(&certs[0])).expect("write leaf.pem");
    std::fs::write(dir.join("inter.pem"), pem(&certs[1])).expect("write inter.pem");
    openssl(
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

/// A new 2048-bit RSA key made by openssl in `dir`: its PKCS#8 PEM file
/// `<name>.key` and the same key as PKCS#8 DER (`<name>.der`), returned.
pub fn rsa_key(dir: &Path, name: &str) -> Vec<u8> {
    let (pem, der) = (format!("{name}.key"), format!("{name}.der"));
    let (ok, out) = openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &pem,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER", "-out", &der,
        ],
    );
    assert!(ok, "{out}");
    std::fs::read(dir.join(der)).expect("read the DER key")
}
