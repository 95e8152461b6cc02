//! Decoding with every sequence length bounded before anything is
//! allocated for it, so a request costs memory in proportion to what an
//! honest peer could send, never many times its size on the wire.
//!
//! serde's own `Vec` decoding reserves up to 1 MiB for whatever length the
//! frame claims and then grows with what follows; a sequence of small
//! values (an empty summaries message is two bytes on the wire and 64 in
//! memory) would grow to many times the frame. Here a length over the
//! limit is refused as soon as it is read, and the elements are decoded
//! one by one up to it.

use std::fmt;
use std::marker::PhantomData;

use floe_codec::{Axis, BlobId, InconsistencyProof, RecoverySymbol, SliverIndex, MAX_N_SHARDS};
use floe_consensus::{Fact, ItemId, Prefix, RangeSummary, ReconcileMessage};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};

/// The most a decoder reserves up front for a sequence, whatever count it
/// announces; the vector grows with the elements that actually arrive.
const PREALLOCATE_BYTES: usize = 64 << 10;
use crate::{RECONCILE_MAX_ITEMS, RECONCILE_MAX_RANGES, RECONCILE_MAX_REPLY_RANGES};

/// A sequence of at most `max` elements, named `what` in errors.
struct Bounded<T> {
    max: usize,
    what: &'static str,
    element: PhantomData<T>,
}

impl<T> Bounded<T> {
    fn new(max: usize, what: &'static str) -> Self {
        Bounded {
            max,
            what,
            element: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > self.max {
            return Err(too_many::<A::Error>(claimed, self.max, self.what));
        }
        // Reserved for what may arrive, not for what is claimed: a count
        // costs nothing until its elements come.
        let mut out =
            Vec::with_capacity(claimed.min(PREALLOCATE_BYTES / std::mem::size_of::<T>().max(1)));
        while let Some(element) = seq.next_element()? {
            if out.len() == self.max {
                return Err(too_many::<A::Error>(self.max + 1, self.max, self.what));
            }
            out.push(element);
        }
        Ok(out)
    }
}

fn too_many<E: serde::de::Error>(count: usize, max: usize, what: &str) -> E {
    E::custom(format!("{count} {what}: one message carries at most {max}"))
}

fn seq_of<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
    max: usize,
    what: &'static str,
) -> Result<Vec<T>, D::Error> {
    deserializer.deserialize_seq(Bounded::new(max, what))
}

/// Facts of one anti-entropy message.
pub(crate) fn facts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Fact>, D::Error> {
    seq_of(deserializer, RECONCILE_MAX_ITEMS, "facts")
}

/// Item IDs of one anti-entropy message (wanted or unsent).
pub(crate) fn items<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ItemId>, D::Error> {
    seq_of(deserializer, RECONCILE_MAX_ITEMS, "item IDs")
}

fn summaries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RangeSummary>, D::Error> {
    seq_of(deserializer, RECONCILE_MAX_REPLY_RANGES, "range summaries")
}

fn listed<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ItemId>, D::Error> {
    seq_of(deserializer, RECONCILE_MAX_ITEMS, "listed item IDs")
}

/// [`ReconcileMessage`] as it is on the wire (same variants, same order),
/// with its sequences bounded.
#[derive(serde::Deserialize)]
#[serde(rename = "ReconcileMessage")]
enum MessageOnWire {
    Summaries(#[serde(deserialize_with = "summaries")] Vec<RangeSummary>),
    Listing {
        prefix: Prefix,
        #[serde(deserialize_with = "listed")]
        items: Vec<ItemId>,
    },
}

impl From<MessageOnWire> for ReconcileMessage {
    fn from(message: MessageOnWire) -> Self {
        match message {
            MessageOnWire::Summaries(summaries) => ReconcileMessage::Summaries(summaries),
            MessageOnWire::Listing { prefix, items } => ReconcileMessage::Listing { prefix, items },
        }
    }
}

/// Digest messages covering at most `max_ranges` ranges in all, each
/// message counting at least one (an empty message is no less work).
struct Messages {
    max_ranges: usize,
}

impl<'de> Visitor<'de> for Messages {
    type Value = Vec<ReconcileMessage>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digest messages of at most {} ranges", self.max_ranges)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > self.max_ranges {
            return Err(too_many::<A::Error>(
                claimed,
                self.max_ranges,
                "digest messages",
            ));
        }
        // Reserved for what may arrive, not for what is claimed.
        let mut out = Vec::with_capacity(
            claimed.min(PREALLOCATE_BYTES / std::mem::size_of::<MessageOnWire>().max(1)),
        );
        let mut ranges = 0usize;
        while let Some(message) = seq.next_element::<MessageOnWire>()? {
            ranges += match &message {
                MessageOnWire::Summaries(summaries) => summaries.len().max(1),
                MessageOnWire::Listing { .. } => 1,
            };
            if ranges > self.max_ranges {
                return Err(A::Error::custom(format!(
                    "digest messages of more than {} ranges: one message carries at most {}",
                    ranges - 1,
                    self.max_ranges
                )));
            }
            out.push(message.into());
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for Messages {
    type Value = Vec<ReconcileMessage>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// The digest messages of a request: a page of [`RECONCILE_MAX_RANGES`].
pub(crate) fn request_messages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ReconcileMessage>, D::Error> {
    Messages {
        max_ranges: RECONCILE_MAX_RANGES,
    }
    .deserialize(deserializer)
}

/// The digest messages of an answer: [`RECONCILE_MAX_REPLY_RANGES`].
pub(crate) fn reply_messages<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ReconcileMessage>, D::Error> {
    Messages {
        max_ranges: RECONCILE_MAX_REPLY_RANGES,
    }
    .deserialize(deserializer)
}

/// [`InconsistencyProof`] as it is on the wire (same fields, same order),
/// with at most [`MAX_N_SHARDS`] symbols: a recovery uses at most one
/// symbol per shard.
#[derive(serde::Deserialize)]
#[serde(rename = "InconsistencyProof")]
struct ProofOnWire {
    blob_id: BlobId,
    target_axis: Axis,
    target: SliverIndex,
    #[serde(deserialize_with = "symbols")]
    symbols: Vec<RecoverySymbol>,
}

fn symbols<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RecoverySymbol>, D::Error> {
    seq_of(deserializer, usize::from(MAX_N_SHARDS), "recovery symbols")
}

/// An inconsistency proof of at most [`MAX_N_SHARDS`] symbols.
pub(crate) fn inconsistency_proof<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<InconsistencyProof, D::Error> {
    let ProofOnWire {
        blob_id,
        target_axis,
        target,
        symbols,
    } = ProofOnWire::deserialize(deserializer)?;
    Ok(InconsistencyProof {
        blob_id,
        target_axis,
        target,
        symbols,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use floe_codec::BlobId;
    use floe_wire::Wire;

    use crate::{ReconcileRequest, ReconcileResponse};

    use super::*;

    fn item(i: u8) -> ItemId {
        ItemId {
            blob_id: BlobId([i; 32]),
            fact: [i; 32],
        }
    }

    fn summary(i: u8) -> RangeSummary {
        RangeSummary {
            prefix: Prefix::of(&BlobId([i; 32]), 2),
            count: u64::from(i),
            digest: [i; 32],
        }
    }

    fn decode_request(request: &ReconcileRequest) -> Result<ReconcileRequest, String> {
        ReconcileRequest::from_frame(request.to_frame().unwrap()).map_err(|e| e.0)
    }

    #[test]
    fn honest_messages_decode_as_they_were() {
        let request = ReconcileRequest {
            messages: vec![
                ReconcileMessage::Summaries((0..20).map(summary).collect()),
                ReconcileMessage::Listing {
                    prefix: Prefix::of(&BlobId([5; 32]), 3),
                    items: (0..7).map(item).collect(),
                },
            ],
            facts: Vec::new(),
            want: (0..9).map(item).collect(),
        };
        assert_eq!(decode_request(&request).unwrap(), request);
        let response = ReconcileResponse {
            messages: vec![ReconcileMessage::Summaries(
                (0..16 * RECONCILE_MAX_RANGES)
                    .map(|i| summary(i as u8))
                    .collect(),
            )],
            facts: Vec::new(),
            want: (0..3).map(item).collect(),
            unsent: vec![item(1); RECONCILE_MAX_ITEMS],
        };
        let frame = response.to_frame().unwrap();
        assert_eq!(ReconcileResponse::from_frame(frame).unwrap(), response);
    }

    #[test]
    fn lengths_beyond_a_page_are_refused() {
        // Empty messages count as one range each.
        let empty = ReconcileRequest {
            messages: vec![ReconcileMessage::Summaries(Vec::new()); RECONCILE_MAX_RANGES + 1],
            facts: Vec::new(),
            want: Vec::new(),
        };
        assert!(decode_request(&empty).unwrap_err().contains("at most 2048"));
        // Ranges over several messages.
        let ranges = ReconcileRequest {
            messages: vec![
                ReconcileMessage::Summaries(vec![summary(1); RECONCILE_MAX_RANGES]),
                ReconcileMessage::Listing {
                    prefix: Prefix::ROOT,
                    items: Vec::new(),
                },
            ],
            ..empty.clone()
        };
        assert!(decode_request(&ranges).unwrap_err().contains("ranges"));
        let mut exactly = ranges.clone();
        exactly.messages.pop();
        assert_eq!(decode_request(&exactly).unwrap(), exactly);
        let listing = ReconcileRequest {
            messages: vec![ReconcileMessage::Listing {
                prefix: Prefix::of(&BlobId([1; 32]), 64),
                items: vec![item(1); RECONCILE_MAX_ITEMS + 1],
            }],
            ..empty.clone()
        };
        assert!(decode_request(&listing)
            .unwrap_err()
            .contains("listed item IDs"));
        let want = ReconcileRequest {
            messages: Vec::new(),
            want: vec![item(1); RECONCILE_MAX_ITEMS + 1],
            facts: Vec::new(),
        };
        assert!(decode_request(&want).unwrap_err().contains("item IDs"));
    }

    #[test]
    fn a_claimed_length_is_refused_before_its_elements_are_read() {
        // A count of 2^31 - 1 messages and nothing after it.
        let frame = bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        let error = ReconcileRequest::from_frame(frame).unwrap_err().0;
        assert!(error.contains("2147483647 digest messages"), "{error}");
        // 20,000 facts claimed, none there.
        let frame = bytes::Bytes::from_static(&[0x00, 0xa0, 0x9c, 0x01]);
        let error = ReconcileRequest::from_frame(frame).unwrap_err().0;
        assert!(error.contains("20000 facts"), "{error}");
    }

    #[test]
    fn an_inconsistency_proof_has_at_most_one_symbol_per_shard() {
        use crate::SubmitInconsistencyRequest;
        let symbol = RecoverySymbol {
            source_axis: Axis::Primary,
            source_index: SliverIndex(1),
            symbol_index: floe_codec::SymbolIndex(2),
            data: bytes::Bytes::from_static(&[1, 2]),
            proof: floe_codec::SymbolProof {
                prefix: vec![3],
                suffix: Vec::new(),
                siblings: vec![[4; 32]],
            },
        };
        let mut request = SubmitInconsistencyRequest {
            proof: InconsistencyProof {
                blob_id: BlobId([5; 32]),
                target_axis: Axis::Secondary,
                target: SliverIndex(3),
                symbols: vec![symbol; usize::from(MAX_N_SHARDS)],
            },
        };
        // The frame is the proof's own BCS.
        let frame = request.to_frame().unwrap();
        assert_eq!(frame.as_ref(), floe_codec::canonical_bytes(&request.proof));
        assert_eq!(
            SubmitInconsistencyRequest::from_frame(frame).unwrap(),
            request
        );
        request.proof.symbols.push(request.proof.symbols[0].clone());
        let error = SubmitInconsistencyRequest::from_frame(request.to_frame().unwrap())
            .unwrap_err()
            .0;
        assert!(error.contains("4097 recovery symbols"), "{error}");
    }
}
