//! Admission (`[admission]`): in `grants` mode a client writes only under
//! a storage grant from a trusted issuer, for the key it proved in the QUIC
//! handshake, within the grant's limits. Every refusal comes before
//! anything is stored and names the key, the limit and the usage.
//!
//! Usage is the sum of the charges in the store's `usage` table (one per
//! client and blob, written with the promise it pays for), rebuilt at start
//! and freed when the registration ends (expiry, deletion, proven invalid).
//! Confirmations in flight reserve their bytes first, so concurrent ones
//! cannot overshoot a budget together; so do uploads not yet confirmed
//! (their metadata), until they are confirmed or the node drops them as
//! abandoned: a key cannot hold more than its grant in pending uploads
//! either. The end epoch is named only when a confirmation is asked for,
//! so a write past the grant's last epoch is refused there, before any
//! promise: its slivers stay pending, counted, until collected.

use std::collections::HashMap;
use std::sync::Mutex;

use floe_api::{Admission as Refusal, ApiError, GrantUsage};
use floe_codec::BlobId;
use floe_consensus::grant::StorageGrant;
use floe_consensus::{Epoch, ProtocolMessage, PublicKey, Signed, StorageConfirmation};
use floe_net::Caller;
use floe_store::{DurableBlob, Store, StoreError};

use crate::config::{self, AdmissionMode};
use crate::state::{now_ms, store_error};

/// The `node` table's value holding the grants presented (BCS list).
const GRANTS: &str = "grants";

/// Grants kept at most: a new one beyond this evicts an expired one, or
/// is refused.
const MAX_GRANTS: usize = 100_000;

/// Uploads one key may have pending (metadata accepted, not confirmed).
const MAX_PENDING_UPLOADS: usize = 4096;

/// The least a blob counts against a grant, whatever its size: a blob
/// costs a node its metadata and records even when it is empty.
pub(crate) const MIN_CHARGE: u64 = 4096;

/// What a blob of `unencoded` bytes counts against a grant on a committee
/// of `n_shards`: its size, but at least [`MIN_CHARGE`] and at least its
/// metadata (64 bytes per shard).
pub(crate) fn charge_of(unencoded: u64, n_shards: u16) -> u64 {
    unencoded.max(MIN_CHARGE).max(64 * u64::from(n_shards))
}

/// Charges scanned per page when rebuilding or releasing.
const PAGE: usize = 1024;

pub(crate) struct Admission {
    config: config::Admission,
    /// The latest grant presented per client key.
    grants: Mutex<HashMap<PublicKey, Signed<StorageGrant>>>,
    /// Bytes charged per client key, plus reservations in flight.
    usage: Mutex<HashMap<PublicKey, u64>>,
    /// Uploads accepted and not yet charged, per client: each blob's bytes
    /// and when its metadata came.
    pending: Mutex<HashMap<PublicKey, HashMap<BlobId, (u64, std::time::Instant)>>>,
    /// How long an upload stays pending (`[limits] pending_upload_secs`).
    pending_for: std::time::Duration,
}

impl Admission {
    /// Loads the grants kept and rebuilds the usage from the charges.
    pub(crate) fn open(
        config: config::Admission,
        pending_for: std::time::Duration,
        store: &Store,
    ) -> Result<Self, StoreError> {
        let mut grants = HashMap::new();
        if let Some(bytes) = store.node_value(GRANTS)? {
            let kept: Vec<Signed<StorageGrant>> = floe_codec::from_canonical_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt {
                    table: "node",
                    key: GRANTS.into(),
                    reason: e.to_string(),
                })?;
            for grant in kept {
                grants.insert(grant.message.body.client, grant);
            }
        }
        let mut usage: HashMap<PublicKey, u64> = HashMap::new();
        let mut after: Option<(PublicKey, BlobId)> = None;
        loop {
            let page = store.charges(after.as_ref().map(|(c, b)| (c, b)), PAGE)?;
            for (client, _, charge) in &page {
                *usage.entry(*client).or_default() += charge.bytes;
            }
            match page.last() {
                Some((client, blob, _)) if page.len() == PAGE => after = Some((*client, *blob)),
                _ => break,
            }
        }
        Ok(Self {
            config,
            grants: Mutex::new(grants),
            usage: Mutex::new(usage),
            pending: Mutex::new(HashMap::new()),
            pending_for,
        })
    }

    fn grants_mode(&self) -> bool {
        self.config.mode == AdmissionMode::Grants
    }

    /// The key the caller proved in the handshake, if any (a member is
    /// judged by its key like anyone else).
    fn client(caller: &Caller) -> Option<PublicKey> {
        match caller {
            Caller::Client { key, .. } => *key,
            Caller::Member { key, .. } => Some(*key),
        }
    }

    /// Keeps a grant presented by `caller`, once it admits the caller.
    pub(crate) fn present(
        &self,
        store: &Store,
        caller: &Caller,
        grant: Signed<StorageGrant>,
    ) -> Result<GrantUsage, ApiError> {
        let client = Self::client(caller);
        if !self.grants_mode() {
            // Open mode: nothing to keep; say what the key holds (nothing
            // is charged in open mode).
            return Ok(GrantUsage {
                usage: 0,
                limit: grant.message.body.bytes,
            });
        }
        grant
            .admits(&self.config.issuers, client.as_ref(), now_ms())
            .map_err(|e| {
                ApiError::NotAdmitted(Refusal::BadGrant {
                    client,
                    reason: e.to_string(),
                })
            })?;
        let key = grant.message.body.client;
        let limit = grant.message.body.bytes;
        // Kept (and written) under the lock, so concurrent presents cannot
        // land out of order. A grant replaces the kept one only if it
        // expires later: an older, looser grant cannot be brought back.
        let mut grants = self.grants.lock().map_err(|_| poisoned())?;
        match grants.get(&key) {
            Some(kept) if *kept == grant => {}
            // The kept grant wins only while it still admits the key (its
            // issuer may have been removed since).
            Some(kept)
                if kept.message.body.expires_ms >= grant.message.body.expires_ms
                    && kept
                        .admits(&self.config.issuers, Some(&key), now_ms())
                        .is_ok() =>
            {
                return Err(ApiError::NotAdmitted(Refusal::BadGrant {
                    client,
                    reason: format!(
                        "this node holds a grant for {key} that expires later ({} ms); present that one, or a newer grant",
                        kept.message.body.expires_ms
                    ),
                }));
            }
            _ => {
                let now = now_ms();
                if grants.len() >= MAX_GRANTS && !grants.contains_key(&key) {
                    grants.retain(|_, g| g.message.body.expires_ms > now);
                    if grants.len() >= MAX_GRANTS {
                        return Err(ApiError::Busy(format!(
                            "this node keeps {MAX_GRANTS} live grants already; ask again later"
                        )));
                    }
                }
                let previous = grants.insert(key, grant);
                let all: Vec<_> = grants.values().cloned().collect();
                if let Err(e) = store.put_node_value(GRANTS, &floe_codec::canonical_bytes(&all)) {
                    // Not kept after all: the map stays what the disk says.
                    match previous {
                        Some(previous) => grants.insert(key, previous),
                        None => grants.remove(&key),
                    };
                    return Err(store_error(e));
                }
            }
        }
        drop(grants);
        Ok(GrantUsage {
            usage: self.usage_of(&key),
            limit,
        })
    }

    /// The live grant of the caller, in `grants` mode.
    fn live_grant(&self, caller: &Caller) -> Result<Option<(PublicKey, StorageGrant)>, ApiError> {
        if !self.grants_mode() {
            return Ok(None);
        }
        let client = Self::client(caller);
        let Some(key) = client else {
            return Err(ApiError::NotAdmitted(Refusal::NoGrant { client }));
        };
        let grant = self
            .grants
            .lock()
            .map_err(|_| poisoned())?
            .get(&key)
            .cloned()
            .ok_or(ApiError::NotAdmitted(Refusal::NoGrant { client }))?;
        // Checked again: it may have expired since it was presented (or a
        // node's trusted issuers may have changed across a restart).
        grant
            .admits(&self.config.issuers, Some(&key), now_ms())
            .map_err(|e| {
                ApiError::NotAdmitted(Refusal::BadGrant {
                    client,
                    reason: e.to_string(),
                })
            })?;
        Ok(Some((key, grant.message.body)))
    }

    /// A read of blob data by `caller`: refused without a live grant only
    /// when reads are closed.
    pub(crate) fn check_read(&self, caller: &Caller) -> Result<(), ApiError> {
        if self.config.closed_reads && caller.member().is_none() {
            self.live_grant(caller)?;
        }
        Ok(())
    }

    /// A blob's metadata from `caller`: refused unless a blob of `size`
    /// bytes, counting `charge` against the grant, fits the caller's grant
    /// now (with its other uploads not yet confirmed).
    pub(crate) fn check_metadata(
        &self,
        store: &Store,
        caller: &Caller,
        blob_id: BlobId,
        size: u64,
        blob_bytes: u64,
    ) -> Result<(), ApiError> {
        let Some((client, grant)) = self.live_grant(caller)? else {
            return Ok(());
        };
        check_size(client, &grant, blob_id, size)?;
        if store
            .charge(&client, &blob_id)
            .map_err(store_error)?
            .is_some()
        {
            // Paid for already (storing it again, for longer).
            return Ok(());
        }
        let charged = self.usage_of(&client);
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        let mine = pending.entry(client).or_default();
        let now = std::time::Instant::now();
        mine.retain(|_, (_, since)| now.duration_since(*since) < self.pending_for);
        let others = pending_bytes(mine, &blob_id, now, self.pending_for);
        let usage = charged.saturating_add(others);
        if usage.saturating_add(blob_bytes) > grant.bytes {
            return Err(over_budget(client, &grant, blob_id, blob_bytes, usage));
        }
        if mine.len() >= MAX_PENDING_UPLOADS && !mine.contains_key(&blob_id) {
            return Err(ApiError::Busy(format!(
                "client {client} has {MAX_PENDING_UPLOADS} uploads here not yet confirmed; confirm them or let them lapse"
            )));
        }
        mine.insert(blob_id, (blob_bytes, now));
        Ok(())
    }

    /// Bytes of `client`'s pending uploads other than `blob_id`.
    fn pending_except(&self, client: &PublicKey, blob_id: &BlobId) -> u64 {
        let now = std::time::Instant::now();
        self.pending
            .lock()
            .ok()
            .and_then(|pending| {
                pending
                    .get(client)
                    .map(|mine| pending_bytes(mine, blob_id, now, self.pending_for))
            })
            .unwrap_or(0)
    }

    /// Slivers from `caller`: refused without a live grant.
    pub(crate) fn check_pairs(&self, caller: &Caller) -> Result<(), ApiError> {
        self.live_grant(caller).map(|_| ())
    }

    /// Records the promise of `message` for `caller`, charging the blob's
    /// bytes to its key in `grants` mode: refused past the grant's epoch,
    /// size or bytes, with nothing stored or charged.
    pub(crate) fn promise(
        &self,
        store: &Store,
        caller: &Caller,
        message: ProtocolMessage<StorageConfirmation>,
        blob: Option<(u64, u64)>,
    ) -> Result<DurableBlob, ApiError> {
        let Some((client, grant)) = self.live_grant(caller)? else {
            return store.promise(message).map_err(store_error);
        };
        let blob_id = message.body.blob_id;
        let Some((size, blob_bytes)) = blob else {
            return Err(ApiError::NotFound {
                blob_id,
                what: "metadata (send it before asking for a confirmation)".into(),
            });
        };
        if message.body.end_epoch > grant.until_epoch {
            return Err(ApiError::NotAdmitted(Refusal::PastEpochLimit {
                client,
                blob_id,
                end_epoch: message.body.end_epoch,
                limit: grant.until_epoch,
            }));
        }
        check_size(client, &grant, blob_id, size)?;
        // Reserve the bytes unless this client is charged for the blob
        // already (a second confirmation, for a longer end epoch).
        let charged = store
            .charge(&client, &blob_id)
            .map_err(store_error)?
            .is_some();
        let reserved = if charged { 0 } else { blob_bytes };
        let others = self.pending_except(&client, &blob_id);
        {
            let mut usage = self.usage.lock().map_err(|_| poisoned())?;
            let held = usage.entry(client).or_default();
            let in_use = held.saturating_add(others);
            if in_use.saturating_add(reserved) > grant.bytes {
                return Err(over_budget(client, &grant, blob_id, blob_bytes, in_use));
            }
            *held += reserved;
        }
        let result = store.promise_charged(message, Some((&client, blob_bytes)));
        // Settle: keep the bytes only if this promise made a new charge;
        // the upload is no longer pending once charged.
        let keep = match &result {
            Ok((_, new_charge)) if *new_charge => blob_bytes,
            _ => 0,
        };
        self.adjust(&client, keep, reserved);
        if result.is_ok() {
            if let Ok(mut pending) = self.pending.lock() {
                if let Some(mine) = pending.get_mut(&client) {
                    mine.remove(&blob_id);
                    if mine.is_empty() {
                        pending.remove(&client);
                    }
                }
            }
        }
        result.map(|(durable, _)| durable).map_err(store_error)
    }

    fn adjust(&self, client: &PublicKey, add: u64, remove: u64) {
        if let Ok(mut usage) = self.usage.lock() {
            let held = usage.entry(*client).or_default();
            *held = held.saturating_add(add).saturating_sub(remove);
        }
    }

    /// Bytes charged to `client` on this node.
    pub(crate) fn usage_of(&self, client: &PublicKey) -> u64 {
        self.usage
            .lock()
            .ok()
            .and_then(|usage| usage.get(client).copied())
            .unwrap_or(0)
    }

    /// Every client's usage and its grant's bytes (for metrics).
    pub(crate) fn usage(&self) -> Vec<(PublicKey, u64, Option<u64>)> {
        let grants = self.grants.lock().map(|g| g.clone()).unwrap_or_default();
        let mut out: Vec<_> = self
            .usage
            .lock()
            .map(|usage| {
                usage
                    .iter()
                    .map(|(key, bytes)| {
                        (*key, *bytes, grants.get(key).map(|g| g.message.body.bytes))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|(key, _, _)| *key);
        out
    }

    /// Frees the charges of blobs this node no longer keeps in `epoch`:
    /// every registration expired or deleted, or the blob proven invalid.
    /// Returns how many.
    pub(crate) fn release_ended(&self, store: &Store, epoch: Epoch) -> Result<usize, StoreError> {
        let mut released = 0;
        let mut after: Option<(PublicKey, BlobId)> = None;
        loop {
            let page = store.charges(after.as_ref().map(|(c, b)| (c, b)), PAGE)?;
            for (client, blob_id, _) in &page {
                if let Some(bytes) = store.release_charge(client, blob_id, epoch)? {
                    self.adjust(client, 0, bytes);
                    released += 1;
                }
            }
            match page.last() {
                Some((client, blob, _)) if page.len() == PAGE => after = Some((*client, *blob)),
                _ => break,
            }
        }
        Ok(released)
    }
}

/// Bytes of one key's uploads still pending at `now` (younger than
/// `pending_for`), other than `blob_id`.
fn pending_bytes(
    mine: &HashMap<BlobId, (u64, std::time::Instant)>,
    blob_id: &BlobId,
    now: std::time::Instant,
    pending_for: std::time::Duration,
) -> u64 {
    mine.iter()
        .filter(|(id, (_, since))| *id != blob_id && now.duration_since(*since) < pending_for)
        .map(|(_, (bytes, _))| *bytes)
        .sum()
}

fn check_size(
    client: PublicKey,
    grant: &StorageGrant,
    blob_id: BlobId,
    blob_bytes: u64,
) -> Result<(), ApiError> {
    if blob_bytes > grant.max_blob_size {
        return Err(ApiError::NotAdmitted(Refusal::TooLarge {
            client,
            blob_id,
            blob_bytes,
            limit: grant.max_blob_size,
        }));
    }
    Ok(())
}

fn over_budget(
    client: PublicKey,
    grant: &StorageGrant,
    blob_id: BlobId,
    blob_bytes: u64,
    usage: u64,
) -> ApiError {
    ApiError::NotAdmitted(Refusal::OverBudget {
        client,
        blob_id,
        blob_bytes,
        limit: grant.bytes,
        usage,
    })
}

fn poisoned() -> ApiError {
    ApiError::Internal("the admission state's lock is poisoned".into())
}
