//! The frame of a [`PutPairRequest`], byte for byte the BCS encoding of
//! `(blob_id, shard, pair)`, written and read without copying sliver bytes.
//!
//! ```text
//! blob_id [u8; 32] | shard u16 LE | pair index u16 LE
//! | primary:   axis u8 | index u16 LE | ULEB128 length | symbols
//! | secondary: axis u8 | index u16 LE | ULEB128 length | symbols
//! ```
//!
//! A pair is most of what a store sends (about 4.5 times the blob across a
//! committee), so serializing it through serde would copy every byte once
//! more on the client and once more on the node.

use bytes::Bytes;
use floe_codec::{Axis, BlobId, ShardIndex, Sliver, SliverIndex, SliverPair, SliverPairIndex};
use floe_net::WireError;
use serde::de::DeserializeOwned;

use crate::PutPairRequest;

/// Bytes of `blob_id | shard | pair index`.
const HEAD: usize = 32 + 2 + 2;
/// Bytes of `axis | index` before each sliver's length.
const SLIVER_HEAD: usize = 1 + 2;
/// BCS refuses sequences longer than this.
const MAX_LENGTH: u64 = (1 << 31) - 1;

fn bcs_error(error: bcs::Error) -> WireError {
    WireError(error.to_string())
}

/// The frame as four pieces: two small heads, each followed by the sliver
/// bytes it describes, shared with `request`.
pub(crate) fn encode(request: &PutPairRequest) -> Result<Vec<Bytes>, WireError> {
    let pair = &request.pair;
    let mut head =
        bcs::to_bytes(&(request.blob_id, request.shard, pair.index)).map_err(bcs_error)?;
    let mut chunks = Vec::with_capacity(4);
    for sliver in [&pair.primary, &pair.secondary] {
        head.extend(bcs::to_bytes(&(sliver.axis, sliver.index)).map_err(bcs_error)?);
        let length = sliver.data.len() as u64;
        if length > MAX_LENGTH {
            return Err(WireError(format!(
                "{} sliver {} has {length} bytes, more than a frame can carry",
                sliver.axis, sliver.index
            )));
        }
        write_uleb128(&mut head, length);
        chunks.push(Bytes::from(std::mem::take(&mut head)));
        chunks.push(sliver.data.clone());
    }
    Ok(chunks)
}

/// Parses a frame; the slivers' bytes are views of `frame`.
pub(crate) fn decode(frame: Bytes) -> Result<PutPairRequest, WireError> {
    let mut reader = Reader { frame, at: 0 };
    let (blob_id, shard, index): (BlobId, ShardIndex, SliverPairIndex) = reader.fixed(HEAD)?;
    let primary = reader.sliver()?;
    let secondary = reader.sliver()?;
    if reader.at != reader.frame.len() {
        return Err(WireError(format!(
            "{} bytes after the sliver pair",
            reader.frame.len() - reader.at
        )));
    }
    Ok(PutPairRequest {
        blob_id,
        shard,
        pair: SliverPair {
            index,
            primary,
            secondary,
        },
    })
}

fn write_uleb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader {
    frame: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.frame.len());
        let Some(end) = end else {
            return Err(WireError(format!(
                "frame ends after {} bytes, {n} more were expected at byte {}",
                self.frame.len(),
                self.at
            )));
        };
        let piece = self.frame.slice(self.at..end);
        self.at = end;
        Ok(piece)
    }

    fn fixed<T: DeserializeOwned>(&mut self, n: usize) -> Result<T, WireError> {
        bcs::from_bytes(&self.take(n)?).map_err(bcs_error)
    }

    /// A canonical ULEB128 length, as BCS writes it.
    fn length(&mut self) -> Result<usize, WireError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(WireError("non-canonical ULEB128 length".into()));
                }
                if value > MAX_LENGTH {
                    return Err(WireError(format!("length {value} is over the BCS limit")));
                }
                return usize::try_from(value).map_err(|e| WireError(e.to_string()));
            }
        }
        Err(WireError("ULEB128 length longer than 5 bytes".into()))
    }

    fn sliver(&mut self) -> Result<Sliver, WireError> {
        let (axis, index): (Axis, SliverIndex) = self.fixed(SLIVER_HEAD)?;
        let length = self.length()?;
        Ok(Sliver {
            axis,
            index,
            data: self.take(length)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use floe_codec::{encode as encode_blob, EncodingConfig};
    use floe_net::Wire;

    use super::*;

    fn request(blob_len: usize) -> PutPairRequest {
        let blob: Vec<u8> = (0..blob_len).map(|i| (i * 7 + 3) as u8).collect();
        let (_, blob_id, pairs) = encode_blob(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
        PutPairRequest {
            blob_id,
            shard: ShardIndex(7),
            pair: pairs[4].clone(),
        }
    }

    fn bcs_of(request: &PutPairRequest) -> Vec<u8> {
        bcs::to_bytes(&(request.blob_id, request.shard, &request.pair)).unwrap()
    }

    #[test]
    fn the_frame_is_the_bcs_encoding_and_parses_back() {
        // Lengths with one-, two- and three-byte ULEB128 prefixes.
        for blob_len in [0, 1, 300, 5_000, 200_000] {
            let request = request(blob_len);
            let frame = request.to_frame().unwrap();
            assert_eq!(frame.as_ref(), bcs_of(&request).as_slice(), "{blob_len}");
            assert_eq!(PutPairRequest::from_frame(frame).unwrap(), request);
        }
    }

    #[test]
    fn sliver_bytes_are_shared_not_copied() {
        let request = request(5_000);
        let chunks = request.to_chunks().unwrap();
        assert_eq!(chunks[1].as_ptr(), request.pair.primary.data.as_ptr());
        assert_eq!(chunks[3].as_ptr(), request.pair.secondary.data.as_ptr());
        let frame = request.to_frame().unwrap();
        let parsed = PutPairRequest::from_frame(frame.clone()).unwrap();
        let inside = frame.as_ptr_range();
        assert!(inside.contains(&parsed.pair.primary.data.as_ptr()));
        assert!(inside.contains(&parsed.pair.secondary.data.as_ptr()));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let frame = request(300).to_frame().unwrap();
        // Every truncation, and one byte too many.
        for cut in 0..frame.len() {
            assert!(
                PutPairRequest::from_frame(frame.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = frame.to_vec();
        longer.push(0);
        assert!(PutPairRequest::from_frame(longer.into()).is_err());
        // An axis that does not exist.
        let mut bad_axis = frame.to_vec();
        bad_axis[HEAD] = 9;
        assert!(PutPairRequest::from_frame(bad_axis.into()).is_err());
        // A non-canonical length (zero written in two bytes).
        let mut head = frame[..HEAD + SLIVER_HEAD].to_vec();
        head.extend([0x80, 0x00]);
        assert!(PutPairRequest::from_frame(head.into())
            .unwrap_err()
            .0
            .contains("non-canonical"));
        // A length far beyond the frame.
        let mut huge = frame[..HEAD + SLIVER_HEAD].to_vec();
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x07]);
        assert!(PutPairRequest::from_frame(huge.into()).is_err());
    }
}
