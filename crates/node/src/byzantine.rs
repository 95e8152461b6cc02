//! LAB ONLY: the lies of a hostile member (`[byzantine]` in `node.toml`).
//! The honest handler answers first; these functions bend the answer. A
//! node without the section never reaches them.

use floe_api::{BlobStatusAnswer, ReconcileResponse};
use floe_codec::{BareSymbol, BlobId, Sliver, SliverIndex, Symbol};
use floe_consensus::{BlobStatus, ItemId, Prefix, ReconcileMessage};
use rand::Rng as _;

use crate::state::Inner;

/// A status answer that lies, if this node is told to.
pub(crate) fn status(inner: &Inner, asked: &BlobId) -> Option<BlobStatusAnswer> {
    let lies = inner.byzantine.as_ref()?;
    let epoch = inner.epoch();
    if lies.withhold_facts {
        return Some(BlobStatusAnswer {
            epoch,
            status: BlobStatus::Unknown,
        });
    }
    let invalid_first = lies.foreign_invalid && (!lies.foreign_proofs || rand::random::<bool>());
    if !(lies.foreign_proofs || lies.foreign_invalid) {
        return None;
    }
    // A real proof, about another blob this node knows.
    let states = inner.store.states(None, 4096).ok()?;
    let mut certified = None;
    for (blob_id, state) in states.iter().filter(|(id, _)| id != asked) {
        match state.status(epoch) {
            report @ BlobStatus::Invalid { .. } if lies.foreign_invalid => {
                if invalid_first {
                    return Some(BlobStatusAnswer {
                        epoch,
                        status: report,
                    });
                }
                certified.get_or_insert((*blob_id, report));
            }
            report @ BlobStatus::Certified { .. } if lies.foreign_proofs => {
                if !invalid_first {
                    return Some(BlobStatusAnswer {
                        epoch,
                        status: report,
                    });
                }
                certified.get_or_insert((*blob_id, report));
            }
            _ => {}
        }
    }
    certified.map(|(_, status)| BlobStatusAnswer { epoch, status })
}

/// An owner's registration that lies, if this node is told to: none
/// (withheld), or another blob's certificate.
pub(crate) fn registration(
    inner: &Inner,
    asked: &floe_api::RegistrationRequest,
) -> Option<Option<floe_consensus::BlobCertificate>> {
    let lies = inner.byzantine.as_ref()?;
    if lies.withhold_facts {
        return Some(None);
    }
    if !lies.foreign_registrations {
        return None;
    }
    let epoch = inner.epoch();
    let states = inner.store.states(None, 4096).ok()?;
    states
        .into_iter()
        .filter(|(id, _)| *id != asked.blob_id)
        .find_map(|(_, state)| match state.status(epoch) {
            BlobStatus::Certified { certificate } => Some(Some(certificate)),
            _ => None,
        })
}

/// A sliver with one byte flipped, if this node is told to.
pub(crate) fn sliver(inner: &Inner, mut sliver: Sliver) -> Sliver {
    if inner.byzantine.as_ref().is_some_and(|l| l.flip_slivers) && !sliver.data.is_empty() {
        let mut data = sliver.data.to_vec();
        let at = rand::thread_rng().gen_range(0..data.len());
        data[at] ^= 0x5a;
        sliver.data = data.into();
    }
    sliver
}

/// Recovery symbols with a byte flipped in each, if this node is told to.
pub(crate) fn symbols<S: Symbol>(inner: &Inner, symbols: Vec<S>) -> Vec<S> {
    let flip = inner
        .byzantine
        .as_ref()
        .is_some_and(|l| l.flip_slivers || (l.flip_bare_symbols && !S::PROVEN));
    if !flip {
        return symbols;
    }
    symbols
        .into_iter()
        .map(|mut symbol| {
            if !symbol.data().is_empty() {
                let mut data = symbol.data().to_vec();
                data[0] ^= 0x5a;
                *symbol.data_mut() = data.into();
            }
            symbol
        })
        .collect()
}

/// Bare symbols relabelled as made from slivers of shards this node does
/// not hold, if it is told to (their bytes are its own slivers' symbols).
pub(crate) fn bare_symbols(
    inner: &Inner,
    blob_id: &BlobId,
    symbols: Vec<BareSymbol>,
) -> Vec<BareSymbol> {
    if !inner
        .byzantine
        .as_ref()
        .is_some_and(|l| l.foreign_bare_symbols)
    {
        return symbols;
    }
    let (n, mine) = (inner.n_shards, inner.my_shards());
    symbols
        .into_iter()
        .map(|mut symbol| {
            let axis = symbol.source_axis;
            let others = (1..n)
                .map(|step| SliverIndex((symbol.source_index.0 + step) % n))
                .find(|index| {
                    let shard = index.to_pair_index(axis, n).to_shard_index(n, blob_id);
                    !mine.contains(&shard)
                });
            if let Some(index) = others {
                symbol.source_index = index;
            }
            symbol
        })
        .collect()
}

/// An anti-entropy answer padded with a listing of made-up items, if this
/// node is told to.
pub(crate) fn reconcile(inner: &Inner, mut response: ReconcileResponse) -> ReconcileResponse {
    let count = inner.byzantine.as_ref().map_or(0, |l| l.oversized_listings);
    if count > 0 {
        let mut rng = rand::thread_rng();
        let items = (0..count)
            .map(|_| ItemId {
                blob_id: BlobId(rng.gen()),
                fact: rng.gen(),
            })
            .collect();
        response.messages.push(ReconcileMessage::Listing {
            prefix: Prefix::ROOT,
            items,
        });
    }
    response
}
