//! The metadata of the last few blobs, decoded.
//!
//! Every request of an upload verifies its pairs against the blob's
//! metadata: a hundred requests for a 16 MiB blob on seven nodes, each of
//! which decoded the same stored value again (two hashes per shard, read a
//! byte at a time through serde). That decode cost more than the read.

use std::collections::VecDeque;
use std::sync::Mutex;

use floe_codec::{BlobId, BlobMetadata};

use crate::error::StoreError;

/// Decoded values kept: a node receives few blobs at once.
const KEPT: usize = 16;

/// A blob, its stored metadata value and what it decoded to.
type Kept = (BlobId, Vec<u8>, BlobMetadata);

/// Stored metadata values and what they decoded to, newest last.
#[derive(Default)]
pub(crate) struct DecodedMetadata {
    recent: Mutex<VecDeque<Kept>>,
}

impl DecodedMetadata {
    /// What `blob_id`'s `stored` value decodes to: kept from an earlier
    /// decode of the same bytes for the same blob, or `decode`d (and
    /// checked) now. Keyed by the stored bytes themselves, so a value
    /// rewritten, removed or damaged since is never answered from an
    /// earlier decode.
    pub(crate) fn get_or_decode(
        &self,
        blob_id: &BlobId,
        stored: &[u8],
        decode: impl FnOnce() -> Result<BlobMetadata, StoreError>,
    ) -> Result<BlobMetadata, StoreError> {
        if let Some((_, _, metadata)) = decode_of(&self.lock(), blob_id, stored) {
            return Ok(metadata.clone());
        }
        let metadata = decode()?;
        self.keep(blob_id, stored, &metadata);
        Ok(metadata)
    }

    /// Keeps `metadata`, checked to be `blob_id`'s, as what `stored`
    /// decodes to (unless it is kept already).
    pub(crate) fn keep(&self, blob_id: &BlobId, stored: &[u8], metadata: &BlobMetadata) {
        let mut recent = self.lock();
        if decode_of(&recent, blob_id, stored).is_none() {
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back((*blob_id, stored.to_vec(), metadata.clone()));
        }
    }

    /// `blob_id`'s metadata if a decode of it is kept, without reading the
    /// database. A blob ID is its metadata's hash and a decode is kept only
    /// once checked against it, so what this answers is that blob's
    /// metadata; whether it is still stored is not known from here.
    pub(crate) fn kept(&self, blob_id: &BlobId) -> Option<BlobMetadata> {
        self.lock()
            .iter()
            .rev()
            .find(|(id, _, _)| id == blob_id)
            .map(|(_, _, metadata)| metadata.clone())
    }

    /// Forgets `blob_id`'s decodes: its metadata is gone.
    pub(crate) fn forget(&self, blob_id: &BlobId) {
        self.lock().retain(|(id, _, _)| id != blob_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Kept>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The decode of `blob_id`'s `stored` value among `recent`, if kept.
fn decode_of<'a>(recent: &'a VecDeque<Kept>, blob_id: &BlobId, stored: &[u8]) -> Option<&'a Kept> {
    recent
        .iter()
        .find(|(id, bytes, _)| id == blob_id && bytes == stored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn metadata(byte: u8) -> BlobMetadata {
        let blob = vec![byte; 1000];
        floe_codec::encode(&floe_codec::EncodingConfig::new(10).unwrap(), &blob)
            .unwrap()
            .0
    }

    /// Answered from an earlier decode only for the very bytes decoded, of
    /// the same blob: other bytes (another blob's value, a rewritten or
    /// damaged one) or the same bytes under another blob are decoded, and a
    /// decode that fails is never kept.
    #[test]
    fn only_the_same_stored_bytes_skip_the_decode() {
        let decoded = DecodedMetadata::default();
        let (a, b) = (metadata(1), metadata(2));
        let (id_a, id_b) = (BlobId([1; 32]), BlobId([2; 32]));
        let damaged = || {
            Err(StoreError::Corrupt {
                table: "metadata",
                key: "k".into(),
                reason: "damaged".into(),
            })
        };
        assert!(decoded.get_or_decode(&id_a, b"a", damaged).is_err());
        assert_eq!(
            decoded
                .get_or_decode(&id_a, b"a", || Ok(a.clone()))
                .unwrap(),
            a
        );
        // Kept: the decode is not run again.
        assert_eq!(decoded.get_or_decode(&id_a, b"a", damaged).unwrap(), a);
        assert!(decoded.get_or_decode(&id_a, b"a!", damaged).is_err());
        // The same bytes stored under another blob are decoded (and checked).
        assert!(decoded.get_or_decode(&id_b, b"a", damaged).is_err());
        assert_eq!(
            decoded
                .get_or_decode(&id_b, b"b", || Ok(b.clone()))
                .unwrap(),
            b
        );
        // The oldest goes once more than KEPT values were decoded.
        for i in 0..KEPT {
            let key = format!("{i}");
            decoded
                .get_or_decode(&id_b, key.as_bytes(), || Ok(b.clone()))
                .unwrap();
        }
        assert!(decoded.get_or_decode(&id_a, b"a", damaged).is_err());
        assert_eq!(decoded.lock().len(), KEPT);
    }
}
