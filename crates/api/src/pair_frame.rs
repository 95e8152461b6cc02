//! The frame of a [`PutPairsRequest`], byte for byte the BCS encoding of
//! `(blob_id, pairs)`, written and read without copying sliver bytes.
//!
//! ```text
//! blob_id [u8; 32] | ULEB128 count | count times:
//!   shard u16 LE | pair index u16 LE
//!   | primary:   axis u8 | index u16 LE | ULEB128 length | symbols
//!   | secondary: axis u8 | index u16 LE | ULEB128 length | symbols
//! ```
//!
//! Pairs are most of what a store sends (about 4.5 times the blob across a
//! committee), so serializing them through serde would copy every byte once
//! more on the client and once more on the node.

use bytes::Bytes;
use floe_codec::{
    Axis, BlobId, ShardIndex, Sliver, SliverIndex, SliverPair, SliverPairIndex, MAX_N_SHARDS,
};
use floe_wire::WireError;
use serde::de::DeserializeOwned;

use crate::{ApiError, PutPairsRequest};

/// Bytes of the blob ID.
const BLOB_ID: usize = 32;
/// Bytes of `shard | pair index` before each pair.
const PAIR_HEAD: usize = 2 + 2;
/// Bytes of `axis | index` before each sliver's length.
const SLIVER_HEAD: usize = 1 + 2;
/// BCS refuses sequences longer than this.
const MAX_LENGTH: u64 = (1 << 31) - 1;

fn bcs_error(error: bcs::Error) -> WireError {
    WireError(error.to_string())
}

/// The frame as pieces: small heads, each followed by the sliver bytes it
/// describes, shared with `request`.
pub(crate) fn encode(request: &PutPairsRequest) -> Result<Vec<Bytes>, WireError> {
    let mut head = bcs::to_bytes(&request.blob_id).map_err(bcs_error)?;
    write_uleb128(&mut head, checked_length(request.pairs.len(), "pairs")?);
    let mut chunks = Vec::with_capacity(4 * request.pairs.len() + 1);
    for (shard, pair) in &request.pairs {
        head.extend(bcs::to_bytes(&(shard, pair.index)).map_err(bcs_error)?);
        for sliver in [&pair.primary, &pair.secondary] {
            head.extend(bcs::to_bytes(&(sliver.axis, sliver.index)).map_err(bcs_error)?);
            let what = format!("{} sliver {}", sliver.axis, sliver.index);
            write_uleb128(&mut head, checked_length(sliver.data.len(), &what)?);
            chunks.push(Bytes::from(std::mem::take(&mut head)));
            chunks.push(sliver.data.clone());
        }
    }
    if !head.is_empty() {
        chunks.push(Bytes::from(head));
    }
    Ok(chunks)
}

/// `length` as a BCS sequence length, if it is one.
fn checked_length(length: usize, what: &str) -> Result<u64, WireError> {
    let length = length as u64;
    if length > MAX_LENGTH {
        return Err(WireError(format!(
            "{what} has {length} elements, more than a frame can carry"
        )));
    }
    Ok(length)
}

/// A [`PutPairsRequest`] frame whose head (the blob ID and the number of
/// pairs) has been read, and its pairs not yet. A node decodes the pairs
/// with [`PutPairsFrame::decode`], passing the number of pairs its
/// committee allows: a count beyond it is refused, naming the blob, before
/// anything is reserved for the pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPairsFrame {
    blob_id: BlobId,
    count: usize,
    /// The whole frame; the pairs start at `pairs_at`.
    frame: Bytes,
    pairs_at: usize,
}

impl PutPairsFrame {
    /// The blob the pairs are of.
    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }

    /// How many pairs the frame says it carries.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The pairs, if there are at most `max_pairs` of them (the shards of
    /// the committee: a request holds at most one pair per shard) and the
    /// frame is well formed. The slivers' bytes are views of the frame.
    pub fn decode(self, max_pairs: usize) -> Result<PutPairsRequest, ApiError> {
        let blob_id = self.blob_id;
        let count = self.count;
        if count > max_pairs {
            return Err(ApiError::Limit(format!(
                "blob {blob_id}: the request carries {count} sliver pairs; \
                 one request carries at most {max_pairs}, one per shard of the committee"
            )));
        }
        let rejected = |e: WireError| ApiError::Rejected {
            blob_id,
            reason: format!("malformed sliver pairs: {e}"),
        };
        let mut reader = Reader {
            frame: self.frame,
            at: self.pairs_at,
        };
        // Each pair takes at least its heads: a count the frame cannot hold
        // is refused before anything is allocated for it.
        let least = PAIR_HEAD + 2 * (SLIVER_HEAD + 1);
        let left = reader.frame.len() - reader.at;
        if count > left / least {
            return Err(rejected(WireError(format!(
                "{count} pairs cannot fit in the {left} bytes left of the frame"
            ))));
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let (shard, index): (ShardIndex, SliverPairIndex) =
                reader.fixed(PAIR_HEAD).map_err(rejected)?;
            let primary = reader.sliver().map_err(rejected)?;
            let secondary = reader.sliver().map_err(rejected)?;
            pairs.push((
                shard,
                SliverPair {
                    index,
                    primary,
                    secondary,
                },
            ));
        }
        if reader.at != reader.frame.len() {
            return Err(rejected(WireError(format!(
                "{} bytes after the sliver pairs",
                reader.frame.len() - reader.at
            ))));
        }
        Ok(PutPairsRequest { blob_id, pairs })
    }
}

impl floe_wire::Wire for PutPairsFrame {
    fn to_frame(&self) -> Result<Bytes, WireError> {
        Ok(self.frame.clone())
    }

    /// Reads the head only: the blob ID and the pair count.
    fn from_frame(frame: Bytes) -> Result<Self, WireError> {
        let mut reader = Reader { frame, at: 0 };
        let blob_id: BlobId = reader.fixed(BLOB_ID)?;
        let count = reader.length()?;
        Ok(PutPairsFrame {
            blob_id,
            count,
            pairs_at: reader.at,
            frame: reader.frame,
        })
    }
}

/// Parses a frame of at most [`MAX_N_SHARDS`] pairs (no committee has more
/// shards); the slivers' bytes are views of `frame`.
pub(crate) fn decode(frame: Bytes) -> Result<PutPairsRequest, WireError> {
    use floe_wire::Wire as _;
    PutPairsFrame::from_frame(frame)?
        .decode(usize::from(MAX_N_SHARDS))
        .map_err(|e| WireError(e.to_string()))
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
    use floe_wire::Wire;

    use super::*;

    /// `count` pairs (shards 7, 8, ...) of a blob of `blob_len` bytes.
    fn request(blob_len: usize, count: usize) -> PutPairsRequest {
        let blob: Vec<u8> = (0..blob_len).map(|i| (i * 7 + 3) as u8).collect();
        let (_, blob_id, pairs) = encode_blob(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
        PutPairsRequest {
            blob_id,
            pairs: (0..count)
                .map(|i| (ShardIndex(7 + i as u16), pairs[(4 + i) % 10].clone()))
                .collect(),
        }
    }

    fn bcs_of(request: &PutPairsRequest) -> Vec<u8> {
        bcs::to_bytes(&(request.blob_id, &request.pairs)).unwrap()
    }

    #[test]
    fn the_frame_is_the_bcs_encoding_and_parses_back() {
        // Lengths with one-, two- and three-byte ULEB128 prefixes; no pair,
        // one, several.
        for blob_len in [0, 1, 300, 5_000, 200_000] {
            for count in [0, 1, 3] {
                let request = request(blob_len, count);
                let frame = request.to_frame().unwrap();
                assert_eq!(frame.as_ref(), bcs_of(&request).as_slice(), "{blob_len}");
                assert_eq!(PutPairsRequest::from_frame(frame).unwrap(), request);
            }
        }
    }

    #[test]
    fn sliver_bytes_are_shared_not_copied() {
        let request = request(5_000, 2);
        let chunks = request.to_chunks().unwrap();
        for (i, (_, pair)) in request.pairs.iter().enumerate() {
            assert_eq!(chunks[4 * i + 1].as_ptr(), pair.primary.data.as_ptr());
            assert_eq!(chunks[4 * i + 3].as_ptr(), pair.secondary.data.as_ptr());
        }
        let frame = request.to_frame().unwrap();
        let parsed = PutPairsRequest::from_frame(frame.clone()).unwrap();
        let inside = frame.as_ptr_range();
        for (_, pair) in &parsed.pairs {
            assert!(inside.contains(&pair.primary.data.as_ptr()));
            assert!(inside.contains(&pair.secondary.data.as_ptr()));
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        let frame = request(300, 2).to_frame().unwrap();
        // Every truncation, and one byte too many.
        for cut in 0..frame.len() {
            assert!(
                PutPairsRequest::from_frame(frame.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = frame.to_vec();
        longer.push(0);
        assert!(PutPairsRequest::from_frame(longer.into()).is_err());
        // The first sliver's axis byte, after the blob ID, the count and
        // the pair's head.
        let first_sliver = BLOB_ID + 1 + PAIR_HEAD;
        let mut bad_axis = frame.to_vec();
        bad_axis[first_sliver] = 9;
        assert!(PutPairsRequest::from_frame(bad_axis.into()).is_err());
        // A non-canonical length (zero written in two bytes), with enough
        // bytes after it for the count to pass.
        let mut head = frame[..first_sliver + SLIVER_HEAD].to_vec();
        head.extend([0x80, 0x00]);
        head.extend([0; 64]);
        assert!(PutPairsRequest::from_frame(head.into())
            .unwrap_err()
            .0
            .contains("non-canonical"));
        // A length far beyond the frame.
        let mut huge = frame[..first_sliver + SLIVER_HEAD].to_vec();
        huge.extend([0xff, 0xff, 0xff, 0xff, 0x07]);
        huge.extend([0; 64]);
        assert!(PutPairsRequest::from_frame(huge.into())
            .unwrap_err()
            .0
            .contains("frame ends"));
        // A count far beyond what the frame holds, within the pairs a
        // committee may have.
        let mut many = frame[..BLOB_ID].to_vec();
        write_uleb128(&mut many, u64::from(MAX_N_SHARDS));
        many.extend(&frame[BLOB_ID + 1..]);
        assert!(PutPairsRequest::from_frame(many.into())
            .unwrap_err()
            .0
            .contains("cannot fit"));
    }

    #[test]
    fn a_count_beyond_the_committee_is_refused_naming_the_blob() {
        let request = request(300, 3);
        let frame = request.to_frame().unwrap();
        let head = PutPairsFrame::from_frame(frame.clone()).unwrap();
        assert_eq!((head.blob_id(), head.count()), (request.blob_id, 3));
        assert_eq!(head.to_frame().unwrap(), frame);
        assert_eq!(head.clone().decode(3).unwrap(), request);
        let ApiError::Limit(reason) = head.decode(2).unwrap_err() else {
            panic!("not a limit");
        };
        assert!(
            reason.contains(&request.blob_id.to_string())
                && reason.contains("3 sliver pairs")
                && reason.contains("at most 2"),
            "{reason}"
        );
        // No committee has more than MAX_N_SHARDS shards: a larger count
        // is refused whatever the frame holds after it.
        let mut many = frame[..BLOB_ID].to_vec();
        write_uleb128(&mut many, u64::from(MAX_N_SHARDS) + 1);
        many.extend(vec![0; 12 * (usize::from(MAX_N_SHARDS) + 1)]);
        let error = PutPairsRequest::from_frame(many.into()).unwrap_err().0;
        assert!(error.contains("at most 4096"), "{error}");
        // A malformed pair names the blob.
        let mut bad_axis = frame.to_vec();
        bad_axis[BLOB_ID + 1 + PAIR_HEAD] = 9;
        let error = PutPairsFrame::from_frame(bad_axis.into())
            .unwrap()
            .decode(8)
            .unwrap_err();
        assert!(
            matches!(error, ApiError::Rejected { blob_id, .. } if blob_id == request.blob_id),
            "{error}"
        );
    }
}
