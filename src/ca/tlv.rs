//! The one piece of DER the CA reads by hand: a TLV's header and length.
//!
//! Two places need raw byte offsets that a decoded structure cannot give:
//! the bytes a CSR's signature covers, exactly as received, and the
//! boundaries between concatenated certificates.

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
