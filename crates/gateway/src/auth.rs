//! The publisher's authentication: a JWT on every publisher request, as
//! Walrus's publisher takes one. The aggregator stays open.
//!
//! A token must verify under the configured key (an HMAC secret, or an
//! Ed25519 or ECDSA public key) and carry `exp`; it may limit what it
//! allows with `max_size` / `size` (bytes of the body) and `max_epochs` /
//! `epochs`. With replay suppression (the default) it must carry a `jti`,
//! and a `jti` is accepted once while its token is valid.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::GatewayError;

/// Tokens remembered for replay suppression at most; beyond it, tokens are
/// refused until old ones expire (a flood of fresh tokens cannot grow the
/// gateway's memory).
pub const MAX_REMEMBERED_TOKENS: usize = 1_000_000;

/// How the publisher checks tokens.
pub struct JwtAuth {
    key: DecodingKey,
    validation: Validation,
    replay_suppression: bool,
    /// `jti` → its token's `exp` (Unix seconds), while valid.
    seen: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .field("replay_suppression", &self.replay_suppression)
            .finish_non_exhaustive()
    }
}

/// The claims a token may limit a store with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    /// Expiry (Unix seconds); required.
    pub exp: u64,
    /// The token's ID, for replay suppression.
    #[serde(default)]
    pub jti: Option<String>,
    /// The largest body the token allows.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// The exact body size the token allows.
    #[serde(default)]
    pub size: Option<u64>,
    /// The most epochs the token allows.
    #[serde(default)]
    pub max_epochs: Option<u64>,
    /// The exact epochs the token allows.
    #[serde(default)]
    pub epochs: Option<u64>,
}

impl Claims {
    /// The body limit the token sets, if any.
    pub fn size_limit(&self) -> Option<u64> {
        match (self.max_size, self.size) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Refuses `epochs` beyond what the token allows (403).
    pub fn check_epochs(&self, epochs: u64) -> Result<(), GatewayError> {
        if let Some(max) = self.max_epochs.filter(|max| epochs > *max) {
            return Err(GatewayError::TokenLimit {
                claim: "max_epochs",
                limit: max,
                requested: epochs,
            });
        }
        if let Some(exact) = self.epochs.filter(|exact| epochs != *exact) {
            return Err(GatewayError::TokenLimit {
                claim: "epochs",
                limit: exact,
                requested: epochs,
            });
        }
        Ok(())
    }

    /// Refuses a body of `size` bytes beyond what the token allows (413),
    /// or not of the exact size it names.
    pub fn check_size(&self, size: u64) -> Result<(), GatewayError> {
        if let Some(max) = self.max_size.filter(|max| size > *max) {
            return Err(GatewayError::TooLarge {
                limit: max,
                by: "the token's max_size claim",
            });
        }
        if let Some(exact) = self.size.filter(|exact| size != *exact) {
            return Err(GatewayError::TokenLimit {
                claim: "size",
                limit: exact,
                requested: size,
            });
        }
        Ok(())
    }
}

impl JwtAuth {
    /// Checks tokens with `key` (raw bytes of an HMAC secret, or a PEM
    /// public key) for `algorithm`.
    pub fn new(algorithm: Algorithm, key: &[u8], replay_suppression: bool) -> Result<Self, String> {
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if key.len() < 32 {
                    return Err(format!(
                        "an HMAC secret of {} bytes is too short: use at least 32 random bytes",
                        key.len()
                    ));
                }
                DecodingKey::from_secret(key)
            }
            Algorithm::EdDSA => DecodingKey::from_ed_pem(key)
                .map_err(|e| format!("not an Ed25519 PEM public key: {e}"))?,
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(key)
                .map_err(|e| format!("not an EC PEM public key: {e}"))?,
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(key)
                .map_err(|e| format!("not an RSA PEM public key: {e}"))?,
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        // Walrus-style tokens may name an audience; this publisher has none
        // configured, so it does not judge one.
        validation.validate_aud = false;
        Ok(Self {
            key,
            validation,
            replay_suppression,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The claims of the request's bearer token, once it verifies, has not
    /// expired and (with replay suppression) was not used before. The token
    /// is spent by [`JwtAuth::consume`], once the request passed its checks.
    pub fn authorize(&self, headers: &HeaderMap, now_secs: u64) -> Result<Claims, GatewayError> {
        let unauthorized = |reason: String| GatewayError::Unauthorized { reason };
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("the publisher needs a token: send `Authorization: Bearer <JWT>`".into())
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <JWT>`".into()))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token expired; get a new one".into(),
                    ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the token has no `{claim}` claim; tokens must expire")
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "the token is signed with another algorithm than this publisher accepts"
                            .into()
                    }
                    _ => format!("the token is not valid: {e}"),
                })
            })?
            .claims;
        if self.replay_suppression {
            let jti = claims
                .jti
                .as_deref()
                .ok_or_else(|| unauthorized("the token has no `jti` claim; this publisher accepts each token once, by its ID".into()))?;
            let seen = self.seen.lock().map_err(|_| {
                GatewayError::Internal("the token registry's lock is poisoned".into())
            })?;
            if seen.get(jti).is_some_and(|exp| *exp > now_secs) {
                return Err(replayed(jti));
            }
        }
        Ok(claims)
    }

    /// Spends the token of `claims` (with replay suppression): refused if
    /// it was spent meanwhile. Called once the request passed every check,
    /// right before the store, so a refused request does not use it up.
    pub fn consume(&self, claims: &Claims, now_secs: u64) -> Result<(), GatewayError> {
        if !self.replay_suppression {
            return Ok(());
        }
        let Some(jti) = claims.jti.clone() else {
            return Err(GatewayError::Unauthorized {
                reason: "the token has no `jti` claim".into(),
            });
        };
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| GatewayError::Internal("the token registry's lock is poisoned".into()))?;
        if seen.get(&jti).is_some_and(|exp| *exp > now_secs) {
            return Err(replayed(&jti));
        }
        if seen.len() >= MAX_REMEMBERED_TOKENS {
            seen.retain(|_, exp| *exp > now_secs);
            if seen.len() >= MAX_REMEMBERED_TOKENS {
                return Err(GatewayError::Overloaded {
                    slots: MAX_REMEMBERED_TOKENS,
                });
            }
        }
        seen.insert(jti, claims.exp);
        Ok(())
    }
}

fn replayed(jti: &str) -> GatewayError {
    GatewayError::Unauthorized {
        reason: format!("the token with jti {jti:?} was used already; each token is accepted once"),
    }
}
