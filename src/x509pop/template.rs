//! The agent ID of an x509pop agent: `spiffe://<td>/herald/agent` followed
//! by a path template over the machine certificate. SPIRE's default,
//! `/x509pop/{{fingerprint}}`, names the agent by the SHA-1 fingerprint of
//! its certificate; `{{subject_cn}}` keeps the ID across certificate
//! renewals (the PKI must then not issue one CN to two machines).

use crate::spiffe::{SpiffeId, TrustDomain};

/// SPIRE's default template.
pub const DEFAULT_TEMPLATE: &str = "/x509pop/{{fingerprint}}";

/// Where every agent ID lives.
const AGENT_PREFIX: &str = "/herald/agent";

/// The certificate facts a template can use.
#[derive(Debug, Clone, Copy)]
pub struct TemplateFacts<'a> {
    /// SHA-1 fingerprint of the leaf, lowercase hex.
    pub fingerprint: &'a str,
    /// The leaf's subject common name, if it has one.
    pub subject_cn: Option<&'a str>,
    /// The leaf's serial number, lowercase hex.
    pub serial_number: &'a str,
}

/// Why a template or its result is refused.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not starting with `/`.
    #[error("agent_path_template {0:?} must start with `/`")]
    NoSlash(String),
    /// An unknown or unclosed placeholder.
    #[error("agent_path_template: unknown placeholder {0:?} (known: {{{{fingerprint}}}}, {{{{subject_cn}}}}, {{{{serial_number}}}})")]
    Placeholder(String),
    /// The certificate has no subject CN but the template needs one.
    #[error("the machine certificate has no subject common name, which agent_path_template needs")]
    NoCommonName,
    /// The result is not a valid SPIFFE ID.
    #[error("agent_path_template gives the invalid agent ID path {path:?}")]
    InvalidId {
        /// The rendered path.
        path: String,
        /// Why it is invalid.
        #[source]
        source: crate::spiffe::IdError,
    },
}

/// A validated template.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    source: String,
}

impl Default for PathTemplate {
    fn default() -> Self {
        PathTemplate {
            source: DEFAULT_TEMPLATE.into(),
        }
    }
}

impl PathTemplate {
    /// Checks `source`: a leading `/`, known placeholders only, and a valid
    /// ID for a typical certificate.
    pub fn parse(source: &str, td: &TrustDomain) -> Result<Self, TemplateError> {
        if !source.starts_with('/') {
            return Err(TemplateError::NoSlash(source.into()));
        }
        let t = PathTemplate {
            source: source.into(),
        };
        let sample = TemplateFacts {
            fingerprint: "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            subject_cn: Some("machine"),
            serial_number: "01",
        };
        t.agent_id(td, &sample)?;
        Ok(t)
    }

    /// The agent ID for a certificate with `facts`.
    pub fn agent_id(
        &self,
        td: &TrustDomain,
        facts: &TemplateFacts<'_>,
    ) -> Result<SpiffeId, TemplateError> {
        let mut path = String::from(AGENT_PREFIX);
        let mut rest = self.source.as_str();
        while let Some(start) = rest.find("{{") {
            path.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| TemplateError::Placeholder(rest[start..].into()))?;
            match after[..end].trim() {
                "fingerprint" => path.push_str(facts.fingerprint),
                "subject_cn" => path.push_str(facts.subject_cn.ok_or(TemplateError::NoCommonName)?),
                "serial_number" => path.push_str(facts.serial_number),
                other => return Err(TemplateError::Placeholder(other.into())),
            }
            rest = &after[end + 2..];
        }
        path.push_str(rest);
        SpiffeId::new(td, &path).map_err(|source| TemplateError::InvalidId { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn facts(cn: Option<&str>) -> TemplateFacts<'_> {
        TemplateFacts {
            fingerprint: "ab12",
            subject_cn: cn,
            serial_number: "7f",
        }
    }

    #[test]
    fn default_template_is_spire_shape() {
        let id = PathTemplate::default()
            .agent_id(&td(), &facts(None))
            .unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://example.org/herald/agent/x509pop/ab12"
        );
    }

    #[test]
    fn placeholders_are_substituted() {
        let t = PathTemplate::parse("/vm/{{ subject_cn }}/{{serial_number}}", &td()).unwrap();
        let id = t.agent_id(&td(), &facts(Some("db-1"))).unwrap();
        assert_eq!(
            id.to_string(),
            "spiffe://example.org/herald/agent/vm/db-1/7f"
        );
        assert!(matches!(
            t.agent_id(&td(), &facts(None)),
            Err(TemplateError::NoCommonName)
        ));
    }

    #[test]
    fn bad_templates_and_results_are_refused() {
        let bad = |s: &str| PathTemplate::parse(s, &td()).unwrap_err().to_string();
        assert!(bad("x509pop/{{fingerprint}}").contains("must start with `/`"));
        assert!(bad("/{{nope}}").contains("unknown placeholder \"nope\""));
        assert!(bad("/{{fingerprint").contains("unknown placeholder"));
        assert!(bad("/a//b").contains("invalid agent ID path"));
        // A CN that makes the path invalid is refused at attestation.
        let t = PathTemplate::parse("/{{subject_cn}}", &td()).unwrap();
        let err = t.agent_id(&td(), &facts(Some("a/../b"))).unwrap_err();
        assert!(matches!(err, TemplateError::InvalidId { .. }), "{err}");
    }
}
