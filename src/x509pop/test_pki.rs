//! A machine PKI made at test time (root -> intermediate -> machine leaf),
//! for the unit tests here and the integration tests in `tests/x509pop.rs`.
//! Not used by Herald itself.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

/// A CA of the test PKI.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A machine certificate and its key.
pub struct Machine {
    /// DER leaf.
    pub leaf: Vec<u8>,
    /// PEM PKCS#8 key.
    pub key_pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

impl TestCa {
    /// A self-signed root with P-256.
    pub fn root(cn: &str) -> Result<Self, rcgen::Error> {
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Result<Self, rcgen::Error> {
        let issuer = CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate()?, &self.issuer)?;
        Ok(TestCa { issuer })
    }

    /// DER certificate.
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// PEM certificate.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A machine leaf for `key` with CN `cn`, DNS SAN `dns`, a URI SAN and
    /// the clientAuth EKU.
    pub fn machine(&self, cn: &str, dns: &str, key: KeyPair) -> Result<Machine, rcgen::Error> {
        let mut p = CertificateParams::new(vec![dns.to_string()])?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names
            .push(SanType::URI("urn:machine:test".try_into()?));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Machine {
            leaf: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Machine {
    /// A proof for `challenge` and `csr` by this machine's key, with the
    /// leaf and `intermediates` as chain.
    pub fn proof(
        &self,
        intermediates: &[&TestCa],
        challenge: Vec<u8>,
        csr: &[u8],
    ) -> Result<crate::proto::node::X509PopProof, rcgen::Error> {
        use rcgen::SigningKey as _;
        let key = KeyPair::from_pem(&self.key_pem)?;
        let signature = key.sign(&super::signed_message(&challenge, csr))?;
        let mut chain = vec![self.leaf.clone()];
        chain.extend(intermediates.iter().map(|ca| ca.der()));
        Ok(crate::proto::node::X509PopProof {
            chain,
            challenge,
            signature,
        })
    }
}

/// Root -> intermediate -> P-256 machine leaf.
pub struct TestPki {
    /// The root (what the server's ca_bundle_path holds).
    pub root: TestCa,
    /// The intermediate (what the agent sends with its leaf).
    pub inter: TestCa,
    /// The machine.
    pub machine: Machine,
}

impl TestPki {
    /// A fresh PKI whose machine has CN `cn` and DNS SAN `dns`; the CAs'
    /// names start with `name`.
    pub fn new(name: &str, cn: &str, dns: &str) -> Result<Self, rcgen::Error> {
        let root = TestCa::root(&format!("{name} root"))?;
        let inter = root.intermediate(&format!("{name} intermediate"))?;
        let machine = inter.machine(cn, dns, KeyPair::generate()?)?;
        Ok(TestPki {
            root,
            inter,
            machine,
        })
    }
}
