//! Blob IDs and the hashes that commit to a blob's encoding.

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Serialize};

use crate::error::BlobIdParseError;

/// A blob's identity: a 32-byte BLAKE3 hash that commits to the encoding
/// type, the format version, the unencoded length and every symbol of the
/// extended matrix (through the sliver hashes in [`crate::BlobMetadata`]).
///
/// Displayed and parsed as 43 characters of URL-safe base64 without padding.
/// BCS: 32 raw bytes.
///
/// # Examples
///
/// ```
/// use floe_codec::BlobId;
///
/// let id: BlobId = "A".repeat(43).parse()?; // 32 zero bytes
/// assert_eq!(id, BlobId([0; 32]));
/// let text = BlobId([7; 32]).to_string();
/// assert_eq!(text.len(), 43);
/// assert_eq!(text.parse::<BlobId>()?, BlobId([7; 32]));
/// assert!("not a blob ID".parse::<BlobId>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The offset by which this blob's sliver pairs are rotated onto shards:
    /// the first 8 bytes of the ID, little-endian, modulo `n`.
    pub(crate) fn rotation(&self, n_shards: u16) -> u32 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        (u64::from_le_bytes(head) % u64::from(n_shards.max(1))) as u32
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

impl FromStr for BlobId {
    type Err = BlobIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| BlobIdParseError {
                input: s.to_owned(),
            })?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| BlobIdParseError {
            input: s.to_owned(),
        })?;
        Ok(BlobId(array))
    }
}

/// A 32-byte commitment: the BLAKE3 root of an extended sliver, or of the
/// metadata. Displayed as lowercase hex. BCS: 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash32(pub [u8; 32]);

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

impl From<blake3::Hash> for Hash32 {
    fn from(hash: blake3::Hash) -> Self {
        Hash32(*hash.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_garbage_with_the_input_named() {
        for bad in ["", "not base64!", "AAAA", &"A".repeat(44)] {
            let err = bad.parse::<BlobId>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn rotation_is_below_n() {
        let id = BlobId([0xff; 32]);
        assert!(id.rotation(1000) < 1000);
        assert_eq!(BlobId([0; 32]).rotation(7), 0);
    }
}
