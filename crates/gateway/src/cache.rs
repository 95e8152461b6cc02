//! `Cache-Control` that never outlives the protocol.
//!
//! A blob's bytes never change, but the protocol does not keep them for
//! ever: storage ends at the start of the blob's end epoch (from its
//! certificate), and a deletable blob may be deleted at any moment. So a
//! cache in front of the gateway may keep a blob only until its end epoch
//! begins, a deletable blob is never `immutable` and is kept briefly, and
//! every answer that is not a certified blob's bytes (an error, a status, a
//! read whose certificate could not be confirmed) is `no-store`.

use std::time::Duration;

use axum::http::HeaderValue;

/// The longest `max-age` HTTP caches honour (one year, RFC 9111 §5.2.2.1
/// advises no more).
pub(crate) const MAX_AGE_CAP_SECS: u64 = 31_536_000;

/// For answers nothing may keep.
pub(crate) fn no_store() -> HeaderValue {
    HeaderValue::from_static("no-store")
}

/// What is known of a certified blob's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// When its storage ends (the start of its end epoch), Unix ms.
    pub ends_unix_ms: u64,
    /// Whether its owner may delete it before then.
    pub deletable: bool,
}

/// The `Cache-Control` of a 200 or 206 carrying a blob's bytes, at
/// `now_unix_ms`; `lifetime` is `None` when the read could not confirm the
/// blob's certificate, and `deletable_max_age` bounds how long a deletable
/// blob is kept.
pub(crate) fn for_blob(
    lifetime: Option<Lifetime>,
    now_unix_ms: u64,
    deletable_max_age: Duration,
) -> HeaderValue {
    let Some(lifetime) = lifetime else {
        return no_store();
    };
    // Whole seconds left, rounded down: a cache must drop it before the
    // protocol does, never after.
    let left = lifetime.ends_unix_ms.saturating_sub(now_unix_ms) / 1000;
    let (max_age, immutable) = if lifetime.deletable {
        (left.min(deletable_max_age.as_secs()), "")
    } else {
        (left.min(MAX_AGE_CAP_SECS), ", immutable")
    };
    if max_age == 0 {
        return no_store();
    }
    HeaderValue::from_str(&format!("public, max-age={max_age}{immutable}"))
        .unwrap_or_else(|_| no_store())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(ends_unix_ms: u64, deletable: bool) -> Option<Lifetime> {
        Some(Lifetime {
            ends_unix_ms,
            deletable,
        })
    }

    #[test]
    fn max_age_stops_at_the_end_epoch() {
        let now = 1_000_000_000;
        assert_eq!(
            for_blob(at(now + 7_200_999, false), now, MINUTE),
            "public, max-age=7200, immutable"
        );
        assert_eq!(
            for_blob(at(now + 100 * MAX_AGE_CAP_SECS * 1000, false), now, MINUTE),
            "public, max-age=31536000, immutable"
        );
        // Less than a second left, or already over: not kept at all.
        assert_eq!(for_blob(at(now + 999, false), now, MINUTE), "no-store");
        assert_eq!(for_blob(at(now - 5, false), now, MINUTE), "no-store");
    }

    #[test]
    fn deletable_blobs_are_never_immutable() {
        let now = 1_000_000_000;
        assert_eq!(
            for_blob(at(now + 7_200_000, true), now, MINUTE),
            "public, max-age=60"
        );
        assert_eq!(
            for_blob(at(now + 30_000, true), now, MINUTE),
            "public, max-age=30"
        );
        assert_eq!(
            for_blob(at(now + 30_000, true), now, Duration::ZERO),
            "no-store"
        );
    }

    #[test]
    fn unconfirmed_lifetimes_are_not_stored() {
        assert_eq!(for_blob(None, 0, MINUTE), "no-store");
    }
}
