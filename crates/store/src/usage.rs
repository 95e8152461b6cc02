//! What each client key holds stored, for admission in `grants` mode: one
//! row per (client, blob) in the `usage` table, written in the same batch
//! as the promise it pays for, so a charge exists exactly when this node
//! promised the blob to that client. Nothing half-stored is ever charged.

use floe_codec::BlobId;
use floe_consensus::{Epoch, PublicKey};
use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::records::decode;
use crate::{envelope, Store};

pub(crate) const USAGE: &str = "usage";

/// One client's charge for one blob: held while this node keeps the blob
/// (while any promise it made binds), whoever else also registered it.
///
/// BCS: `bytes u64 ‖ end_epoch u64`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// What the blob counts against the client's grant.
    pub bytes: u64,
    /// The latest end epoch this node confirmed to the client.
    pub end_epoch: Epoch,
}

pub(crate) fn usage_key(client: &PublicKey, blob_id: &BlobId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(&client.to_bytes());
    key[32..].copy_from_slice(&blob_id.0);
    key
}

fn split_key(key: &[u8]) -> Result<(PublicKey, BlobId), StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        table: USAGE,
        key: envelope::hex(key),
        reason: reason.into(),
    };
    let (client, blob) = match <&[u8; 64]>::try_from(key) {
        Ok(key) => key.split_at(32),
        Err(_) => return Err(corrupt("key is not a client key and a blob ID")),
    };
    let client = <[u8; 32]>::try_from(client)
        .ok()
        .and_then(|bytes| PublicKey::from_bytes(&bytes).ok())
        .ok_or_else(|| corrupt("not a client key"))?;
    let blob = <[u8; 32]>::try_from(blob).map_err(|_| corrupt("not a blob ID"))?;
    Ok((client, BlobId(blob)))
}

impl Store {
    /// The charge of `client` for `blob_id`, if this node promised it.
    pub fn charge(
        &self,
        client: &PublicKey,
        blob_id: &BlobId,
    ) -> Result<Option<Charge>, StoreError> {
        let key = usage_key(client, blob_id);
        self.get(USAGE, &key)?
            .map(|value| decode(USAGE, &key, &value))
            .transpose()
    }

    /// Up to `limit` charges after `after` (a client and blob), in key
    /// order: for rebuilding the per-client totals at start and for
    /// releasing ended ones.
    pub fn charges(
        &self,
        after: Option<(&PublicKey, &BlobId)>,
        limit: usize,
    ) -> Result<Vec<(PublicKey, BlobId, Charge)>, StoreError> {
        let cf = self.cf(USAGE)?;
        let start = after.map(|(client, blob)| usage_key(client, blob));
        let mode = match &start {
            Some(key) => IteratorMode::From(key, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(StoreError::db(USAGE))?;
            if start.as_ref().is_some_and(|s| s[..] == key[..]) {
                continue;
            }
            let (client, blob_id) = split_key(&key)?;
            out.push((client, blob_id, decode(USAGE, &key, &value)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Frees `client`'s charge for `blob_id` once the client's own storage
    /// ended in `epoch` (the latest end epoch confirmed to it passed), no
    /// promise of this node binds the blob any more (every registration
    /// expired or was deleted), or it is proven invalid: judged under the
    /// blob's lock, so a confirmation extending it cannot interleave. Another
    /// client keeping the blob alive does not keep this client charged past
    /// its own end epoch. Returns the bytes freed.
    pub fn release_charge(
        &self,
        client: &PublicKey,
        blob_id: &BlobId,
        epoch: Epoch,
    ) -> Result<Option<u64>, StoreError> {
        let _guard = self.lock(blob_id);
        let Some(charge) = self.charge(client, blob_id)? else {
            return Ok(None);
        };
        let state = self.state(blob_id)?;
        let invalid = matches!(
            state.status(epoch),
            floe_consensus::BlobStatus::Invalid { .. }
        );
        let binds = self
            .promised(blob_id)?
            .is_some_and(|promise| promise.binds(&state, epoch));
        if binds && !invalid && charge.end_epoch > epoch {
            return Ok(None);
        }
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(self.cf(USAGE)?, usage_key(client, blob_id));
        self.write(USAGE, batch, true)?;
        Ok(Some(charge.bytes))
    }
}
