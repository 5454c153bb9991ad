//! The one piece of DER the CA reads and writes by hand: a TLV's header
//! and length.
//!
//! Two places need raw byte offsets that a decoded structure cannot give:
//! the bytes a CSR's signature covers, exactly as received, and the
//! boundaries between concatenated certificates. One place writes a
//! structure by hand: a PKCS#1 or SEC1 key wrapped as PKCS#8 (`key_pem.rs`).

/// A DER TLV's header length and content length (tag byte not checked;
/// definite lengths of up to four bytes). `None` when `b` is too short for
/// the header or the length form is one DER forbids.
pub(crate) fn header(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = b
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
    Some((2 + n, len))
}

/// The whole TLV at the start of `b` (header and content), if `b` holds all of it.
pub(crate) fn element(b: &[u8]) -> Option<&[u8]> {
    let (header_len, content_len) = header(b)?;
    b.get(..header_len.checked_add(content_len)?)
}

/// Appends the DER tag-length-value of `value` under `tag` to `out`.
pub(crate) fn write(tag: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        // Below 0x80: fits one byte.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        // At most size_of::<usize>() bytes: fits the low seven bits.
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_in_short_and_long_form() {
        for len in [0, 5, 127, 128, 300, 70_000] {
            let mut out = Vec::new();
            write(0x04, &vec![7; len], &mut out);
            let (h, n) = header(&out).unwrap();
            assert_eq!((n, out.len()), (len, h + len), "{len}");
            assert_eq!(element(&out), Some(&out[..]));
        }
        let mut out = Vec::new();
        write(0x04, &[7; 300], &mut out);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
