//! A first pass over a bundle document from a federation peer, before it
//! is parsed for real: it counts the elements of `keys` and the JSON values
//! of the whole document, building nothing, and stops at the first one
//! over the budget.
//!
//! Parsing builds a tree of the document (every member of every key), at
//! a few hundred bytes per small value: a 4 MiB document of 100,000 tiny
//! keys grew the server by 78 MiB, which the allocator kept (issue 18).
//! Counting first bounds that tree by the key limit, whatever the shape of
//! the document; the pass itself is linear and allocates nothing but the
//! top-level member names, one at a time.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::BundleError;

/// JSON values allowed per allowed key. A SPIRE JWK holds about ten
/// (`use`, `kty`, `kid`, `crv`, `x`, `y`, `x5c` and its certificate);
/// this leaves room for members we ignore (`alg`, `x5t`, ...).
pub const VALUES_PER_KEY: usize = 32;

/// JSON values allowed besides the keys' (the document, `keys`,
/// `spiffe_sequence`, `spiffe_refresh_hint` and members we ignore).
const DOCUMENT_VALUES: usize = 64;

/// Refuses `json` if its `keys` holds more than `max_keys` elements or the
/// document more than [`VALUES_PER_KEY`] values per allowed key. Anything
/// else, malformed JSON included, is left to the real parse.
pub(super) fn check(json: &[u8], max_keys: usize) -> Result<(), BundleError> {
    let budget = Budget {
        max_keys,
        max_values: max_keys
            .saturating_mul(VALUES_PER_KEY)
            .saturating_add(DOCUMENT_VALUES),
        values: Cell::new(0),
        over: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let counted = Value(&budget, Role::Document).deserialize(&mut de);
    match (budget.over.get(), counted) {
        (Some(Over::Keys), _) => Err(BundleError::TooManyKeys { limit: max_keys }),
        (Some(Over::Values), _) => Err(BundleError::TooManyValues {
            limit: budget.max_values,
        }),
        // Syntax errors are the real parser's to report.
        (None, _) => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Over {
    Keys,
    Values,
}

struct Budget {
    max_keys: usize,
    max_values: usize,
    values: Cell<usize>,
    over: Cell<Option<Over>>,
}

impl Budget {
    /// Counts one value; an error once over the budget.
    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.values.get() + 1;
        self.values.set(n);
        if n > self.max_values {
            return Err(self.stop(Over::Values));
        }
        Ok(())
    }

    fn stop<E: serde::de::Error>(&self, why: Over) -> E {
        self.over.set(Some(why));
        E::custom("over the bundle budget")
    }
}

/// Where a value sits: the document, its `keys` array, or anywhere else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Document,
    Keys,
    Other,
}

/// One value, counted with everything inside it.
struct Value<'a>(&'a Budget, Role);

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Value(budget, role) = self;
        budget.count()?;
        let mut elements = 0usize;
        while seq.next_element_seed(Value(budget, Role::Other))?.is_some() {
            elements += 1;
            if role == Role::Keys && elements > budget.max_keys {
                return Err(budget.stop(Over::Keys));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Value(budget, role) = self;
        budget.count()?;
        if role == Role::Document {
            // Member names one at a time, to find `keys`.
            while let Some(name) = map.next_key::<String>()? {
                let role = if name == "keys" {
                    Role::Keys
                } else {
                    Role::Other
                };
                map.next_value_seed(Value(budget, role))?;
            }
        } else {
            while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                map.next_value_seed(Value(budget, Role::Other))?;
            }
        }
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.0.count()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.0.count()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.0.count()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.0.count()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.0.count()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, key: &str) -> String {
        format!("{{\"keys\":[{}]}}", vec![key; n].join(","))
    }

    #[test]
    fn keys_are_counted_up_to_the_limit() {
        assert!(check(keys(3, "{}").as_bytes(), 3).is_ok());
        assert!(matches!(
            check(keys(4, "{}").as_bytes(), 3),
            Err(BundleError::TooManyKeys { limit: 3 })
        ));
        // Only the top-level `keys` counts as keys.
        let nested = format!("{{\"keys\":[],\"x\":{}}}", keys(10, "1"));
        assert!(check(nested.as_bytes(), 3).is_ok());
    }

    #[test]
    fn values_are_counted_anywhere() {
        let limit = 2 * VALUES_PER_KEY + DOCUMENT_VALUES;
        let junk = |n: usize| format!("{{\"keys\":[],\"junk\":[{}]}}", vec!["0"; n].join(","));
        // The document, `keys`, `junk`: three values besides the zeros.
        assert!(check(junk(limit - 3).as_bytes(), 2).is_ok());
        assert!(matches!(
            check(junk(limit - 2).as_bytes(), 2),
            Err(BundleError::TooManyValues { limit: l }) if l == limit
        ));
        let fat_key = format!(
            "{{\"keys\":[{{\"a\":[{}]}}]}}",
            vec!["\"s\""; limit].join(",")
        );
        assert!(matches!(
            check(fat_key.as_bytes(), 2),
            Err(BundleError::TooManyValues { .. })
        ));
    }

    #[test]
    fn malformed_documents_are_left_to_the_parser() {
        for doc in [
            "",
            "{",
            "[1,2]",
            "\"keys\"",
            "{\"keys\":{}}",
            "{\"keys\":7}",
        ] {
            assert!(check(doc.as_bytes(), 1).is_ok(), "{doc}");
        }
    }
}
