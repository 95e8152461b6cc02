//! The epoch clock: the store learns each new epoch as it begins.

use super::*;

/// Records the current epoch in the store when it changed.
pub(super) async fn advance_epoch(inner: Arc<Inner>) {
    let epoch = inner.epoch();
    on_blocking(&inner, move |inner| {
        if inner
            .store
            .current_epoch()
            .map(|current| current != epoch)
            .unwrap_or(true)
        {
            if let Err(e) = inner.store.set_current_epoch(epoch) {
                warn!(error = %e, "recording the epoch");
            } else {
                info!(%epoch, "epoch advanced");
            }
        }
    })
    .await;
}
