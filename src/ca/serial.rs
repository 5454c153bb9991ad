//! Serial numbers of workload certificates, drawn in blocks of
//! [`BLOCK_LEN`].
//!
//! A serial is 16 bytes: the second it was drawn in (32 bits, big-endian),
//! then 92 bits drawn from the system CSPRNG once per block, then the
//! certificate's index in the block in the low 4 bits. The certificates of
//! one signing batch share blocks, so in lowercase hex (see
//! [`super::template::serial_hex`]) the serials of a block differ only in
//! their last digit, and the issuance log keeps them in one stored group
//! keyed by the rest ([`group_key`]): one store write per 16 certificates
//! instead of one each, which was a tenth of the server's CPU per SVID.
//!
//! Why the time comes first: the issuance log's groups are keyed by serial,
//! so with random serials every group (up to 16 records, ~4 KB) went to a
//! random leaf of a large sled tree: a walk down and an update of a
//! different leaf each time. Serials that grow with time put new groups
//! beside each other at the end of the tree: the issuance benchmark's
//! server CPU per SVID fell from a median 1.21× to 1.14× one sign + verify
//! over 14 runs each (BENCHMARKS.md, round 7). The order only matters for
//! speed: a clock that steps back, or a year past 2106 (the prefix then
//! stays at its maximum), changes where groups go, never which serials
//! exist.
//!
//! Why this is safe: serials are random so that a requester cannot predict
//! the bytes a CA will sign (chosen-prefix hash collisions) and so that two
//! certificates never share one. A block is drawn after the batch's
//! requests arrived, so its 92 random bits are unknown to their sender
//! beforehand; they keep two blocks of the same second from colliding (the
//! leaf profile of `shared/spec/SPIFFE.md` asks at least 64 random bits);
//! and within a block the index keeps serials apart. The second a serial
//! shows is in the certificate anyway (its notBefore is that second, a few
//! seconds back-dated).

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
    /// previous one unless that one ended its block. A new block starts
    /// with `now` (Unix seconds), so later blocks sort after earlier ones.
    pub fn next_serial(&mut self, now: i64) -> Result<[u8; 16], TemplateError> {
        let (base, used) = match self.current {
            Some((base, used)) if used < BLOCK_LEN => (base, used),
            _ => (draw_block(now)?, 0),
        };
        self.current = Some((base, used + 1));
        let mut serial = base;
        // `used < BLOCK_LEN` (16), so it fits the low nibble.
        serial[15] |= used as u8;
        Ok(serial)
    }
}

/// A new block: `now`'s second in the top 4 bytes, fresh random bytes
/// after it with the low 4 bits zero (the index goes there), and not all
/// zero, so no serial of the block is zero.
fn draw_block(now: i64) -> Result<[u8; 16], TemplateError> {
    loop {
        let mut bytes = random_serial_bytes()?;
        bytes[..4].copy_from_slice(&time_prefix(now));
        bytes[15] &= 0xf0;
        if bytes.iter().any(|b| *b != 0) {
            return Ok(bytes);
        }
    }
}

/// `now` as the 4 bytes that start a block: big-endian, so that byte order
/// is time order; clamped to what 32 bits hold (before 1970 reads as 0,
/// after 2106 as the last second).
fn time_prefix(now: i64) -> [u8; 4] {
    u32::try_from(now.max(0)).unwrap_or(u32::MAX).to_be_bytes()
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

    /// A second of December 2026, like the ones serials are drawn in now.
    const NOW: i64 = 1_796_000_000;

    #[test]
    fn a_block_gives_sixteen_distinct_serials_of_one_group_then_draws_another() {
        let mut block = SerialBlock::new();
        let serials: Vec<String> = (0..BLOCK_LEN + 1)
            .map(|_| serial_hex(&block.next_serial(NOW).unwrap()))
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
        let a = serial_hex(&SerialBlock::new().next_serial(NOW).unwrap());
        let b = serial_hex(&SerialBlock::new().next_serial(NOW).unwrap());
        assert_ne!(group_key(&a), group_key(&b));
    }

    #[test]
    fn a_block_starts_with_its_second_and_later_blocks_sort_after_earlier_ones() {
        let first = SerialBlock::new().next_serial(NOW).unwrap();
        assert_eq!(first[..4], (NOW as u32).to_be_bytes());
        // Blocks of one second still differ: their random bits do.
        let same_second = SerialBlock::new().next_serial(NOW).unwrap();
        assert_eq!(first[..4], same_second[..4]);
        assert_ne!(first[4..], same_second[4..]);
        // The issuance log orders groups by their hex key.
        let mut earlier = Vec::new();
        let mut later = Vec::new();
        for _ in 0..64 {
            earlier.push(serial_hex(&SerialBlock::new().next_serial(NOW).unwrap()));
            later.push(serial_hex(
                &SerialBlock::new().next_serial(NOW + 1).unwrap(),
            ));
        }
        for (a, b) in earlier.iter().zip(&later) {
            assert_eq!(a.len(), 32, "{a}");
            assert!(group_key(a) < group_key(b), "{a} sorts after {b}");
        }
    }

    #[test]
    fn a_clock_outside_32_bits_clamps_the_prefix_and_serials_stay_valid() {
        assert_eq!(time_prefix(-5), [0; 4]);
        assert_eq!(time_prefix(1 << 40), [0xff; 4]);
        for now in [-5, 0, 1 << 40] {
            let mut block = SerialBlock::new();
            let serials: Vec<_> = (0..BLOCK_LEN)
                .map(|_| block.next_serial(now).unwrap())
                .collect();
            for serial in &serials {
                assert!(serial.iter().any(|b| *b != 0));
            }
            let unique: std::collections::HashSet<_> = serials.iter().collect();
            assert_eq!(unique.len(), BLOCK_LEN);
        }
    }

    #[test]
    fn the_group_key_is_the_serial_but_its_last_digit() {
        assert_eq!(group_key("0a"), "0");
        assert_eq!(group_key("a"), "");
        assert_eq!(group_key(""), "");
        assert_eq!(group_key("1234abcf"), "1234abc");
    }
}
