//! `PutPairs`: a blob's sliver pairs, every one checked against the blob's
//! metadata before any is stored.
//!
//! Where a request is checked matters for speed. Checked on the runtime
//! thread that received it, its slivers are still in that core's cache and
//! no thread is woken to take it over: a 16 MiB store's p50 went from 109.1
//! to 100.8 ms (11 interleaved runs each of `cargo xtask bench e2e --only
//! 16MiBx1`). But a runtime thread held by a check holds up the tasks
//! queued on it (connections' I/O, timers, other requests), so a check runs
//! in place only when it is known to be short:
//! * the blob's metadata is already decoded in memory (no database read,
//!   which could wait on the disk, and no decode of up to 256 KiB);
//! * its work is small: [`CHECK_IN_PLACE_WORK`] bytes of slivers
//!   re-extended at most, about a millisecond, counted from the metadata,
//!   not from the frame's length (a blob of tiny symbols costs more per
//!   byte sent).
//!
//! Every other request is checked on the blocking pool, as all were before.
//! The write always is. A hostile client sending many short checks holds
//! each runtime thread a millisecond at a time, between which the queued
//! tasks run; on the blocking pool the same checks would take as many
//! threads, each as entitled to a core as a runtime thread is. Keeping one
//! of two runtime threads free of checks gave most of the gain back (p50
//! 106.5 against 100.9 ms over 6 interleaved runs each).

use floe_api::{ApiError, PutPairs, PutPairsFrame, PutPairsRequest};
use floe_codec::{BlobId, BlobMetadata, ShardIndex, SliverPair};
use floe_net::Caller;

use super::{blocking, node, Slot};
use crate::state::{check_pair, store_error, Inner};

/// [`PutPairs`] as this node serves it: the same request on the wire, its
/// frame's pairs decoded by the handler, which knows how many shards the
/// committee has, so a pair count beyond them is refused before anything
/// is reserved for the pairs.
#[derive(Debug)]
pub(super) struct PutPairsByFrame;

impl floe_net::Method for PutPairsByFrame {
    const KIND: u16 = <PutPairs as floe_net::Method>::KIND;
    const NAME: &'static str = <PutPairs as floe_net::Method>::NAME;
    const ACCESS: floe_net::Access = <PutPairs as floe_net::Method>::ACCESS;
    const MAX_REQUEST_BYTES: u32 = <PutPairs as floe_net::Method>::MAX_REQUEST_BYTES;
    const MAX_RESPONSE_BYTES: u32 = <PutPairs as floe_net::Method>::MAX_RESPONSE_BYTES;
    const TIMEOUT: std::time::Duration = <PutPairs as floe_net::Method>::TIMEOUT;
    type Request = PutPairsFrame;
    type Response = <PutPairs as floe_net::Method>::Response;
    type Error = <PutPairs as floe_net::Method>::Error;
}

/// The most work a check in place may take: bytes of slivers re-extended,
/// each sliver to all `n` symbols of its line, a symbol counted as at
/// least [`MIN_SYMBOL_WORK`] bytes. About a millisecond on one core: a
/// 16 MiB blob's pair in a committee of 100 shards is 1.5 MiB of it.
const CHECK_IN_PLACE_WORK: usize = 4 << 20;

/// The Reed–Solomon engine works on 64-byte units: a smaller symbol costs
/// as much as one of 64 bytes.
const MIN_SYMBOL_WORK: usize = 64;

/// The work of checking `pairs` pairs of a blob with `metadata`: see
/// [`CHECK_IN_PLACE_WORK`].
fn check_work(metadata: &BlobMetadata, pairs: usize) -> usize {
    let line = usize::from(metadata.config().n_shards())
        .saturating_mul(metadata.symbol_size().max(MIN_SYMBOL_WORK));
    pairs.saturating_mul(2).saturating_mul(line)
}

/// [`PutPairs`]: checks every pair, in place when that is known to be
/// short (see the module's doc) and on the blocking pool otherwise, then
/// stores them on the blocking pool.
pub(super) async fn put_pairs(
    slot: Slot,
    caller: Caller,
    frame: PutPairsFrame,
) -> Result<(), ApiError> {
    let inner = node(&slot)?;
    let in_place = inner
        .store
        .decoded_metadata(&frame.blob_id())
        .filter(|metadata| check_work(metadata, frame.count()) <= CHECK_IN_PLACE_WORK);
    let Some(metadata) = in_place else {
        return blocking(&slot, move |inner| {
            let (blob_id, pairs) = check_pairs(inner, caller, frame, None)?;
            store_pairs(inner, blob_id, &pairs)
        })
        .await;
    };
    // A panic in a check answers as one on the blocking pool does, rather
    // than ending the request's task with no answer.
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_pairs(&inner, caller, frame, Some(metadata))
    }))
    .map_err(|_| ApiError::Internal("handler failed: the check of the pairs panicked".into()))?;
    let (blob_id, pairs) = checked?;
    blocking(&slot, move |inner| store_pairs(inner, blob_id, &pairs)).await
}

/// Checks every pair (at most one per shard of the committee, a shard of
/// this node, the pair that shard holds, slivers matching the metadata,
/// `known` or read from the store): the pairs to store, all or none.
fn check_pairs(
    inner: &Inner,
    caller: Caller,
    frame: PutPairsFrame,
    known: Option<BlobMetadata>,
) -> Result<(BlobId, Vec<(ShardIndex, SliverPair)>), ApiError> {
    inner.admission.check_pairs(&caller)?;
    let PutPairsRequest { blob_id, pairs } = frame.decode(usize::from(inner.n_shards))?;
    if pairs.is_empty() {
        return Err(ApiError::Rejected {
            blob_id,
            reason: "the request carries no sliver pairs".into(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for &(shard, _) in &pairs {
        if !inner.store.holds_shard(shard) {
            return Err(ApiError::NotMyShard { blob_id, shard });
        }
        if !seen.insert(shard) {
            return Err(ApiError::Rejected {
                blob_id,
                reason: format!("the request carries shard {shard}'s pair twice"),
            });
        }
    }
    let metadata = match known {
        Some(metadata) => metadata,
        None => inner
            .store
            .metadata(&blob_id)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::NotFound {
                blob_id,
                what: "metadata (send it before the slivers)".into(),
            })?,
    };
    for (shard, pair) in &pairs {
        check_pair(inner.n_shards, blob_id, *shard, pair, &metadata)?;
    }
    Ok((blob_id, pairs))
}

/// Stores checked pairs. The metadata kept in memory may be of a blob
/// since removed: the store refuses pairs of a blob whose metadata it no
/// longer holds.
fn store_pairs(
    inner: &Inner,
    blob_id: BlobId,
    pairs: &[(ShardIndex, SliverPair)],
) -> Result<(), ApiError> {
    for (shard, pair) in pairs {
        inner
            .store
            .put_sliver_pair(*shard, &blob_id, pair)
            .map_err(store_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_of(n_shards: u16, blob_bytes: usize) -> BlobMetadata {
        let encoding = floe_codec::EncodingConfig::new(n_shards).expect("an encoding");
        let blob = bytes::Bytes::from(vec![5u8; blob_bytes]);
        floe_codec::encode(&encoding, &blob).expect("an encode").0
    }

    #[test]
    fn a_check_is_counted_by_the_lines_it_extends_not_by_the_bytes_sent() {
        // A 16 MiB blob over 100 shards: one pair is in place, three are not.
        let big = metadata_of(100, 16 << 20);
        let one = check_work(&big, 1);
        assert_eq!(one, 2 * 100 * big.symbol_size());
        assert!(
            one <= CHECK_IN_PLACE_WORK,
            "one pair is {one} bytes of work"
        );
        assert!(check_work(&big, 3) > CHECK_IN_PLACE_WORK);
        // Tiny symbols count as 64 bytes: a thousand pairs of a small blob
        // over 1000 shards are far more work than their bytes on the wire.
        let small = metadata_of(1000, 1000);
        assert!(small.symbol_size() < MIN_SYMBOL_WORK);
        assert_eq!(check_work(&small, 1), 2 * 1000 * MIN_SYMBOL_WORK);
        assert!(check_work(&small, 1000) > CHECK_IN_PLACE_WORK);
        assert_eq!(check_work(&big, usize::MAX), usize::MAX);
    }
}
