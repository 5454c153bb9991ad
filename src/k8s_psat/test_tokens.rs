//! Test support (unit and integration tests): a cluster's service-account
//! issuer made at test time, its JWKS, and projected tokens in the exact
//! shape Kubernetes issues them (see [`super::claims`]). ES256 keys come
//! from ring; RS256 keys (what most clusters use) from a PKCS#8 the test
//! generates (openssl), as ring cannot generate RSA keys. Never used
//! outside tests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Value};

use crate::spiffe::jwk::{EcCurve, JwkKeyParams};

enum Key {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A cluster's token signer.
pub struct TestIssuer {
    kid: String,
    key: Key,
}

/// The facts a token states (the `kubernetes.io` claim and the times).
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// `kubernetes.io.serviceaccount.name`.
    pub service_account: String,
    /// `kubernetes.io.pod` (name, uid).
    pub pod: Option<(String, String)>,
    /// `kubernetes.io.node` (name, uid), Kubernetes 1.32+ (1.30 with the gate).
    pub node: Option<(String, String)>,
    /// `iat` and `nbf`.
    pub issued_at: i64,
    /// `exp`.
    pub expires_at: i64,
}

impl TokenSpec {
    /// The herald-agent pod of a DaemonSet on node `node`, with audience
    /// `herald-server`, issued at `now` for an hour.
    pub fn agent(node: &str, node_uid: &str, now: i64) -> TokenSpec {
        TokenSpec {
            issuer: "https://kubernetes.default.svc.cluster.local".into(),
            audience: super::DEFAULT_AUDIENCE.into(),
            namespace: "herald".into(),
            service_account: "herald-agent".into(),
            pod: Some((
                format!(
                    "herald-agent-{}",
                    node_uid.chars().take(5).collect::<String>()
                ),
                "5e0bd49b-f040-43b0-99b7-22765a53f7f3".into(),
            )),
            node: Some((node.into(), node_uid.into())),
            issued_at: now,
            expires_at: now + 3600,
        }
    }

    /// The claims, as Kubernetes writes them.
    pub fn claims(&self) -> Value {
        let mut k8s = json!({
            "namespace": self.namespace,
            "serviceaccount": {
                "name": self.service_account,
                "uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798",
            },
        });
        if let Some((name, uid)) = &self.pod {
            k8s["pod"] = json!({ "name": name, "uid": uid });
        }
        if let Some((name, uid)) = &self.node {
            k8s["node"] = json!({ "name": name, "uid": uid });
        }
        json!({
            "aud": [self.audience],
            "exp": self.expires_at,
            "iat": self.issued_at,
            "iss": self.issuer,
            "jti": "aed34954-b33a-4142-b1ec-389d6bbb4936",
            "kubernetes.io": k8s,
            "nbf": self.issued_at,
            "sub": format!("system:serviceaccount:{}:{}", self.namespace, self.service_account),
        })
    }
}

impl TestIssuer {
    /// A new P-256 key (ES256).
    pub fn es256(kid: &str) -> Result<TestIssuer, String> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|e| e.to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|e| e.to_string())?;
        Ok(TestIssuer {
            kid: kid.into(),
            key: Key::Ec(key),
        })
    }

    /// An RSA key (RS256) from a PKCS#8 DER (2048 bits or more).
    pub fn rs256(kid: &str, pkcs8_der: &[u8]) -> Result<TestIssuer, String> {
        let key = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| e.to_string())?;
        Ok(TestIssuer {
            kid: kid.into(),
            key: Key::Rsa(key),
        })
    }

    fn alg(&self) -> &'static str {
        match self.key {
            Key::Ec(_) => "ES256",
            Key::Rsa(_) => "RS256",
        }
    }

    /// The public key as one JWK of a Kubernetes JWKS.
    pub fn jwk(&self) -> Result<Value, String> {
        let params = match &self.key {
            Key::Ec(k) => {
                let point = k.public_key().as_ref();
                JwkKeyParams::Ec {
                    crv: EcCurve::P256,
                    x: point[1..33].to_vec(),
                    y: point[33..65].to_vec(),
                }
            }
            Key::Rsa(k) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                JwkKeyParams::Rsa { n: c.n, e: c.e }
            }
        };
        let jwk = params.to_jwk_json().map_err(|e| e.to_string())?;
        let mut jwk = serde_json::to_value(jwk).map_err(|e| e.to_string())?;
        jwk["use"] = json!("sig");
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg());
        Ok(jwk)
    }

    /// `{"keys":[<this key>]}`, as `/openid/v1/jwks` serves it.
    pub fn jwks_json(&self) -> Result<String, String> {
        Ok(json!({ "keys": [self.jwk()?] }).to_string())
    }

    /// A compact JWS over `claims`, header `{"alg":…,"kid":…}` as
    /// Kubernetes writes it.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({ "alg": self.alg(), "kid": self.kid });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match &self.key {
            Key::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .map_err(|e| e.to_string())?
                .as_ref()
                .to_vec(),
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|e| e.to_string())?;
                sig
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A token for `spec`.
    pub fn token(&self, spec: &TokenSpec) -> Result<String, String> {
        self.sign(&spec.claims())
    }
}
