//! The values the tables hold, decoded without the database: every read
//! of the store goes through these functions, so they can be checked (and
//! fuzzed) against arbitrary bytes on their own.

use floe_codec::{BlobId, Sliver, SliverIndex};
use floe_consensus::BlobState;

use crate::envelope::{self, CHECKSUM};
use crate::error::StoreError;

/// The value of a table of BCS values (`metadata`, `promises`): the
/// envelope is checked, then the payload parsed as `T`.
pub fn decode<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &[u8],
    stored: &[u8],
) -> Result<T, StoreError> {
    let payload = envelope::open(table, key, stored)?;
    floe_codec::from_canonical_bytes(payload).map_err(|e| StoreError::Corrupt {
        table,
        key: envelope::hex(key),
        reason: e.to_string(),
    })
}

/// A stored blob state, in either layout ([`envelope::FORMAT_STATE`] or
/// the earlier [`envelope::FORMAT`]).
pub fn decode_state(blob_id: &BlobId, stored: &[u8]) -> Result<BlobState, StoreError> {
    let (format, payload) = envelope::open_as(
        &[envelope::FORMAT_STATE, envelope::FORMAT],
        crate::STATES,
        &blob_id.0,
        stored,
    )?;
    let state = if format == envelope::FORMAT_STATE {
        BlobState::from_bytes(*blob_id, payload)
    } else {
        BlobState::from_legacy_bytes(*blob_id, payload)
    };
    state.map_err(|e| StoreError::Corrupt {
        table: crate::STATES,
        key: envelope::hex(&blob_id.0),
        reason: e.to_string(),
    })
}

/// The first arrival (Unix ms) a `pending` value records.
pub fn decode_arrival(blob_id: &BlobId, stored: &[u8]) -> Result<u64, StoreError> {
    let arrival = envelope::open(crate::PENDING, &blob_id.0, stored)?;
    Ok(u64::from_le_bytes(arrival.try_into().map_err(|_| {
        StoreError::Corrupt {
            table: crate::PENDING,
            key: envelope::hex(&blob_id.0),
            reason: "arrival time is not 8 bytes".into(),
        }
    })?))
}

/// Which pair file a sliver is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairFile {
    /// Its blob's file, shared by every pair of the blob this node keeps
    /// ([`envelope::FORMAT_IN_BLOB_FILE`]): what is written.
    Blob,
    /// A file of its pair's own ([`envelope::FORMAT_IN_FILE`]), in stores
    /// written by earlier versions.
    Own,
}

/// Where a sliver kept in a pair file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePlace {
    /// The file it is in.
    pub file: PairFile,
    /// The sliver's index.
    pub index: SliverIndex,
    /// Its first byte in the pair file.
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
    /// The checksum of its bytes.
    pub checksum: FileChecksum,
}

/// The checksum a pair-file record keeps of its sliver's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecksum {
    /// [`envelope::checksum`] (BLAKE3, truncated), in records of earlier
    /// versions.
    Blake3([u8; CHECKSUM]),
    /// CRC-32C: what is written. It guards against damage on disk (a sliver
    /// read back is also checked against its commitment by whoever uses
    /// it), and runs in hardware at several times BLAKE3's speed on one
    /// core, over every byte a node stores and serves.
    Crc32c(u32),
}

impl FileChecksum {
    /// The checksum written for `data`.
    pub fn of(data: &[u8]) -> Self {
        FileChecksum::Crc32c(crc32c::crc32c(data))
    }

    /// Whether `data` is what this checksum was taken of.
    pub fn matches(&self, data: &[u8]) -> bool {
        match self {
            FileChecksum::Blake3(sum) => envelope::checksum(data) == *sum,
            FileChecksum::Crc32c(sum) => crc32c::crc32c(data) == *sum,
        }
    }
}

/// A `slivers` value: the sliver's bytes, or where they are in a pair file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliverRecord<'a> {
    /// The bytes themselves ([`envelope::FORMAT`]).
    Inline {
        /// The sliver's index.
        index: SliverIndex,
        /// Its symbols.
        data: &'a [u8],
    },
    /// A place in a pair file ([`envelope::FORMAT_IN_BLOB_FILE`] or
    /// [`envelope::FORMAT_IN_FILE`]).
    InFile(FilePlace),
}

impl SliverRecord<'_> {
    /// The stored value (envelope included).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SliverRecord::Inline { index, data } => {
                envelope::seal_parts(&[&index.0.to_le_bytes(), data])
            }
            SliverRecord::InFile(place) => {
                let checksum = match place.checksum {
                    FileChecksum::Blake3(sum) => sum.to_vec(),
                    FileChecksum::Crc32c(sum) => sum.to_le_bytes().to_vec(),
                };
                let format = match place.file {
                    PairFile::Blob => envelope::FORMAT_IN_BLOB_FILE,
                    PairFile::Own => envelope::FORMAT_IN_FILE,
                };
                envelope::seal_parts_as(
                    format,
                    &[
                        &place.index.0.to_le_bytes(),
                        &place.offset.to_le_bytes(),
                        &place.length.to_le_bytes(),
                        &checksum,
                    ],
                )
            }
        }
    }
}

/// The record of a sliver kept in its blob's pair file at `offset`, whose
/// bytes sum to `checksum`.
pub fn file_place(sliver: &Sliver, offset: u64, checksum: FileChecksum) -> Vec<u8> {
    SliverRecord::InFile(FilePlace {
        file: PairFile::Blob,
        index: sliver.index,
        offset,
        length: sliver.data.len() as u64,
        checksum,
    })
    .to_bytes()
}

/// Parses a `slivers` value stored under `key` (named in errors).
pub fn decode_sliver_record<'a>(
    key: &[u8],
    stored: &'a [u8],
) -> Result<SliverRecord<'a>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: crate::SLIVERS,
        key: envelope::hex(key),
        reason,
    };
    let (format, payload) = envelope::open_as(
        &[
            envelope::FORMAT,
            envelope::FORMAT_IN_FILE,
            envelope::FORMAT_IN_BLOB_FILE,
        ],
        crate::SLIVERS,
        key,
        stored,
    )?;
    let Some((index, rest)) = payload.split_first_chunk::<2>() else {
        return Err(corrupt("no sliver index".into()));
    };
    let index = SliverIndex(u16::from_le_bytes(*index));
    if format == envelope::FORMAT {
        return Ok(SliverRecord::Inline { index, data: rest });
    }
    let place_error = || corrupt(format!("a pair-file record of {} bytes", payload.len()));
    let (place, sum) = rest.split_at_checked(16).ok_or_else(place_error)?;
    let word = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&place[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let file = if format == envelope::FORMAT_IN_BLOB_FILE {
        PairFile::Blob
    } else {
        PairFile::Own
    };
    let checksum = if let Ok(sum) = <[u8; 4]>::try_from(sum) {
        FileChecksum::Crc32c(u32::from_le_bytes(sum))
    } else if let (Ok(sum), PairFile::Own) = (<[u8; CHECKSUM]>::try_from(sum), file) {
        // Only earlier versions wrote BLAKE3, and only in files per pair.
        FileChecksum::Blake3(sum)
    } else {
        return Err(place_error());
    };
    Ok(SliverRecord::InFile(FilePlace {
        file,
        index,
        offset: word(0),
        length: word(8),
        checksum,
    }))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use floe_codec::Axis;

    use super::*;

    #[test]
    fn sliver_records_parse_back() {
        let sliver = Sliver {
            axis: Axis::Primary,
            index: SliverIndex(7),
            data: Bytes::from_static(b"some symbols"),
        };
        let stored = file_place(&sliver, 4096, FileChecksum::of(&sliver.data));
        let record = decode_sliver_record(b"k", &stored).unwrap();
        assert_eq!(
            record,
            SliverRecord::InFile(FilePlace {
                file: PairFile::Blob,
                index: SliverIndex(7),
                offset: 4096,
                length: 12,
                checksum: FileChecksum::of(b"some symbols"),
            })
        );
        assert_eq!(record.to_bytes(), stored);
        assert_eq!(stored[0], envelope::FORMAT_IN_BLOB_FILE);
        assert_eq!(stored.len(), envelope::HEADER + 2 + 16 + 4);
        // A record of an earlier version (BLAKE3) still reads, and checks.
        let earlier = SliverRecord::InFile(FilePlace {
            file: PairFile::Own,
            index: SliverIndex(7),
            offset: 4096,
            length: 12,
            checksum: FileChecksum::Blake3(envelope::checksum(b"some symbols")),
        });
        let earlier_bytes = earlier.to_bytes();
        assert_eq!(earlier_bytes.len(), envelope::HEADER + 2 + 16 + CHECKSUM);
        let parsed = decode_sliver_record(b"k", &earlier_bytes).unwrap();
        assert_eq!(parsed, earlier);
        if let SliverRecord::InFile(place) = parsed {
            assert!(place.checksum.matches(b"some symbols"));
            assert!(!place.checksum.matches(b"some symbolz"));
        }
        assert!(FileChecksum::of(b"some symbols").matches(b"some symbols"));
        assert!(!FileChecksum::of(b"some symbols").matches(b"some symbolz"));
        // A record of a file per pair with a CRC (the version before one
        // file per blob) reads as such.
        let own = SliverRecord::InFile(FilePlace {
            file: PairFile::Own,
            index: SliverIndex(7),
            offset: 4096,
            length: 12,
            checksum: FileChecksum::of(b"some symbols"),
        });
        assert_eq!(own.to_bytes()[0], envelope::FORMAT_IN_FILE);
        assert_eq!(decode_sliver_record(b"k", &own.to_bytes()).unwrap(), own);
        let inline = SliverRecord::Inline {
            index: SliverIndex(3),
            data: b"abc",
        };
        assert_eq!(
            decode_sliver_record(b"k", &inline.to_bytes()).unwrap(),
            inline
        );
        // Every other length of a pair-file record is refused (a blob
        // file's record has a CRC, never BLAKE3), and an envelope with no
        // index.
        let longest = &earlier_bytes[envelope::HEADER..];
        for len in 0..longest.len() + 8 {
            let payload: Vec<u8> = longest.iter().copied().cycle().take(len).collect();
            for format in [envelope::FORMAT_IN_FILE, envelope::FORMAT_IN_BLOB_FILE] {
                let record = envelope::seal_parts_as(format, &[&payload]);
                let parsed = decode_sliver_record(b"k", &record);
                let valid = len == 2 + 16 + 4
                    || (len == 2 + 16 + CHECKSUM && format == envelope::FORMAT_IN_FILE);
                assert_eq!(parsed.is_ok(), valid, "{len} {format}");
            }
        }
        assert!(decode_sliver_record(b"k", &envelope::seal(&[1])).is_err());
    }
}
