//! PEM armour for the DER documents Herald writes to and reads from disk:
//! private keys, certificates and chains.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Why a PEM document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// A BEGIN line without its END line.
    #[error("PEM block {label} has no END line")]
    Unterminated {
        /// The block's label, e.g. `CERTIFICATE`.
        label: String,
    },
    /// The block's body does not decode.
    #[error("PEM block {label} is not valid base64: {source}")]
    Base64 {
        /// The block's label.
        label: String,
        /// The decoder's complaint.
        source: base64::DecodeError,
    },
    /// The document holds no block with the wanted label.
    #[error("no PEM block labelled {label}")]
    Missing {
        /// The label looked for.
        label: String,
    },
}

/// Wraps DER in a PEM block with 64-column base64 lines.
pub fn der_to_pem(der: &[u8], label: &str) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DER certificates as concatenated PEM blocks (a chain or a bundle file).
pub fn pem_certs(ders: &[Vec<u8>]) -> String {
    ders.iter().map(|c| der_to_pem(c, "CERTIFICATE")).collect()
}

/// Extracts every PEM block labelled `label` from `pem`, in order.
pub fn pem_blocks(pem: &str, label: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let body_start = start + begin.len();
        let Some(stop) = rest[body_start..].find(&end) else {
            return Err(PemError::Unterminated {
                label: label.to_owned(),
            });
        };
        let body: String = rest[body_start..body_start + stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD.decode(body).map_err(|source| PemError::Base64 {
            label: label.to_owned(),
            source,
        })?;
        out.push(der);
        rest = &rest[body_start + stop + end.len()..];
    }
    Ok(out)
}

/// Extracts the first PEM block labelled `label`.
pub fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>, PemError> {
    pem_blocks(pem, label)?
        .into_iter()
        .next()
        .ok_or_else(|| PemError::Missing {
            label: label.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_helpers_round_trip() {
        let pem = der_to_pem(&[1, 2, 3, 4], "CERTIFICATE");
        let two = format!("{pem}{pem}");
        assert_eq!(pem_blocks(&two, "CERTIFICATE").unwrap().len(), 2);
        assert!(matches!(
            pem_to_der("-----BEGIN X-----\n!!\n-----END X-----", "X"),
            Err(PemError::Base64 { .. })
        ));
        assert!(matches!(
            pem_to_der("-----BEGIN X-----\nAAAA\n", "X"),
            Err(PemError::Unterminated { .. })
        ));
        assert!(matches!(
            pem_to_der(&pem, "PRIVATE KEY"),
            Err(PemError::Missing { .. })
        ));
    }
}
