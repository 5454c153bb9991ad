//! What stands in for a join token in the audit log: enough to tell tokens
//! apart and to match a token an operator holds, never the token itself.
//!
//! A token is written as `abcd...sha256:0123456789abcdef`: its first four
//! characters (only when it has at least 16, so that they are a small part
//! of it) and the first 64 bits of its SHA-256 in hex. An agent ID that a
//! token without an agent ID derived (`.../herald/agent/join_token/<token>`)
//! contains the token, so every string in a record passes through
//! [`Redactor::redact`], which writes such a segment, and any token of the
//! request, the same way.

/// The path under which an agent ID derived from a join token names it.
const TOKEN_PATH: &str = "/herald/agent/join_token/";

/// A token as written in the audit log.
pub(super) fn token_ref(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hash = hex::encode(&digest.as_ref()[..8]);
    if token.chars().count() >= 16 {
        let prefix: String = token.chars().take(4).collect();
        format!("{prefix}...sha256:{hash}")
    } else {
        format!("sha256:{hash}")
    }
}

/// Rewrites the secrets of one call wherever they appear in its record.
#[derive(Debug, Default)]
pub(super) struct Redactor {
    tokens: Vec<String>,
}

impl Redactor {
    /// `token` is a secret of this call: never written as it is.
    pub(super) fn secret(&mut self, token: &str) {
        if !token.is_empty() && !self.tokens.iter().any(|t| t == token) {
            self.tokens.push(token.to_string());
        }
    }

    /// `text` with every join token segment of an agent ID, and every
    /// secret of the call, replaced by its [`token_ref`].
    pub(super) fn redact(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(TOKEN_PATH) {
            let (head, tail) = rest.split_at(at + TOKEN_PATH.len());
            out.push_str(head);
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                .unwrap_or(tail.len());
            let (token, after) = tail.split_at(end);
            if !token.is_empty() {
                out.push_str(&token_ref(token));
            }
            rest = after;
        }
        out.push_str(rest);
        for token in &self.tokens {
            if out.contains(token.as_str()) {
                out = out.replace(token.as_str(), &token_ref(token));
            }
        }
        out
    }

    /// [`Redactor::redact`] on every string inside `value`.
    pub(super) fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_is_its_prefix_and_hash_a_short_one_only_its_hash() {
        let r = token_ref(TOKEN);
        assert!(
            r.starts_with("0123...sha256:") && r.len() == 4 + 3 + 7 + 16,
            "{r}"
        );
        assert!(!r.contains(TOKEN));
        let short = token_ref("secret");
        assert!(
            short.starts_with("sha256:") && !short.contains("secr"),
            "{short}"
        );
    }

    #[test]
    fn derived_agent_ids_and_secrets_are_redacted_everywhere() {
        let mut r = Redactor::default();
        let id = format!("spiffe://example.org/herald/agent/join_token/{TOKEN}");
        let text = format!("agent {id} is banned");
        let out = r.redact(&text);
        assert!(!out.contains(TOKEN), "{out}");
        assert!(out.starts_with("agent spiffe://example.org/herald/agent/join_token/0123..."));
        assert!(out.ends_with(" is banned"), "{out}");
        r.secret("chosen-token-value");
        let out = r.redact("token chosen-token-value exists");
        assert!(!out.contains("chosen-token-value"), "{out}");
        let mut v = serde_json::json!({"a": ["x chosen-token-value"], "b": {"c": id}});
        r.redact_value(&mut v);
        assert!(!v.to_string().contains("chosen-token-value"));
        assert!(!v.to_string().contains(TOKEN));
    }

    #[test]
    fn other_ids_pass_unchanged() {
        let r = Redactor::default();
        let id = "spiffe://example.org/herald/agent/node-1";
        assert_eq!(r.redact(id), id);
    }
}
