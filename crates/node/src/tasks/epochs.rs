//! The epoch clock: the store learns each new epoch as it begins, and the
//! log says which committee serves it.

use super::*;

/// Records the current epoch in the store when it changed, and makes the
/// store hold this node's shards of the epoch's committee.
pub(super) async fn advance_epoch(inner: Arc<Inner>) {
    let epoch = inner.epoch();
    on_blocking(&inner, move |inner| {
        if let Err(e) = crate::migration::refresh_shards(inner) {
            warn!(error = %e, "taking up this node's shards of the epoch");
        }
        if inner
            .store
            .current_epoch()
            .map(|current| current != epoch)
            .unwrap_or(true)
        {
            if let Err(e) = inner.store.set_current_epoch(epoch) {
                warn!(error = %e, "recording the epoch");
            } else {
                // Which committee serves it: a certified change, or the
                // one before, unchanged.
                let changed = inner
                    .chain
                    .lock()
                    .map(|c| c.links().any(|l| l.message.body.epoch == epoch))
                    .unwrap_or(false);
                let members = inner.committee(epoch).members().len();
                if changed {
                    info!(%epoch, members, "epoch advanced; a newly certified committee serves it");
                } else {
                    info!(%epoch, members, "epoch advanced; the committee is unchanged (no certified proposal)");
                }
            }
        }
    })
    .await;
}
