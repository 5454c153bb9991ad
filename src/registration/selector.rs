//! Selectors: properties of a workload or node that an attestor vouches for.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{rule, RegistrationError};

/// A property of a workload or node that an attestor can vouch for, such as
/// `unix:uid:1000`. Entries match workloads by their selectors.
///
/// The fields are private: every selector has passed [`Selector::new`]'s
/// checks, including one read back from disk or the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Selector {
    kind: String,
    value: String,
}

/// The serialized form, checked on the way in.
#[derive(Deserialize)]
struct Unchecked {
    kind: String,
    value: String,
}

impl TryFrom<Unchecked> for Selector {
    type Error = RegistrationError;

    fn try_from(u: Unchecked) -> Result<Self, Self::Error> {
        Selector::new(u.kind, u.value)
    }
}

impl Selector {
    /// Builds a selector, checking the same rules as [`Selector::parse`] so
    /// that every selector prints and parses back unchanged and index keys
    /// (`kind:value\0id`) stay unambiguous.
    pub fn new(
        kind: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, RegistrationError> {
        let selector = Selector {
            kind: kind.into(),
            value: value.into(),
        };
        let (kind, value) = (&selector.kind, &selector.value);
        let me = || format!("selector {:?}", selector.to_string());
        rule(kind.is_empty(), me, "kind", "must not be empty")?;
        rule(kind.contains(':'), me, "kind", "must not contain `:`")?;
        rule(value.is_empty(), me, "value", "must not be empty")?;
        let nul = kind.contains('\0') || value.contains('\0');
        rule(nul, me, "selector", "must not contain a NUL character")?;
        Ok(selector)
    }

    /// The selectors of `kind` an attestor vouches for, one per value,
    /// sorted and without repeats; a value no selector can hold (empty, or
    /// with a NUL) is left out rather than failing the whole set.
    pub fn set_of(kind: &str, values: impl IntoIterator<Item = String>) -> Vec<Selector> {
        let mut out: Vec<Selector> = values
            .into_iter()
            .filter_map(|v| Selector::new(kind, v).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Parses the `kind:value` form used on the command line. The split is at
    /// the first colon because values such as `uid:1000` contain colons.
    pub fn parse(s: &str) -> Result<Self, RegistrationError> {
        match s.split_once(':') {
            Some((kind, value)) => Selector::new(kind, value),
            None => Err(RegistrationError {
                record: format!("selector {s:?}"),
                field: "selector",
                reason: "must have the form `kind:value`".into(),
            }),
        }
    }

    /// The attestor namespace (`unix`, `k8s`, `join_token`, ...). Never contains `:`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value within that namespace; may itself contain `:`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_on_every_path_in() {
        assert_eq!(
            Selector::parse("unix:uid:1000").unwrap().value(),
            "uid:1000"
        );
        assert_eq!(Selector::parse("unix:uid:1000").unwrap().kind(), "unix");
        assert_eq!(
            Selector::parse("unix:uid:1000").unwrap().to_string(),
            "unix:uid:1000"
        );
        for bad in ["", "unix", ":x", "unix:", "a\0:b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} accepted");
        }
        let err = Selector::new("a:b", "c").unwrap_err();
        assert_eq!(err.field, "kind");
        // Deserialization cannot bypass the checks.
        let json = r#"{"kind":"unix","value":""}"#;
        let e = serde_json::from_str::<Selector>(json).unwrap_err();
        assert!(e.to_string().contains("must not be empty"), "{e}");
        let ok: Selector = serde_json::from_str(r#"{"kind":"unix","value":"uid:1"}"#).unwrap();
        assert_eq!(ok.to_string(), "unix:uid:1");
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"kind":"unix","value":"uid:1"}"#
        );
    }
}
