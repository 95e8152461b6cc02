//! Storage grants: who may write, and how much.
//!
//! Floe has no chain to pay on, so the operators decide who may store, and
//! every node enforces it the same way: a node in `grants` admission mode
//! takes writes only from a client key holding a [`StorageGrant`] signed by
//! an issuer key its configuration trusts (an operator, or a billing
//! service). The grant names the client's key, so it is worth nothing to
//! anyone else: the client proves that key in the QUIC handshake.
//!
//! A grant is revoked by letting it expire: issue short-lived grants and
//! renew them. Pure rules only; the node keeps the usage.

use floe_codec::BlobId;
use serde::{Deserialize, Serialize};

use crate::messages::{IntentKind, MessageBody, Signed, Threshold};
use crate::{Epoch, PublicKey};

/// An issuer's permission for one client key to store.
///
/// BCS: `client [32] ‖ bytes u64 ‖ until_epoch u64 ‖ max_blob_size u64 ‖
/// expires_ms u64`, signed as intent kind 18 in epoch 0 (a grant is not
/// tied to an epoch: its limits are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageGrant {
    /// The client key that may write (the key of its TLS certificate).
    pub client: PublicKey,
    /// How many blob bytes (unencoded) the client may keep stored at once:
    /// a blob counts from its confirmation until it expires or is deleted.
    pub bytes: u64,
    /// The furthest end epoch the client may store a blob until.
    pub until_epoch: Epoch,
    /// The largest blob the client may store.
    pub max_blob_size: u64,
    /// Unix time (milliseconds) from which the grant admits no new write.
    pub expires_ms: u64,
}

impl MessageBody for StorageGrant {
    const KIND: IntentKind = IntentKind::StorageGrant;
    // Signed by one issuer key, never by the committee.
    const THRESHOLD: Threshold = Threshold::Quorum;
    /// A grant is about no blob: the digest of the grant stands in.
    fn blob_id(&self) -> BlobId {
        BlobId(*blake3::hash(&crate::canonical_bytes(self)).as_bytes())
    }
}

/// Why a grant admits nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Signed by a key the node does not trust to issue grants.
    #[error("the grant for {client} is signed by {issuer}, which this node does not trust to issue grants")]
    UntrustedIssuer {
        /// The client the grant names.
        client: PublicKey,
        /// Who signed it.
        issuer: PublicKey,
    },
    /// The signature does not verify.
    #[error("the grant for {client} has a bad signature")]
    BadSignature {
        /// The client the grant names.
        client: PublicKey,
    },
    /// The grant names another key than the caller's.
    #[error("the grant names {named}, but the caller proved {caller}")]
    WrongClient {
        /// The key the grant names.
        named: PublicKey,
        /// The key the caller proved, if any.
        caller: String,
    },
    /// The grant's time is over.
    #[error("the grant for {client} expired at {expires_ms} ms (now {now_ms} ms)")]
    Expired {
        /// The client the grant names.
        client: PublicKey,
        /// When it expired.
        expires_ms: u64,
        /// Now.
        now_ms: u64,
    },
}

impl Signed<StorageGrant> {
    /// Checks that this grant admits `caller` at `now_ms`: signed by one of
    /// `issuers`, naming the caller's key, not expired.
    pub fn admits(
        &self,
        issuers: &[PublicKey],
        caller: Option<&PublicKey>,
        now_ms: u64,
    ) -> Result<(), GrantError> {
        let grant = &self.message.body;
        let client = grant.client;
        if !issuers.contains(&self.signer) {
            return Err(GrantError::UntrustedIssuer {
                client,
                issuer: self.signer,
            });
        }
        self.verify()
            .map_err(|_| GrantError::BadSignature { client })?;
        if caller != Some(&client) {
            return Err(GrantError::WrongClient {
                named: client,
                caller: caller.map_or_else(|| "no key".to_string(), |k| k.to_string()),
            });
        }
        if now_ms >= grant.expires_ms {
            return Err(GrantError::Expired {
                client,
                expires_ms: grant.expires_ms,
                now_ms,
            });
        }
        Ok(())
    }
}

/// The prefix of a grant's text form.
pub const GRANT_TEXT_PREFIX: &str = "floe-grant-v1:";

impl Signed<StorageGrant> {
    /// The grant as one line of text (what `floe-node grant issue` prints
    /// and a client config's `grant` file holds): the prefix, then the
    /// canonical bytes in URL-safe base64.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        let bytes = crate::canonical_bytes(self);
        format!(
            "{GRANT_TEXT_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// Parses [`Signed::to_text`] (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let encoded = text
            .trim()
            .strip_prefix(GRANT_TEXT_PREFIX)
            .ok_or_else(|| format!("a grant starts with `{GRANT_TEXT_PREFIX}`"))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|e| format!("a grant is base64 after its prefix: {e}"))?;
        floe_codec::from_canonical_bytes(&bytes).map_err(|e| format!("not a grant: {e}"))
    }
}
