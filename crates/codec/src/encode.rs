//! Encoding a blob into sliver pairs, metadata and its blob ID.
//!
//! The blob, zero-padded, is the source matrix of `rows = n − 2f` by
//! `cols = n − f` symbols, row-major. Two buffers hold every sliver:
//!
//! * `primary`: all `n` rows restricted to the source columns, row-major.
//!   Rows `0..rows` are the blob itself; rows `rows..n` are the column code's
//!   extension `C`.
//! * `secondary`: all `n` columns restricted to the source rows,
//!   column-major. Columns `0..cols` are the transposed blob; columns
//!   `cols..n` are the row code's extension `R`, transposed.
//!
//! Each buffer is written once and then split into slivers without copying
//! ([`Bytes`] views). The commitments need the full extended rows and
//! columns; the only part of the `n × n` matrix not in a sliver is the corner
//! (`2f × f` symbols), which is recomputed line by line, hashed and dropped,
//! so peak memory stays at the slivers plus the input plus one line per thread.
//!
//! Four passes, the first two and the last two running concurrently:
//!
//! 1. source rows → extend (`R`), commit rows `0..rows`, scatter `R` into
//!    secondary columns `cols..n`;
//!    ∥ source columns → extend (`C`), commit columns `0..cols`, scatter `C`
//!    into primary rows `rows..n`.
//! 2. rows `rows..n` → extend (corner), commit;
//!    ∥ columns `cols..n` → extend (corner), commit.

use rayon::prelude::*;

use crate::{
    buffer::SliverBuffer, error::ConfigError, line::with_coder, metadata::SliverPairHashes, Axis,
    BlobId, BlobMetadata, EncodingConfig, Hash32, Sliver, SliverIndex, SliverPair, SliverPairIndex,
};

/// Encodes `blob` for `config.n_shards()` shards.
///
/// Returns the metadata, the blob ID and one [`SliverPair`] per shard, in
/// sliver-pair order (use [`crate::ShardIndex::to_pair_index`] to find which
/// pair a shard stores). Runs on the current rayon thread pool.
///
/// ```
/// use floe_codec::{encode, EncodingConfig};
/// let config = EncodingConfig::new(7)?;
/// let (metadata, blob_id, pairs) = encode(&config, b"hello, Floe")?;
/// assert_eq!(pairs.len(), 7);
/// metadata.verify(&blob_id)?;
/// pairs[3].verify(&metadata)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode(
    config: &EncodingConfig,
    blob: &[u8],
) -> Result<(BlobMetadata, BlobId, Vec<SliverPair>), ConfigError> {
    let s = config.symbol_size(blob.len() as u64)? as usize;
    let (n, rows, cols) = (config.n(), config.rows(), config.cols());
    let f = usize::from(config.f());
    let row_bytes = cols * s;
    let col_bytes = rows * s;

    // Every byte of both buffers is written below: the blob and its zero
    // padding, then the transposed source and both extensions.
    let mut primary_buffer = SliverBuffer::for_overwrite(n * row_bytes);
    let mut secondary_buffer = SliverBuffer::for_overwrite(n * col_bytes);
    let (primary, secondary) = (
        primary_buffer.as_mut_slice(),
        secondary_buffer.as_mut_slice(),
    );
    copy_parallel(&mut primary[..blob.len()], blob);
    primary[blob.len()..rows * row_bytes].fill(0);

    let (source_rows, extension_rows) = primary.split_at_mut(rows * row_bytes);
    let (source_cols, extension_cols) = secondary.split_at_mut(cols * col_bytes);
    transpose(source_rows, source_cols, rows, cols, s);

    let (source_rows, source_cols) = (&*source_rows, &*source_cols);
    let (mut row_hashes, mut col_hashes) = rayon::join(
        || extend_commit_scatter(source_rows, cols, f, s, extension_cols),
        || extend_commit_scatter(source_cols, rows, 2 * f, s, extension_rows),
    );
    let (corner_row_hashes, corner_col_hashes) =
        commit_through_corner(extension_rows, extension_cols, rows, cols, f, s);
    row_hashes.extend(corner_row_hashes);
    col_hashes.extend(corner_col_hashes);

    let hashes = (0..n)
        .map(|p| SliverPairHashes {
            primary: row_hashes[p],
            secondary: col_hashes[n - 1 - p],
        })
        .collect();
    let metadata = BlobMetadata::new(blob.len() as u64, hashes)?;
    let blob_id = metadata.blob_id();

    let primary = primary_buffer.into_bytes();
    let secondary = secondary_buffer.into_bytes();
    let pairs = (0..n)
        .map(|p| {
            let q = n - 1 - p;
            SliverPair {
                index: SliverPairIndex(p as u16),
                primary: Sliver {
                    axis: Axis::Primary,
                    index: SliverIndex(p as u16),
                    data: primary.slice(p * row_bytes..(p + 1) * row_bytes),
                },
                secondary: Sliver {
                    axis: Axis::Secondary,
                    index: SliverIndex(q as u16),
                    data: secondary.slice(q * col_bytes..(q + 1) * col_bytes),
                },
            }
        })
        .collect();
    Ok((metadata, blob_id, pairs))
}

/// Work is split into about this many blocks per thread, for load balance.
const BLOCKS_PER_THREAD: usize = 4;

fn lines_per_block(lines: usize) -> usize {
    lines
        .div_ceil(rayon::current_num_threads() * BLOCKS_PER_THREAD)
        .max(1)
}

pub(crate) fn copy_parallel(dst: &mut [u8], src: &[u8]) {
    const PIECE: usize = 1 << 20;
    dst.par_chunks_mut(PIECE)
        .zip(src.par_chunks(PIECE))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Transposes a `rows × cols` row-major matrix of `s`-byte symbols into
/// column-major order.
pub(crate) fn transpose(
    row_major: &[u8],
    col_major: &mut [u8],
    rows: usize,
    cols: usize,
    s: usize,
) {
    // Tiles of columns: each source row contributes one contiguous run of
    // `tile` symbols, written to `tile` output streams.
    const TILE_BYTES: usize = 8 << 10;
    let tile = (TILE_BYTES / s).clamp(1, cols);
    let row_bytes = cols * s;
    col_major
        .par_chunks_mut(tile * rows * s)
        .enumerate()
        .for_each(|(t, out)| {
            let first_col = t * tile;
            let width = out.len() / (rows * s);
            for i in 0..rows {
                let run = &row_major[i * row_bytes + first_col * s..][..width * s];
                for (c, symbol) in run.chunks_exact(s).enumerate() {
                    out[(c * rows + i) * s..][..s].copy_from_slice(symbol);
                }
            }
        });
}

/// Bytes of corner symbols computed per batch in [`commit_through_corner`].
const CORNER_BATCH_BYTES: usize = 8 << 20;

/// Commits to the extended rows `rows..n` and columns `cols..n`, whose
/// last symbols form the corner of the matrix (`2f × f` symbols, in no
/// sliver). The corner is computed once, column by column (the cheaper code
/// direction), in batches: each batch of columns is extended and committed,
/// and its symbols are fed, row by row, into the running row hashers. The
/// corner is never held in full.
fn commit_through_corner(
    extension_rows: &[u8],
    extension_cols: &[u8],
    rows: usize,
    cols: usize,
    f: usize,
    s: usize,
) -> (Vec<Hash32>, Vec<Hash32>) {
    let (row_bytes, col_bytes, corner_col_bytes) = (cols * s, rows * s, 2 * f * s);
    let mut row_hashers: Vec<blake3::Hasher> = extension_rows
        .par_chunks(row_bytes)
        .map(|row| {
            let mut hasher = crate::commitment::sliver_hasher();
            hasher.update(row);
            hasher
        })
        .collect();
    let batch = (CORNER_BATCH_BYTES / corner_col_bytes).clamp(1, f);
    let mut corner = vec![0u8; batch * corner_col_bytes];
    let mut col_hashes = Vec::with_capacity(f);
    for batch_cols in extension_cols.chunks(batch * col_bytes) {
        let width = batch_cols.len() / col_bytes;
        // Column-major corner block: column c's repair symbols are contiguous.
        col_hashes.par_extend(
            batch_cols
                .par_chunks(col_bytes)
                .zip(corner.par_chunks_mut(corner_col_bytes))
                .map(|(column, out)| {
                    with_coder(|coder| {
                        coder.extend_commit_each(column, rows, 2 * f, s, |t, symbol| {
                            out[t * s..(t + 1) * s].copy_from_slice(symbol);
                        })
                    })
                }),
        );
        // Row t of the block, gathered contiguously so it hashes at SIMD width.
        let corner = &corner;
        row_hashers
            .par_iter_mut()
            .enumerate()
            .for_each_init(Vec::new, |run, (t, hasher)| {
                run.clear();
                for c in 0..width {
                    run.extend_from_slice(&corner[c * corner_col_bytes + t * s..][..s]);
                }
                hasher.update(run);
            });
    }
    let row_hashes = row_hashers
        .par_iter()
        .map(|hasher| hasher.finalize().into())
        .collect();
    (row_hashes, col_hashes)
}

/// Extends every line of `lines` (each `k` symbols of `s` bytes) by `m`
/// symbols, returns each extended line's commitment, and writes repair symbol `t` of line `i` to
/// position `i` of output line `t` of `out` (`m` lines of `count` symbols):
/// the extension, transposed.
fn extend_commit_scatter(
    lines: &[u8],
    k: usize,
    m: usize,
    s: usize,
    out: &mut [u8],
) -> Vec<Hash32> {
    let line_bytes = k * s;
    let count = lines.len() / line_bytes;
    let per_block = lines_per_block(count);
    let blocks = count.div_ceil(per_block);

    // Cut every output line at the block boundaries, so each block of input
    // lines owns the matching piece of every output line.
    let mut pieces: Vec<Vec<&mut [u8]>> = (0..blocks).map(|_| Vec::with_capacity(m)).collect();
    for out_line in out.chunks_exact_mut(count * s) {
        let mut rest = out_line;
        for (b, block_pieces) in pieces.iter_mut().enumerate() {
            let len = per_block.min(count - b * per_block) * s;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            block_pieces.push(head);
            rest = tail;
        }
    }

    lines
        .par_chunks(per_block * line_bytes)
        .zip(pieces.into_par_iter())
        .map(|(block, mut block_out)| {
            with_coder(|coder| {
                block
                    .chunks_exact(line_bytes)
                    .enumerate()
                    .map(|(i, line)| {
                        coder.extend_commit_each(line, k, m, s, |t, symbol| {
                            block_out[t][i * s..(i + 1) * s].copy_from_slice(symbol);
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .concat()
}
