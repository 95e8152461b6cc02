//! Quorum procedures, pure. Every "ask the committee until enough shards
//! answered" of the protocol is a [`Tally`] here: it takes each answer with
//! the time it came and says whether to go on, when to stop waiting, or that
//! it has what it needs. A driver (`floe_net::FanOut`) only makes the calls,
//! paced as a [`Pacing`] says. Weights, thresholds and hostile answers are
//! decided here, so they are tested here, without a network.
//!
//! | procedure | tally | done when |
//! |---|---|---|
//! | a blob's status | [`StatusTally`] | every member answered, or a grace period after a quorum |
//! | a certificate (storage, invalid blob) | [`SignatureTally`] | its threshold of shards signed |
//! | delivering a fact | [`DeliveryTally`] | shards forming a quorum accepted it |
//! | metadata | [`MetadataTally`] | one answer matches the blob ID |
//! | reading primary slivers | [`SliverTally`] | enough verified slivers to decode |
//! | recovery symbols | [`SymbolTally`] | every target has enough verified symbols |
//! | a set of calls that must all succeed | [`AllSucceed`] | the first failure |

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use floe_codec::{
    symbols_needed, Axis, BlobId, BlobMetadata, RecoverySymbol, Sliver, SliverIndex, Symbol,
};

use crate::chain::CommitteeChain;

mod data;
use crate::{BlobState, BlobStatus, BuildError, Committee, Epoch, MemberIndex, Signed};
use crate::{Certificate, CertificateBuilder, MessageBody};
pub use data::{SliverTally, SymbolTally};

/// What a tally wants after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep collecting answers; stop waiting at `deadline`, if one is set.
    Continue {
        /// When to stop waiting for the remaining calls.
        deadline: Option<Instant>,
    },
    /// Enough: the remaining calls are not needed.
    Done,
}

impl Step {
    /// Keep collecting, with no deadline.
    pub const CONTINUE: Step = Step::Continue { deadline: None };
}

/// How a driver paces its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Calls in flight at once, hedges aside.
    pub window: usize,
    /// Without an answer for this long, one more peer is asked, beyond the
    /// window (a slow peer holds nothing back).
    pub hedge: Option<Duration>,
}

impl Pacing {
    /// Every peer at once.
    pub const ALL: Pacing = Pacing {
        window: usize::MAX,
        hedge: None,
    };

    /// `window` calls at a time; one more after every `hedge` without an answer.
    pub const fn window(window: usize, hedge: Option<Duration>) -> Pacing {
        Pacing {
            window: if window == 0 { 1 } else { window },
            hedge,
        }
    }
}

/// A procedure that folds the answers of the peers it asked, each named by a `K`.
pub trait Tally<K, A> {
    /// Folds `answer` from `from`, received at `now`.
    fn answer(&mut self, from: K, answer: A, now: Instant) -> Step;

    /// How many more calls it can use while `in_flight` are unanswered
    /// (without limit unless it says so).
    fn wanted(&self, in_flight: usize) -> usize {
        let _ = in_flight;
        usize::MAX
    }
}

/// Why a peer's answer did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No usable answer: unreachable, timed out, busy, or an error.
    Unanswered(String),
    /// An answer that proves its sender lied: a proof that does not verify,
    /// a proof about another blob, data that fails its commitment.
    Lie(String),
}

impl Failure {
    /// Whether the answer was a lie (its sender should be reported).
    pub fn is_lie(&self) -> bool {
        matches!(self, Failure::Lie(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unanswered(reason) | Failure::Lie(reason) => f.write_str(reason),
        }
    }
}

/// Not enough shards (or peers) answered usably: `got` of `needed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall<K> {
    /// What was needed (shards, slivers, symbols, answers).
    pub needed: u32,
    /// What was gathered.
    pub got: u32,
    /// Each peer that failed, and how.
    pub failures: Vec<(K, Failure)>,
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A status that shards forming a quorum answered for, with its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// The status (never `Pending`: a blob without a certificate that a
    /// quorum answered for is `Unknown`).
    pub status: BlobStatus,
    /// The epoch it was judged in.
    pub epoch: Epoch,
    /// Shards whose answers counted.
    pub answered: u32,
}

/// The status fold: every verified proof any member sends is joined into one
/// state of the blob asked about; a proof that does not verify, or is about
/// another blob, is a lie and does not count. One signed in the epoch after
/// the one judged in, when the chain holds no committee change for that
/// epoch, is no answer instead: it may be an honest member's, a tick ahead,
/// signed by a committee that took over then and is not followed yet. Once
/// shards forming a quorum have answered, the rest get a grace period, not
/// the full call timeout.
#[derive(Debug)]
pub struct StatusTally<'c> {
    chain: &'c CommitteeChain,
    /// The committee of the epoch judged in: whose members answer.
    current: Committee,
    epoch: Epoch,
    quorum: u32,
    grace: Duration,
    state: BlobState,
    answered: u32,
    deadline: Option<Instant>,
    failures: Vec<(MemberIndex, Failure)>,
}

impl<'c> StatusTally<'c> {
    /// A tally of `blob_id`'s status in `epoch`, answered by the members of
    /// that epoch's committee; each proof is verified against the committee
    /// of its own epoch, as `chain` says.
    pub fn new(chain: &'c CommitteeChain, blob_id: BlobId, epoch: Epoch, grace: Duration) -> Self {
        let current = chain.committee_at(epoch);
        Self {
            chain,
            quorum: current.quorum_threshold(),
            current,
            epoch,
            grace,
            state: BlobState::unknown(blob_id),
            answered: 0,
            deadline: None,
            failures: Vec::new(),
        }
    }

    fn fold(&mut self, status: BlobStatus) -> Result<(), Failure> {
        let Some(fact) = status.fact() else {
            return Ok(());
        };
        let (blob_id, epoch) = (fact.blob_id(), fact.epoch());
        // What no committee decides is checked first, so that a proof
        // about another blob, or a deletion that does not match what it
        // carries, stays a lie whatever epoch it is stamped with.
        if blob_id != self.state.blob_id() {
            return Err(Failure::Lie(format!(
                "answered with a proof about another blob ({blob_id}), a lie"
            )));
        }
        fact.check_shape()
            .map_err(|e| Failure::Lie(format!("answered with a false proof: {e}")))?;
        let committee = self.chain.committee_at(epoch);
        let verified = fact.verify_after_shape(&committee).map_err(|e| {
            // An honest member's clock may be a tick ahead, and its proof
            // signed by a committee that took over in that epoch, one this
            // client has not followed yet: no answer, not a lie. Only a
            // certificate another committee could have signed.
            let ahead = self.epoch.0.checked_add(1) == Some(epoch.0);
            if ahead && epoch > self.chain.latest_epoch() && e.may_be_another_committees() {
                Failure::Unanswered(format!(
                    "answered with a proof of epoch {epoch}, which may be signed by a committee \
                     change this client has not followed (it knows changes up to epoch {}): \
                     not judged ({e})",
                    self.chain.latest_epoch()
                ))
            } else {
                Failure::Lie(format!("answered with a proof that does not verify: {e}"))
            }
        })?;
        self.state.apply(verified).map_err(|e| {
            Failure::Lie(format!(
                "answered with a proof about another blob, a lie: {e}"
            ))
        })
    }

    /// The members that failed so far, and how.
    pub fn failures(&self) -> &[(MemberIndex, Failure)] {
        &self.failures
    }

    /// The status, if it has a proof or shards forming a quorum answered.
    pub fn finish(self) -> Result<QuorumStatus, Shortfall<MemberIndex>> {
        let status = match self.state.status(self.epoch) {
            BlobStatus::Unknown | BlobStatus::Pending => {
                if !self.current.is_quorum(self.answered) {
                    return Err(Shortfall {
                        needed: self.quorum,
                        got: self.answered,
                        failures: self.failures,
                    });
                }
                BlobStatus::Unknown
            }
            proven => proven,
        };
        Ok(QuorumStatus {
            status,
            epoch: self.epoch,
            answered: self.answered,
        })
    }
}

impl Tally<MemberIndex, Result<BlobStatus, String>> for StatusTally<'_> {
    fn answer(
        &mut self,
        from: MemberIndex,
        answer: Result<BlobStatus, String>,
        now: Instant,
    ) -> Step {
        match answer
            .map_err(Failure::Unanswered)
            .and_then(|status| self.fold(status))
        {
            Ok(()) => self.answered = self.answered.saturating_add(self.current.weight(from)),
            Err(failure) => self.failures.push((from, failure)),
        }
        if self.deadline.is_none() && self.answered >= self.quorum {
            self.deadline = Some(now + self.grace);
        }
        Step::Continue {
            deadline: self.deadline,
        }
    }
}

/// Who a peer is in a committee: how a tally finds the member behind an
/// answer (by its index, or by the network key it was called at).
pub trait Peer {
    /// The member this peer is, if any.
    fn member(&self, committee: &Committee) -> Option<MemberIndex>;
}

impl Peer for MemberIndex {
    fn member(&self, committee: &Committee) -> Option<MemberIndex> {
        committee.member(*self).map(|_| *self)
    }
}

impl Peer for crate::PublicKey {
    fn member(&self, committee: &Committee) -> Option<MemberIndex> {
        committee.member_by_network_key(self)
    }
}

/// Signatures gathered into a certificate: storage confirmations to a
/// quorum, invalid-blob attestations to validity. Each answer must be the
/// answering member's own signature of the message: another member's
/// signature relayed, a signature of another message, or one that does not
/// verify is a lie. (A relayed signature is refused, so the member it was
/// taken from still counts when its own answer comes.) A signature from
/// another epoch, or one already counted, is no answer, not a lie: an
/// honest member's clock may be a tick ahead.
#[derive(Debug)]
pub struct SignatureTally<'c, T, K> {
    committee: &'c Committee,
    builder: CertificateBuilder<'c, T>,
    failures: Vec<(K, Failure)>,
}

impl<'c, T: MessageBody, K: Peer> SignatureTally<'c, T, K> {
    /// Gathers signatures of `message` from `committee`'s members.
    pub fn new(committee: &'c Committee, message: crate::ProtocolMessage<T>) -> Self {
        Self {
            committee,
            builder: CertificateBuilder::new(committee, message),
            failures: Vec::new(),
        }
    }

    /// Adds this node's own signature (it does not come over the network).
    pub fn add_own(&mut self, signed: &Signed<T>) -> Result<u32, BuildError> {
        self.builder.add(signed)
    }

    /// Shards whose signatures were gathered.
    pub fn weight(&self) -> u32 {
        self.builder.weight()
    }

    /// The members that failed so far, and how.
    pub fn failures(&self) -> &[(K, Failure)] {
        &self.failures
    }

    /// The certificate, if enough shards signed. (Signatures that each
    /// verified always form one; should they not, none counts.)
    pub fn finish(self) -> Result<Certificate<T>, Shortfall<K>> {
        let needed = self.builder.weight() + self.builder.missing_weight();
        let got = if self.builder.is_complete() {
            0
        } else {
            self.builder.weight()
        };
        self.builder.certificate().map_err(|_| Shortfall {
            needed,
            got,
            failures: self.failures,
        })
    }

    fn judge(&mut self, from: &K, signed: Signed<T>) -> Result<(), Failure> {
        let Some(member) = from
            .member(self.committee)
            .and_then(|m| self.committee.member(m))
        else {
            return Err(Failure::Unanswered(format!(
                "not a member of the committee of epoch {} that signs this",
                self.committee.epoch()
            )));
        };
        if member.protocol_key != signed.signer {
            return Err(Failure::Lie(format!(
                "answered with a signature by {}, not its own",
                signed.signer
            )));
        }
        self.builder.add(&signed).map(|_| ()).map_err(|e| match e {
            BuildError::WrongEpoch { .. } | BuildError::Duplicate { .. } => {
                Failure::Unanswered(format!("its signature does not count: {e}"))
            }
            e => Failure::Lie(format!("answered with a bad signature: {e}")),
        })
    }
}

impl<T: MessageBody, K: Peer> Tally<K, Result<Signed<T>, String>> for SignatureTally<'_, T, K> {
    fn answer(&mut self, from: K, answer: Result<Signed<T>, String>, _now: Instant) -> Step {
        let judged = answer
            .map_err(Failure::Unanswered)
            .and_then(|signed| self.judge(&from, signed));
        if let Err(failure) = judged {
            self.failures.push((from, failure));
        }
        if self.builder.is_complete() {
            Step::Done
        } else {
            Step::CONTINUE
        }
    }
}

/// A fact handed to every member: done once shards forming a quorum
/// accepted it (anti-entropy covers the rest).
#[derive(Debug)]
pub struct DeliveryTally<'c> {
    base: &'c Committee,
    quorum: u32,
    weight: u32,
    accepted: usize,
}

impl<'c> DeliveryTally<'c> {
    /// Delivery of a fact of `epoch` to `base`'s members.
    pub fn new(base: &'c Committee, epoch: Epoch) -> Self {
        Self {
            base,
            quorum: base.at_epoch(epoch).quorum_threshold(),
            weight: 0,
            accepted: 0,
        }
    }

    /// Members that accepted the fact.
    pub fn accepted(&self) -> usize {
        self.accepted
    }

    /// Shards whose members accepted it.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

impl Tally<MemberIndex, bool> for DeliveryTally<'_> {
    fn answer(&mut self, from: MemberIndex, accepted: bool, _now: Instant) -> Step {
        if accepted {
            self.accepted += 1;
            self.weight = self.weight.saturating_add(self.base.weight(from));
        }
        if self.weight >= self.quorum {
            Step::Done
        } else {
            Step::CONTINUE
        }
    }
}

/// A blob's metadata: the first answer that matches the blob ID; one that
/// does not is a lie.
#[derive(Debug)]
pub struct MetadataTally<K> {
    blob_id: BlobId,
    found: Option<BlobMetadata>,
    failures: Vec<(K, Failure)>,
}

impl<K> MetadataTally<K> {
    /// Looks for `blob_id`'s metadata.
    pub fn new(blob_id: BlobId) -> Self {
        Self {
            blob_id,
            found: None,
            failures: Vec::new(),
        }
    }

    /// The peers that failed so far, and how.
    pub fn failures(&self) -> &[(K, Failure)] {
        &self.failures
    }

    /// The verified metadata, if a peer served it.
    pub fn finish(self) -> Result<BlobMetadata, Shortfall<K>> {
        self.found.ok_or(Shortfall {
            needed: 1,
            got: 0,
            failures: self.failures,
        })
    }
}

impl<K> Tally<K, Result<BlobMetadata, String>> for MetadataTally<K> {
    fn answer(&mut self, from: K, answer: Result<BlobMetadata, String>, _now: Instant) -> Step {
        match answer {
            Ok(metadata) => match metadata.verify(&self.blob_id) {
                Ok(()) => {
                    self.found = Some(metadata);
                    return Step::Done;
                }
                Err(e) => self.failures.push((
                    from,
                    Failure::Lie(format!("served metadata that does not match: {e}")),
                )),
            },
            Err(e) => self.failures.push((from, Failure::Unanswered(e))),
        }
        Step::CONTINUE
    }
}

/// Calls that must all succeed: done at the first failure, which it keeps.
#[derive(Debug)]
pub struct AllSucceed<K> {
    failure: Option<(K, String)>,
}

impl<K> Default for AllSucceed<K> {
    fn default() -> Self {
        Self { failure: None }
    }
}

impl<K> AllSucceed<K> {
    /// The first failure, if any.
    pub fn finish(self) -> Result<(), (K, String)> {
        self.failure.map_or(Ok(()), Err)
    }
}

impl<K> Tally<K, Result<(), String>> for AllSucceed<K> {
    fn answer(&mut self, from: K, answer: Result<(), String>, _now: Instant) -> Step {
        match answer {
            Ok(()) => Step::CONTINUE,
            Err(e) => {
                self.failure = Some((from, e));
                Step::Done
            }
        }
    }
}

/// A tally with an observer called after each answer (progress reports).
#[derive(Debug)]
pub struct Observed<T, F> {
    tally: T,
    observer: F,
}

impl<T, F: FnMut(&T)> Observed<T, F> {
    /// `tally`, with `observer` told of it after each answer.
    pub fn new(tally: T, observer: F) -> Self {
        Self { tally, observer }
    }

    /// The tally.
    pub fn into_inner(self) -> T {
        self.tally
    }
}

impl<K, A, T: Tally<K, A>, F: FnMut(&T)> Tally<K, A> for Observed<T, F> {
    fn answer(&mut self, from: K, answer: A, now: Instant) -> Step {
        let step = self.tally.answer(from, answer, now);
        (self.observer)(&self.tally);
        step
    }

    fn wanted(&self, in_flight: usize) -> usize {
        self.tally.wanted(in_flight)
    }
}

/// Calls whose answers nobody needs: waits for every one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl<K, A> Tally<K, A> for Discard {
    fn answer(&mut self, _from: K, _answer: A, _now: Instant) -> Step {
        Step::CONTINUE
    }
}

/// Every answer of a fan-out, kept as it came: waits for every one.
#[derive(Debug)]
pub struct Collect<K, A>(pub Vec<(K, A)>);

impl<K, A> Default for Collect<K, A> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K, A> Tally<K, A> for Collect<K, A> {
    fn answer(&mut self, from: K, answer: A, _now: Instant) -> Step {
        self.0.push((from, answer));
        Step::CONTINUE
    }
}
