//! Every value is stored in an envelope so that damage is detected on read:
//! `format u8 (1) ‖ BLAKE3(payload)[..16] ‖ payload`.
//!
//! RocksDB checksums its blocks and blob records too; the envelope also
//! catches a value that was written wrong (truncated, or by another
//! version) and names the table and key.

use crate::error::StoreError;

/// A value stored as it is.
pub const FORMAT: u8 = 1;
/// A value that is a sliver's place in a pair file (see `pair_files`):
/// same envelope, payload `index u16 ‖ offset u64 ‖ length u64 ‖
/// checksum of the sliver's bytes`, all little-endian. The checksum is a
/// CRC-32C (u32, 4 bytes: what is written) or, in records of earlier
/// versions, [`checksum`] (16 bytes); the payload's length tells which.
///
/// The CRC keeps this format byte on purpose: an earlier version counts a
/// pair file as recorded by this byte alone, and removes files it thinks
/// unrecorded at start. Rolled back onto a store with CRC records, it keeps
/// their files and reports each record as corrupt (a typed error naming
/// table and key); rolled forward again, every record reads.
pub const FORMAT_IN_FILE: u8 = 2;
/// A blob state in the layout that keeps only facts no other supersedes
/// (`BlobState::to_bytes`); [`FORMAT`] states are the earlier layout.
pub const FORMAT_STATE: u8 = 3;
/// A value that is a sliver's place in its blob's pair file (one file per
/// blob, see `pair_files`): the payload of [`FORMAT_IN_FILE`] with a
/// CRC-32C. Its own byte, so that an earlier version, which knows only
/// files per pair, neither reads such a record as one (a typed error
/// naming table and key) nor removes the blob's file at start (it keeps
/// files whose names are not shard numbers).
pub const FORMAT_IN_BLOB_FILE: u8 = 4;
/// Bytes of a checksum.
pub const CHECKSUM: usize = 16;
/// Envelope bytes before the payload.
pub const HEADER: usize = 1 + CHECKSUM;

/// The checksum an envelope keeps of its payload.
pub fn checksum(payload: &[u8]) -> [u8; CHECKSUM] {
    let mut out = [0u8; CHECKSUM];
    out.copy_from_slice(&blake3::hash(payload).as_bytes()[..CHECKSUM]);
    out
}

/// Wraps `payload`.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    seal_parts(&[payload])
}

/// Wraps the concatenation of `parts`, copying each once.
pub fn seal_parts(parts: &[&[u8]]) -> Vec<u8> {
    seal_parts_as(FORMAT, parts)
}

/// [`seal_parts`] with the given format byte.
pub fn seal_parts_as(format: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    let mut out = Vec::with_capacity(HEADER + len);
    out.push(format);
    out.extend_from_slice(&hasher.finalize().as_bytes()[..CHECKSUM]);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Unwraps a stored value, checking it.
pub fn open<'a>(table: &'static str, key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], StoreError> {
    open_as(&[FORMAT], table, key, stored).map(|(_, payload)| payload)
}

/// Unwraps a stored value of one of `formats`, checking it; returns its
/// format with the payload.
pub fn open_as<'a>(
    formats: &[u8],
    table: &'static str,
    key: &[u8],
    stored: &'a [u8],
) -> Result<(u8, &'a [u8]), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table,
        key: hex(key),
        reason,
    };
    if stored.len() < HEADER {
        return Err(corrupt(format!(
            "truncated: {} bytes, the envelope alone is {HEADER}",
            stored.len()
        )));
    }
    if !formats.contains(&stored[0]) {
        return Err(corrupt(format!("unknown value format {}", stored[0])));
    }
    let payload = &stored[HEADER..];
    if stored[1..HEADER] != checksum(payload) {
        return Err(corrupt(format!(
            "checksum mismatch over {} payload bytes",
            payload.len()
        )));
    }
    Ok((stored[0], payload))
}

/// Lowercase hex, for naming keys in errors.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_detected() {
        let sealed = seal(b"floe sliver");
        assert_eq!(open("t", b"k", &sealed).unwrap(), b"floe sliver");
        assert!(open("t", b"k", &sealed[..sealed.len() - 1]).is_err());
        assert!(open("t", b"k", &sealed[..5]).is_err());
        let mut flipped = sealed.clone();
        flipped[HEADER + 2] ^= 1;
        assert!(matches!(
            open("t", b"k", &flipped),
            Err(StoreError::Corrupt { .. })
        ));
        let mut other = sealed;
        other[0] = 9;
        assert!(open("t", b"k", &other).is_err());
    }
}
