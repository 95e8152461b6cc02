//! Decoding a blob from slivers of one axis.
//!
//! Primary slivers are rows: any `n − 2f` of them decode, and when they are
//! the systematic rows `0..n − 2f` the blob is just their concatenation, no
//! Reed–Solomon work at all. Otherwise each of the `n − f` columns is
//! restored from the rows given. Secondary slivers are columns: any `n − f`
//! decode, the systematic ones by a transpose, others row by row.

use std::collections::BTreeMap;

use rayon::prelude::*;

use bytes::Bytes;

use crate::{
    buffer::SliverBuffer,
    encode::{copy_parallel, transpose},
    error::{DecodeError, SliverError},
    line::with_coder,
    Axis, BlobId, BlobMetadata, Sliver,
};

/// How much a decode checks beyond the metadata (which is always checked
/// against the blob ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeCheck {
    /// Every sliver used was already verified by the caller (for example as
    /// it arrived from the network), so it is not verified again.
    AlreadyVerified,
    /// Every sliver given was verified by the caller, as with
    /// [`DecodeCheck::AlreadyVerified`]; every row the decode rebuilt with
    /// the code is then verified against the metadata, so that a writer who
    /// encoded the blob inconsistently cannot make two readers, decoding
    /// from different slivers, get different bytes. Free when the
    /// systematic rows are given, since nothing is rebuilt.
    Consistent,
    /// Verify every sliver used against the metadata before decoding.
    #[default]
    VerifySlivers,
    /// Verify every sliver, then re-encode the decoded blob and check that
    /// it has the requested blob ID. This catches a writer that encoded the
    /// blob inconsistently, at the cost of a full encode.
    Strict,
}

/// Decodes the blob `blob_id` from `slivers`, which must all be on one axis:
/// at least `n − 2f` distinct primary slivers or `n − f` distinct secondary
/// slivers. Systematic slivers are preferred when more than enough are given.
///
/// ```
/// use floe_codec::{decode, encode, DecodeCheck, EncodingConfig};
/// let config = EncodingConfig::new(10)?;
/// let (metadata, blob_id, pairs) = encode(&config, b"any n - 2f rows decode")?;
/// let rows: Vec<_> = pairs[6..].iter().map(|pair| pair.primary.clone()).collect();
/// let blob = decode(&blob_id, &metadata, &rows, DecodeCheck::VerifySlivers)?;
/// assert_eq!(blob, b"any n - 2f rows decode");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode(
    blob_id: &BlobId,
    metadata: &BlobMetadata,
    slivers: &[Sliver],
    check: DecodeCheck,
) -> Result<Vec<u8>, DecodeError> {
    let mut blob = decode_into(blob_id, metadata, slivers, check, |len| vec![0u8; len])?;
    blob.truncate(metadata.unencoded_length() as usize);
    Ok(blob)
}

/// [`decode`], the blob as shareable bytes. A large blob is written into
/// memory mapped with huge pages where the OS allows it, and recycled from
/// earlier encodes and decodes: a 64 MiB blob from its systematic slivers
/// is then a copy at memory speed rather than sixteen thousand page faults,
/// each zeroing a page the copy then overwrites.
///
/// ```
/// use floe_codec::{decode_bytes, encode, DecodeCheck, EncodingConfig};
/// let config = EncodingConfig::new(10)?;
/// let (metadata, blob_id, pairs) = encode(&config, b"the same bytes")?;
/// let rows: Vec<_> = pairs.iter().map(|pair| pair.primary.clone()).collect();
/// let blob = decode_bytes(&blob_id, &metadata, &rows, DecodeCheck::Consistent)?;
/// assert_eq!(&blob[..], b"the same bytes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_bytes(
    blob_id: &BlobId,
    metadata: &BlobMetadata,
    slivers: &[Sliver],
    check: DecodeCheck,
) -> Result<Bytes, DecodeError> {
    let blob = decode_into(
        blob_id,
        metadata,
        slivers,
        check,
        SliverBuffer::for_overwrite,
    )?;
    // The metadata's length is at most the matrix size (checked at construction).
    Ok(blob
        .into_bytes()
        .slice(..metadata.unencoded_length() as usize))
}

/// The source matrix decoded from `slivers` into a buffer from `alloc`
/// (whose contents may be anything: every byte of the matrix is written),
/// checked as `check` says.
fn decode_into<B: AsMut<[u8]> + AsRef<[u8]>>(
    blob_id: &BlobId,
    metadata: &BlobMetadata,
    slivers: &[Sliver],
    check: DecodeCheck,
    alloc: impl FnOnce(usize) -> B,
) -> Result<B, DecodeError> {
    metadata.verify(blob_id)?;
    let axis = match slivers.first() {
        Some(first) => first.axis,
        None => {
            return Err(DecodeError::NotEnoughSlivers {
                blob_id: *blob_id,
                axis: Axis::Primary,
                given: 0,
                needed: metadata.config().rows(),
            })
        }
    };
    if slivers.iter().any(|sliver| sliver.axis != axis) {
        return Err(DecodeError::MixedAxes { blob_id: *blob_id });
    }
    let config = metadata.config();
    let (rows, cols, s) = (config.rows(), config.cols(), metadata.symbol_size());
    // Primary slivers are rows and each column has `n - 2f` source symbols,
    // so `n - 2f` rows are needed; secondary slivers need `n - f` columns.
    let needed = match axis {
        Axis::Primary => rows,
        Axis::Secondary => cols,
    };
    let chosen = choose_valid(metadata, slivers, needed, check)?;
    if chosen.len() < needed {
        return Err(DecodeError::NotEnoughSlivers {
            blob_id: *blob_id,
            axis,
            given: chosen.len(),
            needed,
        });
    }
    let chosen: Vec<(usize, &Sliver)> = chosen.into_iter().collect();

    let mut matrix = alloc(rows * cols * s);
    let out = matrix.as_mut();
    let rebuilt = match axis {
        Axis::Primary => decode_rows(&chosen, out, rows, cols, s, config.n()),
        Axis::Secondary => decode_cols(&chosen, out, rows, cols, s, config.n()),
    };
    if check == DecodeCheck::Consistent {
        check_rebuilt(blob_id, metadata, out, &rebuilt, cols * s)?;
    }
    if check == DecodeCheck::Strict {
        // The metadata's length is at most the matrix size (checked at construction).
        let blob = &matrix.as_ref()[..metadata.unencoded_length() as usize];
        let (_, computed, _) = crate::encode(&metadata.config(), blob).map_err(|_| {
            DecodeError::StrictCheckFailed {
                expected: *blob_id,
                computed: *blob_id,
            }
        })?;
        if computed != *blob_id {
            return Err(DecodeError::StrictCheckFailed {
                expected: *blob_id,
                computed,
            });
        }
    }
    Ok(matrix)
}

/// Picks up to `needed` valid slivers with distinct indices, lowest
/// (systematic) indices first. Candidates are verified in parallel batches
/// just large enough to fill what is missing, so a bad sliver costs one
/// extra verification, not a failed read, when a good one is also given.
/// When too few are valid, the first invalid one's error is returned.
fn choose_valid<'a>(
    metadata: &BlobMetadata,
    slivers: &'a [Sliver],
    needed: usize,
    check: DecodeCheck,
) -> Result<BTreeMap<usize, &'a Sliver>, DecodeError> {
    let mut candidates: Vec<&Sliver> = slivers.iter().collect();
    candidates.sort_by_key(|sliver| sliver.index); // stable: duplicates keep their order
    let mut chosen = BTreeMap::new();
    let mut first_error = None;
    let mut next = 0;
    while chosen.len() < needed && next < candidates.len() {
        let mut batch: Vec<&Sliver> = Vec::new();
        while chosen.len() + batch.len() < needed && next < candidates.len() {
            let candidate = candidates[next];
            if chosen.contains_key(&candidate.index.as_usize()) {
                next += 1;
                continue;
            }
            if batch.last().is_some_and(|b| b.index == candidate.index) {
                // A duplicate of one being checked: try it in the next batch
                // if the first copy turns out bad.
                break;
            }
            batch.push(candidate);
            next += 1;
        }
        let results: Vec<Result<(), SliverError>> = batch
            .par_iter()
            .map(|sliver| match check {
                DecodeCheck::AlreadyVerified | DecodeCheck::Consistent => {
                    sliver.check_shape(metadata)
                }
                _ => with_coder(|coder| sliver.verify_with(metadata, coder)),
            })
            .collect();
        for (sliver, result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    chosen.insert(sliver.index.as_usize(), sliver);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    match first_error {
        Some(error) if chosen.len() < needed => Err(error.into()),
        _ => Ok(chosen),
    }
}

/// Verifies the source rows `rebuilt` of the decoded matrix `blob` (rows of
/// `row_bytes`) against the metadata's commitments, in parallel.
fn check_rebuilt(
    blob_id: &BlobId,
    metadata: &BlobMetadata,
    blob: &[u8],
    rebuilt: &[usize],
    row_bytes: usize,
) -> Result<(), DecodeError> {
    rebuilt.par_iter().try_for_each(|&i| {
        let sliver = Sliver {
            axis: Axis::Primary,
            index: crate::SliverIndex(i as u16),
            data: bytes::Bytes::copy_from_slice(&blob[i * row_bytes..(i + 1) * row_bytes]),
        };
        with_coder(|coder| sliver.verify_with(metadata, coder)).map_err(|_| {
            DecodeError::InconsistentEncoding {
                blob_id: *blob_id,
                row: sliver.index,
            }
        })
    })
}

/// `rows` distinct rows `chosen` (each `cols` symbols) to the row-major
/// source matrix, and the rows rebuilt with the code (not given).
fn decode_rows(
    chosen: &[(usize, &Sliver)],
    out: &mut [u8],
    rows: usize,
    cols: usize,
    s: usize,
    n: usize,
) -> Vec<usize> {
    let row_bytes = cols * s;
    let missing: Vec<usize> = (0..rows)
        .filter(|i| chosen.binary_search_by_key(i, |(j, _)| *j).is_err())
        .collect();
    // One parallel pass over the output, each row copied where it lands.
    out.par_chunks_mut(row_bytes)
        .enumerate()
        .for_each(|(i, row)| {
            if let Ok(k) = chosen.binary_search_by_key(&i, |(j, _)| *j) {
                row.copy_from_slice(&chosen[k].1.data);
            }
        });
    if missing.is_empty() {
        return missing;
    }
    // Column j is a codeword of the column code: `rows` sources, `n - rows`
    // repair symbols. Restore every column, keep its missing rows.
    let kept = missing.len() * s;
    let mut restored = vec![0u8; cols * kept];
    restored.par_chunks_mut(kept).enumerate().for_each_init(
        || vec![0u8; rows * s],
        |column, (j, out)| {
            let known = chosen
                .iter()
                .map(|(i, sliver)| (*i, &sliver.data[j * s..(j + 1) * s]));
            with_coder(|coder| coder.restore(rows, n - rows, s, known, column));
            for (t, i) in missing.iter().enumerate() {
                out[t * s..(t + 1) * s].copy_from_slice(&column[i * s..(i + 1) * s]);
            }
        },
    );
    // `restored` is column-major over the missing rows.
    let mut missing_rows = vec![0u8; kept * cols];
    transpose(&restored, &mut missing_rows, cols, missing.len(), s);
    for (t, i) in missing.iter().enumerate() {
        let row = &missing_rows[t * row_bytes..(t + 1) * row_bytes];
        copy_parallel(&mut out[i * row_bytes..(i + 1) * row_bytes], row);
    }
    missing
}

/// `cols` distinct columns `chosen` (each `rows` symbols) to the row-major
/// source matrix, and the rows to check against their own commitments (all
/// of them: even the systematic columns only hold rows through the columns'
/// commitments).
fn decode_cols(
    chosen: &[(usize, &Sliver)],
    out: &mut [u8],
    rows: usize,
    cols: usize,
    s: usize,
    n: usize,
) -> Vec<usize> {
    if chosen.last().is_some_and(|(j, _)| *j < cols) {
        let mut col_major = vec![0u8; rows * cols * s];
        for (j, sliver) in chosen {
            col_major[j * rows * s..(j + 1) * rows * s].copy_from_slice(&sliver.data);
        }
        transpose_back(&col_major, out, rows, cols, s);
        // The rows come from the columns' commitments, not the rows' own:
        // a consistent decode checks them against those too.
        return (0..rows).collect();
    }
    // Row i is a codeword of the row code: `cols` sources, `n - cols` repair.
    out.par_chunks_mut(cols * s)
        .enumerate()
        .for_each(|(i, row)| {
            let known = chosen
                .iter()
                .map(|(j, sliver)| (*j, &sliver.data[i * s..(i + 1) * s]));
            with_coder(|coder| coder.restore(cols, n - cols, s, known, row));
        });
    (0..rows).collect()
}

/// Column-major `rows × cols` back to row-major: a transpose of the
/// `cols × rows` row-major matrix.
fn transpose_back(col_major: &[u8], row_major: &mut [u8], rows: usize, cols: usize, s: usize) {
    transpose(col_major, row_major, cols, rows, s);
}
