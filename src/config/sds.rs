//! The `[sds]` table of `agent.toml`: what the agent's Envoy SDS calls its
//! resources and how it shapes validation contexts. The keys and defaults
//! are SPIRE agent's (`sds { ... }`), so an Envoy configuration written for
//! SPIRE works unchanged (SPIFFE.md §7).

use serde::Deserialize;

use super::check::Checker;
use super::ConfigError;

/// The longest resource name accepted for a default (Envoy has no limit;
/// a name is echoed in every response, so it is kept short).
const MAX_NAME_LEN: usize = 256;

/// `[sds]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSds {
    default_svid_name: Option<String>,
    default_bundle_name: Option<String>,
    default_all_bundles_name: Option<String>,
    #[serde(default)]
    disable_spiffe_cert_validation: bool,
}

/// How Envoy SDS names and shapes what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsSettings {
    /// `default_svid_name`: the caller's default X509-SVID as a
    /// TlsCertificate (`default`).
    pub default_svid_name: String,
    /// `default_bundle_name`: the own trust domain's bundle as a
    /// validation context (`ROOTCA`).
    pub default_bundle_name: String,
    /// `default_all_bundles_name`: one validation context with the own and
    /// every federated bundle the caller may trust (`ALL`).
    pub default_all_bundles_name: String,
    /// `disable_spiffe_cert_validation`: serve validation contexts as a
    /// flat `trusted_ca` instead of Envoy's SPIFFE certificate validator
    /// (which binds each bundle to its trust domain). For Envoy 1.17 and
    /// older; a newer Envoy may also ask for it per node (node metadata
    /// `disable_spiffe_cert_validation: true`).
    pub disable_spiffe_cert_validation: bool,
}

impl Default for SdsSettings {
    fn default() -> Self {
        SdsSettings {
            default_svid_name: "default".into(),
            default_bundle_name: "ROOTCA".into(),
            default_all_bundles_name: "ALL".into(),
            disable_spiffe_cert_validation: false,
        }
    }
}

/// Validates `[sds]`: each name non-empty, short, distinct from the others
/// and unlike a SPIFFE ID (those names are taken by the SVIDs and bundles
/// themselves), and not `*` (a wildcard subscription).
pub(super) fn sds_settings(c: &Checker<'_>, raw: RawSds) -> Result<SdsSettings, ConfigError> {
    let d = SdsSettings::default();
    let name = |key: &'static str, value: Option<String>, default: String| {
        let v = value.unwrap_or(default);
        if v.is_empty() || v.len() > MAX_NAME_LEN {
            return Err(c.invalid(key, format!("must be 1 to {MAX_NAME_LEN} bytes")));
        }
        if v == "*" || v.starts_with("spiffe://") {
            return Err(c.invalid(
                key,
                format!("{v:?} is taken: \"*\" subscribes to everything and spiffe:// names are SVIDs' and bundles'"),
            ));
        }
        Ok(v)
    };
    let s = SdsSettings {
        default_svid_name: name(
            "sds.default_svid_name",
            raw.default_svid_name,
            d.default_svid_name,
        )?,
        default_bundle_name: name(
            "sds.default_bundle_name",
            raw.default_bundle_name,
            d.default_bundle_name,
        )?,
        default_all_bundles_name: name(
            "sds.default_all_bundles_name",
            raw.default_all_bundles_name,
            d.default_all_bundles_name,
        )?,
        disable_spiffe_cert_validation: raw.disable_spiffe_cert_validation,
    };
    if s.default_svid_name == s.default_bundle_name
        || s.default_svid_name == s.default_all_bundles_name
    {
        return Err(c.invalid(
            "sds.default_svid_name",
            "must differ from default_bundle_name and default_all_bundles_name",
        ));
    }
    if s.default_bundle_name == s.default_all_bundles_name {
        return Err(c.invalid(
            "sds.default_bundle_name",
            "must differ from default_all_bundles_name",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{AgentConfig, ConfigFile as _};

    const BASE: &str = "trust_domain = \"example.org\"\nserver_address = \"127.0.0.1:8081\"\ndata_dir = \"/x\"\ninsecure_bootstrap = true\n";

    fn parse(sds: &str) -> Result<super::SdsSettings, String> {
        AgentConfig::parse(Path::new("agent.toml"), &format!("{BASE}{sds}"))
            .map(|c| c.sds)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_spire_s() {
        let d = parse("").unwrap();
        assert_eq!(d, super::SdsSettings::default());
        assert_eq!(
            (
                d.default_svid_name.as_str(),
                d.default_bundle_name.as_str(),
                d.default_all_bundles_name.as_str()
            ),
            ("default", "ROOTCA", "ALL")
        );
        assert!(!d.disable_spiffe_cert_validation);
        let set = parse(
            "[sds]\ndefault_svid_name = \"svid\"\ndefault_bundle_name = \"ca\"\n\
             default_all_bundles_name = \"all\"\ndisable_spiffe_cert_validation = true\n",
        )
        .unwrap();
        assert_eq!(set.default_svid_name, "svid");
        assert_eq!(set.default_bundle_name, "ca");
        assert_eq!(set.default_all_bundles_name, "all");
        assert!(set.disable_spiffe_cert_validation);
    }

    #[test]
    fn bad_names_are_refused_by_key() {
        for (sds, key) in [
            ("default_svid_name = \"\"", "sds.default_svid_name"),
            ("default_bundle_name = \"*\"", "sds.default_bundle_name"),
            (
                "default_all_bundles_name = \"spiffe://example.org\"",
                "sds.default_all_bundles_name",
            ),
            ("default_svid_name = \"ROOTCA\"", "sds.default_svid_name"),
            ("default_bundle_name = \"ALL\"", "sds.default_bundle_name"),
            ("unknown = 1", "unknown"),
        ] {
            let err = parse(&format!("[sds]\n{sds}\n")).unwrap_err();
            assert!(err.contains(key), "{sds}: {err}");
        }
    }
}
