//! HPACK decoding of one header block with the bounds the HTTP/2 server
//! behind the shim would apply itself: a dynamic table no larger than the
//! 4096 bytes the server allows (it never advertises more), and a decoded
//! header list of bounded size. Without them a few KiB of indexed
//! references to one large table entry decode to gigabytes.

use std::borrow::Cow;

use loona_hpack::decoder::DecoderError;

/// SETTINGS_HEADER_TABLE_SIZE as the server behind the shim leaves it (the
/// protocol default, never raised): a client's table-size update above it
/// is a decoding error.
pub(super) const HPACK_TABLE_SIZE: usize = 4096;

/// Per-field overhead in the header list size (RFC 9113 §6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// A decoded header list.
pub(super) type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a header block could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The HPACK representation is invalid (bad index, integer, string, or
    /// a dynamic table larger than allowed).
    #[error("HPACK decoding failed")]
    Hpack(#[source] DecoderError),
    /// The decoded header list exceeds the configured limit.
    #[error("decoded header list exceeds {max} bytes")]
    ListTooLarge {
        /// `workload_api_max_header_list_size`.
        max: usize,
    },
}

/// The HPACK decoder of one client connection.
pub(super) struct BlockDecoder {
    decoder: loona_hpack::Decoder<'static>,
    max_list: usize,
}

impl BlockDecoder {
    /// A decoder refusing header lists larger than `max_list` bytes.
    pub(super) fn new(max_list: usize) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_SIZE);
        BlockDecoder { decoder, max_list }
    }

    /// Decodes one complete header block. Past the limit nothing more is
    /// copied out (the rest is only walked to the end, which costs no
    /// memory); the connection is then closed by the caller, so the
    /// decoder's table need not stay in step.
    pub(super) fn decode(&mut self, block: &[u8]) -> Result<HeaderList, BlockError> {
        let max = self.max_list;
        let mut size = 0usize;
        let mut headers = Vec::new();
        self.decoder
            .decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                size = size
                    .saturating_add(name.len())
                    .saturating_add(value.len())
                    .saturating_add(FIELD_OVERHEAD);
                if size <= max {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(BlockError::Hpack)?;
        if size > max {
            return Err(BlockError::ListTooLarge { max });
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Literal with incremental indexing, new name" of `name: value`
    /// (lengths below 127), then `refs` indexed references to it.
    fn bomb(value_len: usize, refs: usize) -> Vec<u8> {
        let mut block = vec![0x40, 1, b'x'];
        block.extend(loona_hpack::encoder::encode_integer(value_len, 7));
        block.extend(std::iter::repeat_n(b'v', value_len));
        // Index 62 is the newest dynamic-table entry.
        block.extend(std::iter::repeat_n(0x80 | 62, refs));
        block
    }

    #[test]
    fn indexed_references_to_a_large_entry_hit_the_list_limit() {
        // 4000 bytes x 16 Ki references would decode to 64 MiB.
        let err = BlockDecoder::new(16 * 1024)
            .decode(&bomb(4000, 16 * 1024))
            .unwrap_err();
        assert!(
            matches!(err, BlockError::ListTooLarge { max: 16384 }),
            "{err}"
        );
        // Under the limit the same shape decodes.
        let headers = BlockDecoder::new(16 * 1024).decode(&bomb(4000, 2)).unwrap();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[2].1.len(), 4000);
    }

    #[test]
    fn the_dynamic_table_cannot_grow_past_4096() {
        // Dynamic table size update to 1 MiB, then a literal.
        let mut block = vec![0x3f];
        block.extend(&loona_hpack::encoder::encode_integer(1 << 20, 5)[1..]);
        let err = BlockDecoder::new(1 << 30).decode(&block).unwrap_err();
        assert!(
            matches!(err, BlockError::Hpack(DecoderError::InvalidMaxDynamicSize)),
            "{err}"
        );
        // An entry larger than the table is not kept: referring to it fails.
        let err = BlockDecoder::new(1 << 30)
            .decode(&bomb(5000, 1))
            .unwrap_err();
        assert!(
            matches!(err, BlockError::Hpack(DecoderError::HeaderIndexOutOfBounds)),
            "{err}"
        );
    }
}
