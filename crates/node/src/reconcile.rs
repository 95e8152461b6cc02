//! Bounds on anti-entropy messages: what one reconcile request or answer
//! may carry, shared by the handler that answers and the task that asks.

use floe_api::*;

/// The ranges a message covers.
pub(crate) fn ranges_in(message: &floe_consensus::ReconcileMessage) -> usize {
    match message {
        floe_consensus::ReconcileMessage::Summaries(summaries) => summaries.len(),
        floe_consensus::ReconcileMessage::Listing { .. } => 1,
    }
}

/// The first messages of `messages` holding at most `max` ranges
/// (summaries and listings), a summaries message cut short if need be.
pub(crate) fn cap_ranges(
    messages: Vec<floe_consensus::ReconcileMessage>,
    max: usize,
) -> Vec<floe_consensus::ReconcileMessage> {
    take_ranges(&mut messages.into(), max)
}

/// `messages` with each range summarized, and each range listed, once: the
/// first of each is kept (an honest side never repeats one; a hostile one
/// would make this side answer it again and again).
pub(crate) fn distinct_ranges(
    messages: Vec<floe_consensus::ReconcileMessage>,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let (mut summarized, mut listed) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    messages
        .into_iter()
        .filter_map(|message| match message {
            ReconcileMessage::Summaries(summaries) => {
                let summaries: Vec<_> = summaries
                    .into_iter()
                    .filter(|s| summarized.insert(s.prefix))
                    .collect();
                (!summaries.is_empty()).then_some(ReconcileMessage::Summaries(summaries))
            }
            ReconcileMessage::Listing { prefix, items } => listed
                .insert(prefix)
                .then_some(ReconcileMessage::Listing { prefix, items }),
        })
        .collect()
}

/// Whether a peer's decoder takes `message`: a listing of more than
/// [`RECONCILE_MAX_ITEMS`] items (a blob with thousands of facts) is not
/// sent; that range is not reconciled by listing.
pub(crate) fn is_sendable(message: &floe_consensus::ReconcileMessage) -> bool {
    match message {
        floe_consensus::ReconcileMessage::Summaries(_) => true,
        floe_consensus::ReconcileMessage::Listing { items, .. } => {
            items.len() <= RECONCILE_MAX_ITEMS
        }
    }
}

/// Bytes of a summary on the wire: prefix (33), count (8), digest (32).
pub(crate) const SUMMARY_BYTES: usize = 33 + 8 + 32;
/// Bytes of an item ID on the wire.
pub(crate) const ITEM_BYTES: usize = 64;

/// Bytes of `message` on the wire, at most (lengths counted as 5 bytes).
pub(crate) fn wire_bytes(message: &floe_consensus::ReconcileMessage) -> usize {
    match message {
        floe_consensus::ReconcileMessage::Summaries(summaries) => {
            1 + 5 + SUMMARY_BYTES * summaries.len()
        }
        floe_consensus::ReconcileMessage::Listing { items, .. } => {
            1 + 33 + 5 + ITEM_BYTES * items.len()
        }
    }
}

/// The digest messages of an answer, capped as a caller's decoder takes
/// them: at most [`RECONCILE_MAX_REPLY_RANGES`] ranges and
/// [`RECONCILE_MESSAGE_BYTES`] bytes (summaries cut short, listings left
/// out past it), no listing of more than [`RECONCILE_MAX_ITEMS`] items.
/// What is left out is found again by a later exchange.
pub(crate) fn cap_reply(
    messages: Vec<floe_consensus::ReconcileMessage>,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    for message in cap_ranges(messages, RECONCILE_MAX_REPLY_RANGES) {
        if !is_sendable(&message) {
            continue;
        }
        let room = RECONCILE_MESSAGE_BYTES.saturating_sub(bytes);
        let message = match message {
            message if wire_bytes(&message) <= room => message,
            ReconcileMessage::Summaries(mut summaries) => {
                summaries.truncate(
                    room.saturating_sub(wire_bytes(&ReconcileMessage::Summaries(Vec::new())))
                        / SUMMARY_BYTES,
                );
                if summaries.is_empty() {
                    continue;
                }
                ReconcileMessage::Summaries(summaries)
            }
            ReconcileMessage::Listing { .. } => continue,
        };
        bytes += wire_bytes(&message);
        kept.push(message);
    }
    kept
}

/// Takes from the front of `queue` messages holding at most `max` ranges,
/// splitting a summaries message if need be (its rest stays in front).
pub(crate) fn take_ranges(
    queue: &mut std::collections::VecDeque<floe_consensus::ReconcileMessage>,
    max: usize,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let mut taken = Vec::new();
    let mut ranges = 0;
    while ranges < max {
        let Some(message) = queue.pop_front() else {
            break;
        };
        let message = match message {
            ReconcileMessage::Summaries(mut summaries) if summaries.len() > max - ranges => {
                let rest = summaries.split_off(max - ranges);
                queue.push_front(ReconcileMessage::Summaries(rest));
                ReconcileMessage::Summaries(summaries)
            }
            message => message,
        };
        ranges += ranges_in(&message);
        taken.push(message);
    }
    taken
}
