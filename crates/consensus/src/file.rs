//! The committee file: what a genesis tool writes and a node loads.
//!
//! TOML, one table per member:
//!
//! ```toml
//! epoch = 0
//! n_shards = 10
//!
//! [clock]
//! genesis_unix_ms = 1764028800000   # when epoch 0 began
//! epoch_duration_ms = 3600000       # one hour per epoch
//!
//! [[members]]
//! node_id = "node-0"
//! protocol_key = "<64 hex characters>"   # signs storage confirmations
//! network_key = "<64 hex characters>"    # its TLS certificate's key
//! address = "127.0.0.1:7100"
//! shards = [0, 1, 2, 3, 4]
//! ```
//!
//! Parsing is pure (`&str` in, value out); reading the file is the caller's.

use serde::{Deserialize, Serialize};

use crate::{error::CommitteeFileError, Committee, Epoch};

/// When epochs begin: epoch `e` starts at `genesis + e · duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochClock {
    /// Unix time (ms) at which epoch 0 began.
    pub genesis_unix_ms: u64,
    /// Length of an epoch (ms), greater than 0.
    pub epoch_duration_ms: u64,
}

impl EpochClock {
    /// The epoch at Unix time `now_unix_ms` (epoch 0 before genesis).
    pub fn epoch_at(&self, now_unix_ms: u64) -> Epoch {
        Epoch(now_unix_ms.saturating_sub(self.genesis_unix_ms) / self.epoch_duration_ms.max(1))
    }

    /// When epoch `epoch` begins (Unix ms, saturating).
    pub fn epoch_start(&self, epoch: Epoch) -> u64 {
        self.genesis_unix_ms
            .saturating_add(epoch.0.saturating_mul(self.epoch_duration_ms))
    }
}

/// A committee and its epoch clock, as stored in a committee file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeFile {
    /// The committee.
    #[serde(flatten)]
    pub committee: Committee,
    /// The epoch clock.
    pub clock: EpochClock,
}

impl CommitteeFile {
    /// Parses and validates a committee file's text. Errors name the field
    /// (with its line) or the member and shard at fault.
    pub fn from_toml(text: &str) -> Result<Self, CommitteeFileError> {
        #[derive(Deserialize)]
        struct Raw {
            epoch: Epoch,
            n_shards: u16,
            clock: EpochClock,
            members: Vec<crate::Member>,
        }
        let raw: Raw =
            toml::from_str(text).map_err(|e| CommitteeFileError::Parse(e.to_string()))?;
        if raw.clock.epoch_duration_ms == 0 {
            return Err(CommitteeFileError::ZeroEpochDuration);
        }
        let committee = Committee::new(raw.epoch, raw.n_shards, raw.members)
            .map_err(|e| CommitteeFileError::Invalid(Box::new(e)))?;
        Ok(CommitteeFile {
            committee,
            clock: raw.clock,
        })
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Raw<'a> {
            epoch: Epoch,
            n_shards: u16,
            clock: EpochClock,
            members: &'a [crate::Member],
        }
        let raw = Raw {
            epoch: self.committee.epoch(),
            n_shards: self.committee.n_shards(),
            clock: self.clock,
            members: self.committee.members(),
        };
        // Serializing plain structs of strings and integers to TOML cannot fail.
        let body = toml::to_string_pretty(&raw).unwrap_or_default();
        format!("# Floe committee file (see floe-consensus docs for the format)\n{body}")
    }
}
