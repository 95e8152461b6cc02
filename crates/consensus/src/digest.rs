//! Anti-entropy: finding the facts one node has and another lacks by
//! exchanging `O(differences · log N)` data instead of whole sets.
//!
//! Every fact a node holds is an [`ItemId`]: the blob ID it is about and the
//! fact's digest. Items are arranged in a 16-ary trie over the blob ID's
//! nibbles. Each trie node summarizes its range as `(count, sum of
//! BLAKE3(item) mod 2²⁵⁶)`; the sum makes summaries order-independent and
//! cheap to maintain (an insert touches one entry per indexed level).
//!
//! The exchange ([`DigestIndex::respond`]) is symmetric and stateless:
//! a side that receives summaries compares each with its own; equal ranges
//! end there, small or fully-resolved differing ranges are answered with a
//! listing of its items, larger ones with its 16 child summaries. A side
//! that receives a listing learns exactly which items of that range it lacks
//! and which the peer lacks. A Byzantine peer can waste bandwidth but not
//! make a node accept anything: the facts themselves are verified on receipt.

use std::collections::{BTreeSet, HashMap};

use floe_codec::BlobId;
use serde::{Deserialize, Serialize};

/// One fact a node holds: the blob it is about and the fact's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId {
    /// The blob.
    pub blob_id: BlobId,
    /// The fact's digest ([`crate::Fact::digest`]).
    pub fact: [u8; 32],
}

impl ItemId {
    fn hash(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key("floe 2026-11 anti-entropy item v1");
        hasher.update(&self.blob_id.0);
        hasher.update(&self.fact);
        *hasher.finalize().as_bytes()
    }
}

/// A range of blob IDs: those whose first `depth` nibbles equal `prefix`'s.
/// BCS: `depth u8 ‖ prefix [32]` (nibbles past `depth` are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Prefix {
    /// Nibbles fixed (0 = everything, 64 = one blob ID).
    pub depth: u8,
    /// The fixed nibbles, zero-padded.
    pub prefix: [u8; 32],
}

/// The deepest prefix: one full blob ID.
pub const MAX_DEPTH: u8 = 64;

/// Levels of the trie whose summaries are maintained incrementally; deeper
/// ranges hold few items and are summarized by scanning.
const INDEXED_DEPTH: u8 = 8;

/// A range with at most this many items (on both sides together) is listed
/// rather than split further.
pub const LIST_THRESHOLD: u64 = 32;

/// Items a listing (above the deepest level) may hold, on either side, to be
/// answered: [`LIST_THRESHOLD`] with room for what changes between rounds.
pub const MAX_LISTING: u64 = 4 * LIST_THRESHOLD;

fn nibble(bytes: &[u8; 32], i: u8) -> u8 {
    let byte = bytes[usize::from(i / 2)];
    if i % 2 == 0 {
        byte >> 4
    } else {
        byte & 0x0f
    }
}

impl Prefix {
    /// The whole ID space.
    pub const ROOT: Prefix = Prefix {
        depth: 0,
        prefix: [0; 32],
    };

    /// The prefix of depth `depth` containing `blob_id`.
    pub fn of(blob_id: &BlobId, depth: u8) -> Prefix {
        let depth = depth.min(MAX_DEPTH);
        let mut prefix = [0u8; 32];
        for i in 0..depth {
            let n = nibble(&blob_id.0, i);
            prefix[usize::from(i / 2)] |= if i % 2 == 0 { n << 4 } else { n };
        }
        Prefix { depth, prefix }
    }

    /// The 16 sub-ranges (none at [`MAX_DEPTH`]).
    pub fn children(&self) -> Vec<Prefix> {
        if self.depth >= MAX_DEPTH {
            return Vec::new();
        }
        (0u8..16)
            .map(|n| {
                let mut prefix = self.prefix;
                let i = self.depth;
                prefix[usize::from(i / 2)] |= if i % 2 == 0 { n << 4 } else { n };
                Prefix {
                    depth: i + 1,
                    prefix,
                }
            })
            .collect()
    }

    /// Whether the prefix is one [`Prefix::of`] makes: at most
    /// [`MAX_DEPTH`] nibbles, and no bit set past them.
    pub fn is_canonical(&self) -> bool {
        self.depth <= MAX_DEPTH && Prefix::of(&BlobId(self.prefix), self.depth) == *self
    }

    /// Whether `blob_id` is in this range.
    pub fn contains(&self, blob_id: &BlobId) -> bool {
        Prefix::of(blob_id, self.depth) == *self
    }

    /// The smallest and largest item of the range, for ordered scans.
    fn bounds(&self) -> (ItemId, ItemId) {
        let mut hi = self.prefix;
        for i in self.depth..MAX_DEPTH {
            hi[usize::from(i / 2)] |= if i % 2 == 0 { 0xf0 } else { 0x0f };
        }
        (
            ItemId {
                blob_id: BlobId(self.prefix),
                fact: [0; 32],
            },
            ItemId {
                blob_id: BlobId(hi),
                fact: [0xff; 32],
            },
        )
    }
}

/// A range's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSummary {
    /// The range.
    pub prefix: Prefix,
    /// How many items it holds.
    pub count: u64,
    /// Sum of the items' hashes modulo 2²⁵⁶.
    pub digest: [u8; 32],
}

/// One message of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconcileMessage {
    /// "These are my summaries of these ranges."
    Summaries(Vec<RangeSummary>),
    /// "These are all my items in this range."
    Listing {
        /// The range.
        prefix: Prefix,
        /// Every item the sender holds in it.
        items: Vec<ItemId>,
    },
}

impl ReconcileMessage {
    /// The message's size in canonical bytes (for accounting).
    pub fn encoded_len(&self) -> usize {
        crate::canonical_bytes(self).len()
    }
}

/// What one step of the exchange produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Messages to send back (empty when this side is done).
    pub messages: Vec<ReconcileMessage>,
    /// Items the peer holds that this side lacks (fetch these facts).
    pub missing_here: Vec<ItemId>,
    /// Items this side holds that the peer lacks (push these facts).
    pub missing_there: Vec<ItemId>,
}

/// A node's set of items with maintained range summaries.
#[derive(Debug, Clone, Default)]
pub struct DigestIndex {
    items: BTreeSet<ItemId>,
    nodes: HashMap<Prefix, (u64, [u8; 32])>,
}

/// `acc ± hash` modulo 2²⁵⁶ (little-endian). A sum rather than XOR: XOR
/// summaries can be made to collide by linear algebra over chosen items.
fn add_into(acc: &mut [u8; 32], hash: &[u8; 32], subtract: bool) {
    let mut carry = 0i16;
    for (a, h) in acc.iter_mut().zip(hash) {
        let value = i16::from(*a)
            + if subtract {
                -i16::from(*h)
            } else {
                i16::from(*h)
            }
            + carry;
        *a = value.rem_euclid(256) as u8;
        carry = value.div_euclid(256);
    }
}

impl DigestIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An index of `items`.
    pub fn from_items(items: impl IntoIterator<Item = ItemId>) -> Self {
        let mut index = Self::new();
        for item in items {
            index.insert(item);
        }
        index
    }

    /// Adds an item; returns whether it was new.
    pub fn insert(&mut self, item: ItemId) -> bool {
        if !self.items.insert(item) {
            return false;
        }
        self.update_nodes(&item, true);
        true
    }

    /// Removes an item; returns whether it was present.
    pub fn remove(&mut self, item: &ItemId) -> bool {
        if !self.items.remove(item) {
            return false;
        }
        self.update_nodes(item, false);
        true
    }

    fn update_nodes(&mut self, item: &ItemId, added: bool) {
        let hash = item.hash();
        for depth in 0..=INDEXED_DEPTH {
            let entry = self
                .nodes
                .entry(Prefix::of(&item.blob_id, depth))
                .or_insert((0, [0; 32]));
            entry.0 = if added {
                entry.0 + 1
            } else {
                entry.0.saturating_sub(1)
            };
            add_into(&mut entry.1, &hash, !added);
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether `item` is held.
    pub fn contains(&self, item: &ItemId) -> bool {
        self.items.contains(item)
    }

    /// The items in a range, in order.
    pub fn items_in(&self, prefix: &Prefix) -> Vec<ItemId> {
        let (lo, hi) = prefix.bounds();
        self.items.range(lo..=hi).copied().collect()
    }

    /// The summary of a range.
    pub fn summary(&self, prefix: &Prefix) -> RangeSummary {
        let (count, digest) = if prefix.depth <= INDEXED_DEPTH {
            self.nodes.get(prefix).copied().unwrap_or((0, [0; 32]))
        } else {
            let (lo, hi) = prefix.bounds();
            let mut digest = [0u8; 32];
            let mut count = 0u64;
            for item in self.items.range(lo..=hi) {
                add_into(&mut digest, &item.hash(), false);
                count += 1;
            }
            (count, digest)
        };
        RangeSummary {
            prefix: *prefix,
            count,
            digest,
        }
    }

    /// The message that opens an exchange.
    pub fn open(&self) -> ReconcileMessage {
        ReconcileMessage::Summaries(vec![self.summary(&Prefix::ROOT)])
    }

    /// Answers the peer's messages.
    pub fn respond(&self, incoming: &[ReconcileMessage]) -> Reply {
        let mut reply = Reply::default();
        let mut summaries = Vec::new();
        for message in incoming {
            match message {
                ReconcileMessage::Summaries(theirs) => {
                    for their in theirs.iter().filter(|s| s.prefix.is_canonical()) {
                        let mine = self.summary(&their.prefix);
                        if (mine.count, mine.digest) == (their.count, their.digest) {
                            continue;
                        }
                        // Large differing ranges are split, even when one side
                        // is empty, so no listing exceeds the threshold (by much).
                        if mine.count.saturating_add(their.count) <= LIST_THRESHOLD
                            || their.prefix.depth >= MAX_DEPTH
                        {
                            reply.messages.push(ReconcileMessage::Listing {
                                prefix: their.prefix,
                                items: self.items_in(&their.prefix),
                            });
                        } else {
                            summaries
                                .extend(their.prefix.children().iter().map(|c| self.summary(c)));
                        }
                    }
                }
                ReconcileMessage::Listing { prefix, items } if prefix.is_canonical() => {
                    // An honest side lists a range only when both sides
                    // hold a few items in it (or at the deepest level);
                    // a larger listing would make this side diff, and
                    // send, a large part of what it holds: it is dropped.
                    if prefix.depth < MAX_DEPTH
                        && (items.len() as u64 > MAX_LISTING
                            || self.summary(prefix).count > MAX_LISTING)
                    {
                        continue;
                    }
                    let theirs: BTreeSet<ItemId> = items
                        .iter()
                        .filter(|i| prefix.contains(&i.blob_id))
                        .copied()
                        .collect();
                    let mine = self.items_in(prefix);
                    reply
                        .missing_here
                        .extend(theirs.iter().filter(|i| !self.items.contains(i)));
                    reply
                        .missing_there
                        .extend(mine.iter().filter(|i| !theirs.contains(i)));
                }
                // A prefix with bits set past its depth names no range an
                // honest side would: it is dropped (it would otherwise
                // look empty here yet list everything below its bits).
                ReconcileMessage::Listing { .. } => {}
            }
        }
        if !summaries.is_empty() {
            reply.messages.push(ReconcileMessage::Summaries(summaries));
        }
        reply
    }
}

/// The outcome of a complete exchange between two indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Items `b` holds that `a` lacks.
    pub missing_in_a: BTreeSet<ItemId>,
    /// Items `a` holds that `b` lacks.
    pub missing_in_b: BTreeSet<ItemId>,
    /// Messages exchanged.
    pub messages: usize,
    /// Canonical bytes exchanged.
    pub bytes: usize,
    /// Round trips.
    pub rounds: usize,
}

/// Runs the whole exchange between two in-memory indexes (what two nodes do
/// over the network, one [`DigestIndex::respond`] per message batch).
pub fn reconcile(a: &DigestIndex, b: &DigestIndex) -> Reconciliation {
    let mut outcome = Reconciliation::default();
    let mut in_flight = vec![a.open()];
    let mut to_b = true;
    while !in_flight.is_empty() {
        outcome.messages += in_flight.len();
        outcome.bytes += in_flight
            .iter()
            .map(ReconcileMessage::encoded_len)
            .sum::<usize>();
        outcome.rounds += 1;
        let (receiver, here, there) = if to_b {
            (b, &mut outcome.missing_in_b, &mut outcome.missing_in_a)
        } else {
            (a, &mut outcome.missing_in_a, &mut outcome.missing_in_b)
        };
        let reply = receiver.respond(&in_flight);
        here.extend(reply.missing_here);
        there.extend(reply.missing_there);
        in_flight = reply.messages;
        to_b = !to_b;
    }
    outcome
}
