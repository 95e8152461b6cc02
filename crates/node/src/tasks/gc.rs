//! Garbage collection: expired, deleted and invalid blobs' data, and
//! uploads never certified, leave the disk.

use super::*;

/// Collects garbage in batches until none is left.
pub(super) async fn gc_pass(inner: Arc<Inner>) {
    let epoch = inner.epoch();
    let deadline = now_ms().saturating_sub(inner.limits.pending_upload_secs.saturating_mul(1000));
    on_blocking(&inner, move |inner| loop {
        match inner.store.collect_garbage(epoch, deadline, 256) {
            Ok(report) => {
                if report.blobs > 0 {
                    info!(
                        blobs = report.blobs,
                        slivers = report.slivers,
                        "garbage collected"
                    );
                }
                if !report.more {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "garbage collection");
                return;
            }
        }
    })
    .await;
    // Pairs of shards given up, once their new holder synced; a bounded
    // number a pass.
    if let Some(Err(e)) =
        on_blocking(&inner, |inner| crate::migration::drop_released(inner, 1024)).await
    {
        warn!(error = %e, "collecting the pairs of shards given up");
    }
    // Storage charged to client keys (grants mode) whose registration
    // ended: expired, deleted or proven invalid.
    match on_blocking(&inner, move |inner| {
        inner.admission.release_ended(&inner.store, epoch)
    })
    .await
    {
        Some(Ok(released)) if released > 0 => {
            info!(released, "storage charges of ended registrations freed")
        }
        Some(Err(e)) => warn!(error = %e, "freeing the storage charges of ended registrations"),
        _ => {}
    }
}
