//! Serial numbers of workload certificates, drawn in blocks of
//! [`BLOCK_LEN`].
//!
//! A serial is 16 bytes: 124 bits drawn from the system CSPRNG once per
//! block, then the certificate's index in the block in the low 4 bits. The
//! certificates of one signing batch share blocks, so in lowercase hex
//! (see [`super::template::serial_hex`]) the serials of a block differ only
//! in their last digit, and the issuance log keeps them in one stored group
//! keyed by the rest ([`group_key`]): one store write per 16 certificates
//! instead of one each, which was a tenth of the server's CPU per SVID.
//!
//! Why sharing the random part is safe: serials are random so that a
//! requester cannot predict the bytes a CA will sign (chosen-prefix hash
//! collisions) and so that two certificates never share one. A block is
//! drawn after the batch's requests arrived, so nothing in it is known to
//! their sender beforehand; 124 bits keep two blocks from colliding (the
//! leaf profile of `shared/spec/SPIFFE.md` asks at least 64 random bits,
//! SPIRE draws 128 per certificate); and within a block the index keeps
//! serials apart.

use super::template::{random_serial_bytes, TemplateError};

/// Certificates per block: the values of the low 4 bits.
pub const BLOCK_LEN: usize = 16;

/// Hands out the serials of one signing batch (one thread's share of it),
/// drawing a new random block every [`BLOCK_LEN`] certificates.
#[derive(Debug, Default)]
pub struct SerialBlock {
    /// The current block's random bytes (low 4 bits zero) and how many of
    /// its serials were handed out; `None` before the first serial.
    current: Option<([u8; 16], usize)>,
}

impl SerialBlock {
    /// A block drawn on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next serial: unique, nonzero, and in the same group as the
    /// previous one unless that one ended its block.
    pub fn next_serial(&mut self) -> Result<[u8; 16], TemplateError> {
        let (base, used) = match self.current {
            Some((base, used)) if used < BLOCK_LEN => (base, used),
            _ => (draw_block()?, 0),
        };
        self.current = Some((base, used + 1));
        let mut serial = base;
        // `used < BLOCK_LEN` (16), so it fits the low nibble.
        serial[15] |= used as u8;
        Ok(serial)
    }
}

/// Fresh random bytes for a block: the low 4 bits zero (the index goes
/// there) and the rest not all zero, so no serial of the block is zero.
fn draw_block() -> Result<[u8; 16], TemplateError> {
    loop {
        let mut bytes = random_serial_bytes()?;
        bytes[15] &= 0xf0;
        if bytes.iter().any(|b| *b != 0) {
            return Ok(bytes);
        }
    }
}

/// The key of the issuance-log group a serial (lowercase hex, as
/// [`super::template::serial_hex`] writes it) belongs to: all of it but the
/// last digit, which is the index in its block. Any serial has one, so
/// records of serials not drawn in blocks (older ones, or another CA's)
/// still find their group; they only share it less.
pub fn group_key(serial_hex: &str) -> &str {
    let end = serial_hex.char_indices().last().map_or(0, |(i, _)| i);
    &serial_hex[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::template::serial_hex;

    #[test]
    fn a_block_gives_sixteen_distinct_serials_of_one_group_then_draws_another() {
        let mut block = SerialBlock::new();
        let serials: Vec<String> = (0..BLOCK_LEN + 1)
            .map(|_| serial_hex(&block.next_serial().unwrap()))
            .collect();
        let first_group = group_key(&serials[0]).to_owned();
        for (i, s) in serials[..BLOCK_LEN].iter().enumerate() {
            assert_eq!(group_key(s), first_group, "serial {i} left its group");
            assert!(s.ends_with(&format!("{i:x}")), "{s} is not index {i}");
        }
        let unique: std::collections::HashSet<_> = serials.iter().collect();
        assert_eq!(unique.len(), serials.len(), "a serial repeated");
        assert_ne!(
            group_key(&serials[BLOCK_LEN]),
            first_group,
            "the 17th serial must start a new block"
        );
    }

    #[test]
    fn two_blocks_do_not_share_a_group() {
        let a = serial_hex(&SerialBlock::new().next_serial().unwrap());
        let b = serial_hex(&SerialBlock::new().next_serial().unwrap());
        assert_ne!(group_key(&a), group_key(&b));
    }

    #[test]
    fn the_group_key_is_the_serial_but_its_last_digit() {
        assert_eq!(group_key("0a"), "0");
        assert_eq!(group_key("a"), "");
        assert_eq!(group_key(""), "");
        assert_eq!(group_key("1234abcf"), "1234abc");
    }
}
