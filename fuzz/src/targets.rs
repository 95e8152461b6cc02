//! The targets: each takes bytes and answers whether they decoded to a
//! value that encodes back to the same bytes ([`Outcome::Accepted`]) or
//! were refused with a typed error ([`Outcome::Rejected`]); anything else
//! (a value that re-encodes differently, a range outside its blob) is a
//! property violation, returned as `Err`. Panics and allocations beyond
//! the bound are caught by the engine.

use std::any::type_name;

use axum::http::{header, HeaderMap, HeaderValue, Uri};
use bytes::Bytes;
use floe_api::{
    ApiError, BlobStatusAnswer, ConfirmationRequest, GetConfirmation, GetInfo, GetMetadata,
    GetRecoverySymbols, GetSliver, GetSliverRequest, GetStatus, NodeInfo, PutFact, PutMetadata,
    PutMetadataRequest, PutPairs, PutPairsRequest, Reconcile, ReconcileRequest, ReconcileResponse,
    RecoveryRequest, SubmitInconsistency,
};
use floe_codec::{
    canonical_bytes, recover_sliver, Axis, BlobId, BlobMetadata, InconsistencyProof,
    RecoverySymbol, ShardIndex, Sliver, SliverIndex,
};
use floe_consensus::{
    BlobCertificate, BlobDeletion, BlobState, BlobStatus, CommitteeFile, Epoch, Fact,
    InvalidBlobAttestation, InvalidBlobCertificate, ReconcileMessage, Signed, StorageConfirmation,
};
use floe_net::frame::{self, Status};
use floe_net::{Method, Wire};
use floe_store::envelope;
use floe_store::records::{self, SliverRecord};
use floe_store::Promise;

use crate::fixtures::{fixtures, Fixtures};
use floe_api::{
    GetCommitteeChain, GetHandoff, GetShardPairs, PutCommitteeLink, PutShardsSynced,
    ShardPairsPage, ShardPairsRequest, SignCommitteeProposal,
};
use floe_consensus::chain::{CommitteeCertificate, CommitteeChain, CommitteeProposal};

/// What a target made of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded to a value that encodes back to the same bytes (and passed
    /// the target's further checks without panicking).
    Accepted,
    /// Refused with a typed error.
    Rejected,
}

/// A target's verdict: an outcome, or the property that failed.
pub type Verdict = Result<Outcome, String>;

/// One fuzz target.
#[derive(Debug)]
pub struct Target {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it feeds.
    pub about: &'static str,
    /// Runs it on one input.
    pub run: fn(&[u8]) -> Verdict,
    /// Its well-formed seeds.
    pub seeds: fn() -> Result<Vec<Vec<u8>>, String>,
    /// Bytes it may hold per input byte (beyond [`crate::ALLOC_SLACK`]).
    pub alloc_factor: usize,
}

/// Bytes held per input byte most targets stay under: a decoded value
/// takes a few times its encoding (a 32-byte public key is a 192-byte
/// decompressed point, an empty symbol a 64-byte struct), vectors grow by
/// doubling, and checks build replies (a range summary answered with 16).
pub const DEFAULT_ALLOC_FACTOR: usize = 64;

/// Every target, in the order runs take them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        about: "whole request and response streams: header, limits of the method, body",
        run: frame_stream,
        seeds: frame_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "put_pairs",
        about: "PutPairs request frames (the hand-written pair frame)",
        run: put_pairs,
        seeds: put_pairs_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "api_request",
        about: "every floe-api request type, selected by the first byte",
        run: api_request,
        seeds: api_request_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "api_response",
        about: "every floe-api response type and ApiError, selected by the first byte",
        run: api_response,
        seeds: api_response_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "committee_file",
        about: "committee files (TOML) through CommitteeFile::from_toml",
        run: committee_file,
        seeds: committee_file_seeds,
        // toml_edit keeps a document model (spans, decor, raw reprs) of
        // several hundred bytes per table header or key of a few bytes;
        // the file is the operator's, not a peer's.
        alloc_factor: 512,
    },
    Target {
        name: "store_values",
        about: "store envelopes and the values in them (metadata, promises, states, arrivals)",
        run: store_values,
        seeds: store_values_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "pair_record",
        about: "slivers-table records: inline slivers and pair-file places",
        run: pair_record,
        seeds: pair_record_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "inconsistency_proof",
        about: "inconsistency proofs, decoded and verified against metadata",
        run: inconsistency_proof,
        seeds: inconsistency_proof_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "certificate",
        about: "certificates, facts and signed messages, verified against the committee",
        run: certificate,
        seeds: certificate_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "digest",
        about: "anti-entropy digest messages, answered by a digest index",
        run: digest,
        seeds: digest_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "gateway_range",
        about: "the gateway's Range header handling against a blob length",
        run: gateway_range,
        seeds: gateway_range_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
    Target {
        name: "gateway_query",
        about: "the gateway's store and read query strings and blob ID path segment",
        run: gateway_query,
        seeds: gateway_query_seeds,
        alloc_factor: DEFAULT_ALLOC_FACTOR,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Lowercase hex of at most the first 256 bytes.
fn short_hex(bytes: &[u8]) -> String {
    let mut text: String = bytes.iter().take(256).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 256 {
        text.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    text
}

/// Decodes `body` as `T`; a value must encode back to `body`.
fn roundtrip<T: Wire>(body: &[u8]) -> Result<Option<T>, String> {
    let Ok(value) = T::from_frame(Bytes::copy_from_slice(body)) else {
        return Ok(None);
    };
    let again = value
        .to_frame()
        .map_err(|e| format!("a decoded {} does not encode: {e}", type_name::<T>()))?;
    if again.as_ref() != body {
        return Err(format!(
            "a decoded {} encodes differently\n  input {}\n  again {}",
            type_name::<T>(),
            short_hex(body),
            short_hex(&again)
        ));
    }
    Ok(Some(value))
}

/// Further checks of a decoded value against the fixtures, as a node or
/// client would run them on what it received. Their results are not
/// judged (most inputs fail them); they must only not panic or blow up.
trait Deep {
    fn deep(&self, _fx: &Fixtures) {}
}

impl Deep for () {}
impl Deep for NodeInfo {}
impl Deep for GetSliverRequest {}
impl Deep for ConfirmationRequest {}
impl Deep for BlobId {}

impl Deep for ApiError {
    fn deep(&self, _fx: &Fixtures) {
        let _ = (self.to_string(), self.label());
    }
}

impl Deep for PutMetadataRequest {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.metadata.verify(&self.blob_id);
        self.metadata.deep(fx);
    }
}

impl Deep for BlobMetadata {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.verify(&fx.blob_id);
        let _ = (self.config().max_blob_size(), self.symbol_size());
    }
}

impl Deep for PutPairsRequest {
    fn deep(&self, fx: &Fixtures) {
        for (_, pair) in &self.pairs {
            let _ = pair.verify(&fx.metadata);
            let _ = pair.verify(&fx.large.0);
        }
    }
}

impl Deep for Sliver {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.verify(&fx.metadata);
        let _ = self.verify(&fx.large.0);
    }
}

impl Deep for RecoveryRequest {
    fn deep(&self, fx: &Fixtures) {
        // What a node holding pair 0 computes for the request.
        for axis in [Axis::Primary, Axis::Secondary] {
            let targets: Vec<SliverIndex> = self
                .targets
                .iter()
                .filter(|(a, _)| *a == axis)
                .map(|(_, index)| *index)
                .collect();
            if let Some(pair) = fx.pairs.first() {
                let source = match axis {
                    Axis::Primary => &pair.secondary,
                    Axis::Secondary => &pair.primary,
                };
                let _ = source.recovery_symbols(&fx.metadata, &targets);
                let _ = source.bare_symbols(&fx.metadata, &targets);
            }
        }
    }
}

/// What a repairing node does with an answer of recovery symbols.
fn deep_symbols<S: floe_codec::Symbol>(symbols: &[S], fx: &Fixtures) {
    for symbol in symbols {
        let _ = symbol.check(&fx.metadata);
    }
    if let Some(first) = symbols.first() {
        let _ = recover_sliver(
            &fx.metadata,
            first.target_axis(),
            first.target_index(),
            symbols.iter().cloned(),
        );
    }
}

impl Deep for Vec<RecoverySymbol> {
    fn deep(&self, fx: &Fixtures) {
        deep_symbols(self, fx);
    }
}

impl Deep for Vec<floe_codec::BareSymbol> {
    fn deep(&self, fx: &Fixtures) {
        deep_symbols(self, fx);
    }
}

impl Deep for InconsistencyProof {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.verify(&fx.bad_metadata);
        let _ = self.verify(&fx.metadata);
    }
}

impl Deep for floe_api::SubmitInconsistencyRequest {
    fn deep(&self, fx: &Fixtures) {
        self.proof.deep(fx);
    }
}

impl Deep for Fact {
    fn deep(&self, fx: &Fixtures) {
        let _ = (self.blob_id(), self.epoch(), self.digest());
        if let Ok(verified) = self.clone().verify(fx.committee()) {
            let state = BlobState::from_fact(verified);
            for other in &fx.states {
                let _ = state.join(other);
            }
            let _ = (state.status(Epoch(5)), state.status(Epoch(100)));
        }
    }
}

impl Deep for BlobCertificate {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.verify(fx.committee());
        Fact::Certified(self.clone()).deep(fx);
    }
}

impl Deep for InvalidBlobCertificate {
    fn deep(&self, fx: &Fixtures) {
        let _ = self.verify(fx.committee());
        Fact::Invalid(self.clone()).deep(fx);
    }
}

impl<T: floe_consensus::MessageBody> Deep for Signed<T> {
    fn deep(&self, _fx: &Fixtures) {
        let _ = self.verify();
    }
}

impl Deep for Epoch {}

impl Deep for CommitteeProposal {
    fn deep(&self, _fx: &Fixtures) {
        let _ = (self.committee(), self.digest());
    }
}

impl Deep for CommitteeCertificate {
    fn deep(&self, fx: &Fixtures) {
        let _ = CommitteeChain::new(fx.committee().clone()).extend(self.clone());
    }
}

impl Deep for Vec<CommitteeCertificate> {
    fn deep(&self, fx: &Fixtures) {
        let _ = CommitteeChain::verify(fx.committee().clone(), self.iter().cloned());
    }
}

impl Deep for ShardPairsRequest {}
impl Deep for floe_api::GrantUsage {}
impl Deep for floe_api::RegistrationRequest {}

/// What a client does with an owner's registration: verifies it.
impl Deep for Option<BlobCertificate> {
    fn deep(&self, fx: &Fixtures) {
        if let Some(certificate) = self {
            certificate.deep(fx);
        }
    }
}

/// What a new holder does with a page: every pair against the metadata.
impl Deep for ShardPairsPage {
    fn deep(&self, fx: &Fixtures) {
        for (_, pair) in &self.pairs {
            let _ = pair.verify(&fx.metadata);
            let _ = pair.verify(&fx.large.0);
        }
    }
}

/// What a node or client does with relayed notices: each verified against
/// the change into epoch 1.
impl Deep for Vec<Signed<floe_consensus::handoff::ShardsSynced>> {
    fn deep(&self, fx: &Fixtures) {
        let chain = CommitteeChain::new(fx.committee().clone());
        let mut handoff = floe_consensus::handoff::Handoff::new(&chain, Epoch(1));
        for notice in self {
            let _ = handoff.add(notice.clone());
        }
    }
}

impl Deep for BlobStatusAnswer {
    fn deep(&self, fx: &Fixtures) {
        match &self.status {
            BlobStatus::Certified { certificate } | BlobStatus::Expired { certificate } => {
                certificate.deep(fx)
            }
            BlobStatus::Deleted { proof } => Fact::Deleted(proof.clone()).deep(fx),
            BlobStatus::Invalid { certificate } => certificate.deep(fx),
            BlobStatus::Unknown | BlobStatus::Pending => {}
        }
    }
}

impl Deep for Vec<ReconcileMessage> {
    fn deep(&self, fx: &Fixtures) {
        let reply = fx.index.respond(self);
        let _ = reply.messages.iter().map(canonical_bytes).count();
    }
}

impl Deep for ReconcileRequest {
    fn deep(&self, fx: &Fixtures) {
        self.messages.deep(fx);
        for fact in &self.facts {
            fact.deep(fx);
        }
    }
}

impl Deep for ReconcileResponse {
    fn deep(&self, fx: &Fixtures) {
        self.messages.deep(fx);
        for fact in &self.facts {
            fact.deep(fx);
        }
    }
}

/// Calls `$f::<M>($args)` for the method of kind `$kind`, or evaluates
/// `$unknown` for a kind no method has.
macro_rules! with_method {
    ($kind:expr, $unknown:expr, $f:ident($($args:expr),*)) => {
        match $kind {
            GetInfo::KIND => $f::<GetInfo>($($args),*),
            PutMetadata::KIND => $f::<PutMetadata>($($args),*),
            PutPairs::KIND => $f::<PutPairs>($($args),*),
            GetMetadata::KIND => $f::<GetMetadata>($($args),*),
            GetSliver::KIND => $f::<GetSliver>($($args),*),
            GetConfirmation::KIND => $f::<GetConfirmation>($($args),*),
            PutFact::KIND => $f::<PutFact>($($args),*),
            GetStatus::KIND => $f::<GetStatus>($($args),*),
            GetRecoverySymbols::KIND => $f::<GetRecoverySymbols>($($args),*),
            SubmitInconsistency::KIND => $f::<SubmitInconsistency>($($args),*),
            Reconcile::KIND => $f::<Reconcile>($($args),*),
            GetCommitteeChain::KIND => $f::<GetCommitteeChain>($($args),*),
            SignCommitteeProposal::KIND => $f::<SignCommitteeProposal>($($args),*),
            PutCommitteeLink::KIND => $f::<PutCommitteeLink>($($args),*),
            GetShardPairs::KIND => $f::<GetShardPairs>($($args),*),
            PutShardsSynced::KIND => $f::<PutShardsSynced>($($args),*),
            GetHandoff::KIND => $f::<GetHandoff>($($args),*),
            floe_api::PutGrant::KIND => $f::<floe_api::PutGrant>($($args),*),
            floe_api::GetBareSymbols::KIND => $f::<floe_api::GetBareSymbols>($($args),*),
            floe_api::GetRegistration::KIND => $f::<floe_api::GetRegistration>($($args),*),
            _ => $unknown,
        }
    };
}

/// Method kinds, in order.
const KINDS: u16 = 20;

fn decode_deep<T: Wire + Deep>(body: &[u8]) -> Verdict {
    let fx = fixtures()?;
    match roundtrip::<T>(body)? {
        Some(value) => {
            value.deep(fx);
            Ok(Outcome::Accepted)
        }
        None => Ok(Outcome::Rejected),
    }
}

fn request_body<M: Method>(body: &[u8]) -> Verdict
where
    M::Request: Deep,
{
    decode_deep::<M::Request>(body)
}

fn response_body<M: Method>(error: bool, body: &[u8]) -> Verdict
where
    M::Response: Deep,
    M::Error: Deep,
{
    if error {
        decode_deep::<M::Error>(body)
    } else {
        decode_deep::<M::Response>(body)
    }
}

// ---- frame ----

/// A request as the server reads it: header, the method's limit, exactly
/// `length` body bytes, the method's decoder.
fn request_frame<M: Method>(header: &[u8], length: u32, body: &[u8]) -> Verdict
where
    M::Request: Deep,
{
    if length > M::MAX_REQUEST_BYTES || body.len() != length as usize {
        return Ok(Outcome::Rejected);
    }
    let outcome = request_body::<M>(body)?;
    if frame::request_header(M::KIND, length).as_ref() != header {
        return Err("a request header encodes differently".into());
    }
    Ok(outcome)
}

/// A response as the caller of method `M` reads it: header, the limit of
/// its status, exactly `length` body bytes, the decoder of the status.
fn response_frame<M: Method>(status: Status, header: &[u8], length: u32, body: &[u8]) -> Verdict
where
    M::Response: Deep,
    M::Error: Deep,
{
    let limit = match status {
        Status::Ok => M::MAX_RESPONSE_BYTES,
        Status::Failed => M::MAX_RESPONSE_BYTES.max(frame::MAX_ERROR_BYTES),
        Status::Refused | Status::BadRequest | Status::Unavailable => frame::MAX_TEXT_BYTES,
    };
    if length > limit || body.len() != length as usize {
        return Ok(Outcome::Rejected);
    }
    let outcome = match status {
        Status::Ok => response_body::<M>(false, body)?,
        Status::Failed => response_body::<M>(true, body)?,
        _ => {
            let _ = String::from_utf8_lossy(body);
            Outcome::Accepted
        }
    };
    if frame::response_header(status, length).as_ref() != header {
        return Err("a response header encodes differently".into());
    }
    Ok(outcome)
}

/// `0 | request stream` or `1 | kind u16 LE of the call | response stream`.
fn frame_stream(input: &[u8]) -> Verdict {
    match input.split_first() {
        Some((0, stream)) => {
            let Some((header, body)) = stream.split_first_chunk::<{ frame::REQUEST_HEADER_LEN }>()
            else {
                return Ok(Outcome::Rejected);
            };
            let (kind, length) = frame::parse_request_header(header);
            with_method!(
                kind,
                Ok(Outcome::Rejected),
                request_frame(header, length, body)
            )
        }
        Some((1, call)) => {
            let Some((kind, stream)) = call.split_first_chunk::<2>() else {
                return Ok(Outcome::Rejected);
            };
            let Some((header, body)) = stream.split_first_chunk::<{ frame::RESPONSE_HEADER_LEN }>()
            else {
                return Ok(Outcome::Rejected);
            };
            let (status, length) = frame::parse_response_header(header);
            let Some(status) = Status::from_byte(status) else {
                return Ok(Outcome::Rejected);
            };
            with_method!(
                u16::from_le_bytes(*kind),
                Ok(Outcome::Rejected),
                response_frame(status, header, length, body)
            )
        }
        _ => Ok(Outcome::Rejected),
    }
}

fn request_stream<M: Method>(request: &M::Request) -> Result<Vec<u8>, String> {
    let body = request.to_frame().map_err(|e| e.to_string())?;
    let mut out = vec![0];
    out.extend_from_slice(&frame::request_header(M::KIND, body.len() as u32));
    out.extend_from_slice(&body);
    Ok(out)
}

fn response_stream<M: Method>(status: Status, body: &[u8]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&M::KIND.to_le_bytes());
    out.extend_from_slice(&frame::response_header(status, body.len() as u32));
    out.extend_from_slice(body);
    out
}

fn frame_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let mut seeds = Vec::new();
    // Requests: a body of each kind, through its method's frame.
    for (kind, body) in request_bodies(fx)? {
        let mut out = vec![0];
        out.extend_from_slice(&frame::request_header(kind, body.len() as u32));
        out.extend_from_slice(&body);
        seeds.push(out);
    }
    seeds.push(request_stream::<GetInfo>(&())?);
    // Responses of each status.
    for (kind, error, body) in response_bodies(fx)? {
        let status = if error { Status::Failed } else { Status::Ok };
        let mut out = vec![1];
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&frame::response_header(status, body.len() as u32));
        out.extend_from_slice(&body);
        seeds.push(out);
    }
    for status in [Status::Refused, Status::BadRequest, Status::Unavailable] {
        seeds.push(response_stream::<PutPairs>(
            status,
            b"malformed `PutPairs` request",
        ));
    }
    Ok(seeds)
}

// ---- floe-api ----

fn encoded<T: Wire>(value: &T) -> Result<Vec<u8>, String> {
    value
        .to_frame()
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string())
}

fn pairs_request(fx: &Fixtures, large: bool, shards: &[u16]) -> PutPairsRequest {
    let (blob_id, pairs) = if large {
        (fx.large.1, &fx.large.2)
    } else {
        (fx.blob_id, &fx.pairs)
    };
    PutPairsRequest {
        blob_id,
        pairs: shards
            .iter()
            .filter_map(|s| {
                let pair = pairs.get(usize::from(*s))?;
                Some((ShardIndex(*s), pair.clone()))
            })
            .collect(),
    }
}

/// A well-formed body of every request kind (several for some).
fn request_bodies(fx: &Fixtures) -> Result<Vec<(u16, Vec<u8>)>, String> {
    let messages = fx.exchange.first().cloned().unwrap_or_default();
    Ok(vec![
        (GetInfo::KIND, encoded(&())?),
        (
            PutMetadata::KIND,
            encoded(&PutMetadataRequest {
                blob_id: fx.blob_id,
                metadata: fx.metadata.clone(),
            })?,
        ),
        (PutPairs::KIND, encoded(&pairs_request(fx, false, &[3]))?),
        (
            PutPairs::KIND,
            encoded(&pairs_request(fx, false, &[0, 1, 2]))?,
        ),
        (PutPairs::KIND, encoded(&pairs_request(fx, true, &[8, 9]))?),
        (GetMetadata::KIND, encoded(&fx.blob_id)?),
        (
            GetSliver::KIND,
            encoded(&GetSliverRequest {
                blob_id: fx.blob_id,
                shard: ShardIndex(4),
                axis: Axis::Secondary,
            })?,
        ),
        (
            GetConfirmation::KIND,
            encoded(&ConfirmationRequest {
                blob_id: fx.blob_id,
                end_epoch: Epoch(12),
                deletable: true,
                owner: Some(fx.owner.public()),
            })?,
        ),
        (
            PutFact::KIND,
            encoded(&Fact::Certified(fx.certificate.clone()))?,
        ),
        (
            PutFact::KIND,
            encoded(&Fact::Deleted(Box::new(fx.deletion.clone())))?,
        ),
        (GetStatus::KIND, encoded(&fx.blob_id)?),
        (
            GetRecoverySymbols::KIND,
            encoded(&RecoveryRequest {
                blob_id: fx.blob_id,
                targets: vec![
                    (Axis::Primary, SliverIndex(2)),
                    (Axis::Secondary, SliverIndex(7)),
                ],
            })?,
        ),
        (
            floe_api::GetBareSymbols::KIND,
            encoded(&RecoveryRequest {
                blob_id: fx.blob_id,
                targets: vec![(Axis::Primary, SliverIndex(2))],
            })?,
        ),
        (SubmitInconsistency::KIND, encoded(&fx.proof)?),
        (
            Reconcile::KIND,
            encoded(&ReconcileRequest {
                messages,
                facts: vec![Fact::Invalid(fx.invalid.clone())],
                want: fx.other_items.iter().take(3).copied().collect(),
            })?,
        ),
        (GetCommitteeChain::KIND, encoded(&Epoch(0))?),
        (SignCommitteeProposal::KIND, encoded(&fx.link.message.body)?),
        (PutCommitteeLink::KIND, encoded(&fx.link)?),
        (
            GetShardPairs::KIND,
            encoded(&ShardPairsRequest {
                epoch: Epoch(1),
                shard: floe_codec::ShardIndex(0),
                after: Some(fx.blob_id),
            })?,
        ),
        (PutShardsSynced::KIND, encoded(&synced_notice(fx))?),
        (GetHandoff::KIND, encoded(&Epoch(1))?),
        (floe_api::PutGrant::KIND, encoded(&storage_grant(fx))?),
        (
            floe_api::GetRegistration::KIND,
            encoded(&floe_api::RegistrationRequest {
                blob_id: fx.blob_id,
                owner: fx.owner.public(),
            })?,
        ),
    ])
}

/// A well-formed body of every response kind, and errors: `(kind, is
/// error, body)`.
fn response_bodies(fx: &Fixtures) -> Result<Vec<(u16, bool, Vec<u8>)>, String> {
    let answer = |status| BlobStatusAnswer {
        epoch: Epoch(5),
        status,
    };
    let symbols = fx.proof.symbols.clone();
    let messages = fx.exchange.get(1).cloned().unwrap_or_default();
    let mut bodies = vec![
        (
            GetInfo::KIND,
            false,
            encoded(&NodeInfo {
                node_id: "node-0".into(),
                epoch: Epoch(3),
                n_shards: 10,
                shards: vec![ShardIndex(0), ShardIndex(1), ShardIndex(2)],
                drift: 1,
                facts_known: 300,
                stored_bytes: 1 << 20,
                max_blob_size: 64 << 20,
            })?,
        ),
        (PutMetadata::KIND, false, encoded(&())?),
        (GetMetadata::KIND, false, encoded(&fx.metadata)?),
        (GetMetadata::KIND, false, encoded(&fx.large.0)?),
        (GetSliver::KIND, false, encoded(&fx.pairs[1].primary)?),
        (GetSliver::KIND, false, encoded(&fx.large.2[4].secondary)?),
        (GetConfirmation::KIND, false, encoded(&fx.confirmation)?),
        (
            PutFact::KIND,
            false,
            encoded(&answer(BlobStatus::Certified {
                certificate: fx.certificate.clone(),
            }))?,
        ),
        (
            GetStatus::KIND,
            false,
            encoded(&answer(BlobStatus::Deleted {
                proof: Box::new(fx.deletion.clone()),
            }))?,
        ),
        (
            GetStatus::KIND,
            false,
            encoded(&answer(BlobStatus::Invalid {
                certificate: fx.invalid.clone(),
            }))?,
        ),
        (
            GetStatus::KIND,
            false,
            encoded(&answer(BlobStatus::Pending))?,
        ),
        (GetRecoverySymbols::KIND, false, encoded(&symbols)?),
        (
            floe_api::GetBareSymbols::KIND,
            false,
            encoded(
                &fx.pairs[0]
                    .secondary
                    .bare_symbols(&fx.metadata, &[SliverIndex(2)])
                    .map_err(|x| x.to_string())?,
            )?,
        ),
        (SubmitInconsistency::KIND, false, encoded(&fx.attestation)?),
        (
            GetCommitteeChain::KIND,
            false,
            encoded(&vec![fx.link.clone()])?,
        ),
        (SignCommitteeProposal::KIND, false, encoded(&fx.handover)?),
        (PutCommitteeLink::KIND, false, encoded(&Epoch(1))?),
        (
            GetShardPairs::KIND,
            false,
            encoded(&ShardPairsPage {
                pairs: vec![(fx.blob_id, fx.pairs[0].clone())],
                done: true,
            })?,
        ),
        (PutShardsSynced::KIND, false, encoded(&())?),
        (GetHandoff::KIND, false, encoded(&vec![synced_notice(fx)])?),
        (
            floe_api::GetRegistration::KIND,
            false,
            encoded(&Some(fx.deletable.clone()))?,
        ),
        (
            floe_api::GetRegistration::KIND,
            false,
            encoded(&None::<BlobCertificate>)?,
        ),
        (
            floe_api::PutGrant::KIND,
            false,
            encoded(&floe_api::GrantUsage {
                usage: 1_000,
                limit: 3_000,
            })?,
        ),
        (
            Reconcile::KIND,
            false,
            encoded(&ReconcileResponse {
                messages,
                facts: vec![Fact::Certified(fx.deletable.clone())],
                want: fx.other_items.iter().skip(5).take(2).copied().collect(),
                unsent: fx.other_items.iter().take(1).copied().collect(),
            })?,
        ),
    ];
    let errors = [
        ApiError::NotFound {
            blob_id: fx.blob_id,
            what: "metadata".into(),
        },
        ApiError::Incomplete {
            blob_id: fx.blob_id,
            missing: vec![ShardIndex(3), ShardIndex(9)],
        },
        ApiError::NotMyShard {
            blob_id: fx.blob_id,
            shard: ShardIndex(7),
        },
        ApiError::Limit("too many ranges".into()),
        ApiError::NotAdmitted(floe_api::Admission::OverBudget {
            client: fx.owner.public(),
            blob_id: fx.blob_id,
            blob_bytes: 1_000,
            limit: 3_000,
            usage: 2_500,
        }),
    ];
    for (i, error) in errors.iter().enumerate() {
        bodies.push((i as u16 * 3 % KINDS + 1, true, encoded(error)?));
    }
    Ok(bodies)
}

/// `kind selector | body`: the request type of method `selector % KINDS + 1`.
fn api_request(input: &[u8]) -> Verdict {
    let Some((selector, body)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    let kind = u16::from(*selector) % KINDS + 1;
    with_method!(kind, Ok(Outcome::Rejected), request_body(body))
}

fn api_request_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    Ok(request_bodies(fx)?
        .into_iter()
        .map(|(kind, body)| [vec![(kind - 1) as u8], body].concat())
        .collect())
}

/// `selector | body`: the response type of method `selector % KINDS + 1`, or
/// its error type when the selector's high bit is set.
fn api_response(input: &[u8]) -> Verdict {
    let Some((selector, body)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    let kind = u16::from(selector & 0x7f) % KINDS + 1;
    let error = selector & 0x80 != 0;
    with_method!(kind, Ok(Outcome::Rejected), response_body(error, body))
}

fn api_response_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    Ok(response_bodies(fx)?
        .into_iter()
        .map(|(kind, error, body)| {
            let selector = (kind - 1) as u8 | if error { 0x80 } else { 0 };
            [vec![selector], body].concat()
        })
        .collect())
}

/// PutPairs request frames alone.
fn put_pairs(input: &[u8]) -> Verdict {
    decode_deep::<PutPairsRequest>(input)
}

fn put_pairs_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    Ok(vec![
        encoded(&pairs_request(fx, false, &[]))?,
        encoded(&pairs_request(fx, false, &[5]))?,
        encoded(&pairs_request(fx, false, &[0, 1, 2, 3]))?,
        encoded(&pairs_request(fx, true, &[0]))?,
        encoded(&pairs_request(fx, true, &[6, 7]))?,
    ])
}

// ---- committee files ----

fn committee_file(input: &[u8]) -> Verdict {
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(Outcome::Rejected);
    };
    let Ok(file) = CommitteeFile::from_toml(text) else {
        return Ok(Outcome::Rejected);
    };
    // TOML has many spellings of one value: what must hold is that the
    // file written back reads as the same committee, and writes the same.
    let written = file.to_toml();
    let again = CommitteeFile::from_toml(&written)
        .map_err(|e| format!("a parsed committee file, written back, fails to parse: {e}"))?;
    if again != file {
        return Err("a parsed committee file, written back, reads differently".into());
    }
    if again.to_toml() != written {
        return Err("a committee file written twice differs".into());
    }
    let committee = &file.committee;
    let _ = (committee.quorum_threshold(), committee.encoding());
    let _ = file.clock.epoch_at(u64::MAX);
    Ok(Outcome::Accepted)
}

fn committee_file_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let written = fx.file.to_toml();
    // The same committee spelled by hand: inline tables, comments, other
    // integer forms.
    let mut by_hand = String::from("epoch = 0x3\nn_shards = 10\nclock = { genesis_unix_ms = 1_764_028_800_000, epoch_duration_ms = 3600000 }\n");
    for member in fx.committee().members() {
        by_hand.push_str(&format!(
            "[[members]] # {}\nnode_id = '{}'\nprotocol_key = \"{}\"\nnetwork_key = \"{}\"\naddress = \"{}\"\nshards = [{}]\n",
            member.node_id,
            member.node_id,
            member.protocol_key,
            member.network_key,
            member.address,
            member
                .shards
                .iter()
                .map(|s| s.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(vec![written.into_bytes(), by_hand.into_bytes()])
}

// ---- store ----

/// The epoch the fixtures' deletable certificate was certified in.
const EPOCH_OF_DELETABLE: u64 = crate::fixtures::EPOCH.0;

/// Tables [`store_values`] reads.
const STORE_TABLES: u8 = 5;

/// The stored value `input` stands for: after a selector byte with the
/// high bit set, `format | payload` sealed with a correct checksum (so
/// mutations reach the payload's decoder, as a value written wrong by
/// another version would); otherwise the stored bytes as they are.
fn stored_value(reseal: bool, rest: &[u8]) -> Vec<u8> {
    match rest.split_first() {
        Some((format, payload)) if reseal => envelope::seal_parts_as(*format, &[payload]),
        _ => rest.to_vec(),
    }
}

fn same_bytes(what: &str, stored: &[u8], again: &[u8]) -> Verdict {
    if stored == again {
        Ok(Outcome::Accepted)
    } else {
        Err(format!(
            "a stored {what} decodes but re-encodes differently\n  stored {}\n  again  {}",
            short_hex(stored),
            short_hex(again)
        ))
    }
}

fn store_values(input: &[u8]) -> Verdict {
    let fx = fixtures()?;
    let Some((selector, rest)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    let stored = stored_value(selector & 0x80 != 0, rest);
    let key = fx.blob_id.0;
    match (selector & 0x7f) % STORE_TABLES {
        0 => match records::decode::<BlobMetadata>("metadata", &key, &stored) {
            Ok(metadata) => {
                metadata.deep(fx);
                same_bytes(
                    "metadata",
                    &stored,
                    &envelope::seal(&canonical_bytes(&metadata)),
                )
            }
            Err(_) => Ok(Outcome::Rejected),
        },
        1 => match records::decode::<Promise>("promises", &key, &stored) {
            Ok(promise) => {
                for state in &fx.states {
                    let _ = promise.binds(state, Epoch(10));
                }
                same_bytes(
                    "promise",
                    &stored,
                    &envelope::seal(&canonical_bytes(&promise)),
                )
            }
            Err(_) => Ok(Outcome::Rejected),
        },
        2 => match records::decode_state(&fx.blob_id, &stored) {
            Ok(state) => {
                let _ = (
                    state.status(Epoch(5)),
                    state.facts(),
                    state.available_until(),
                );
                let bytes = state.to_bytes();
                if stored.first() == Some(&envelope::FORMAT_STATE) {
                    same_bytes(
                        "state",
                        &stored,
                        &envelope::seal_parts_as(envelope::FORMAT_STATE, &[&bytes]),
                    )
                } else {
                    // An earlier layout: converted, so it must read back
                    // as the same state in the current one.
                    match BlobState::from_bytes(fx.blob_id, &bytes) {
                        Ok(again) if again == state => Ok(Outcome::Accepted),
                        _ => Err("a legacy state converted does not read back".into()),
                    }
                }
            }
            Err(_) => Ok(Outcome::Rejected),
        },
        3 => match records::decode_arrival(&fx.blob_id, &stored) {
            Ok(arrival) => same_bytes("arrival", &stored, &envelope::seal(&arrival.to_le_bytes())),
            Err(_) => Ok(Outcome::Rejected),
        },
        _ => match envelope::open("node", b"epoch", &stored) {
            Ok(payload) => same_bytes("node value", &stored, &envelope::seal(payload)),
            Err(_) => Ok(Outcome::Rejected),
        },
    }
}

fn store_values_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let mut promise = Promise {
        permanent: Some(Epoch(9)),
        ..Promise::default()
    };
    promise.deletable.insert(
        fx.owner.public(),
        vec![(Epoch(3), Epoch(12)), (Epoch(5), Epoch(8))],
    );
    let mut values: Vec<(u8, u8, Vec<u8>)> = vec![
        (0, envelope::FORMAT, canonical_bytes(&fx.metadata)),
        (0, envelope::FORMAT, canonical_bytes(&fx.large.0)),
        (1, envelope::FORMAT, canonical_bytes(&promise)),
        (1, envelope::FORMAT, canonical_bytes(&Promise::default())),
        (
            3,
            envelope::FORMAT,
            1_764_028_812_345u64.to_le_bytes().to_vec(),
        ),
        (4, envelope::FORMAT, 7u64.to_le_bytes().to_vec()),
    ];
    for state in &fx.states {
        values.push((2, envelope::FORMAT_STATE, state.to_bytes()));
    }
    // States in the earlier layout (`LegacyProofs` in floe-consensus),
    // written field by field: `pending ‖ permanent ‖ owners: map<key,
    // (live: map<epoch, certificate> ‖ deletion ‖ deleted)> ‖ invalid`.
    let some = |bytes: Vec<u8>| [vec![1], bytes].concat();
    let owner = fx.owner.public().to_bytes().to_vec();
    let live_only = [
        vec![1],
        some(canonical_bytes(&fx.certificate)),
        vec![1],
        owner.clone(),
        vec![1],
        EPOCH_OF_DELETABLE.to_le_bytes().to_vec(),
        canonical_bytes(&fx.deletable),
        vec![0, 0, 0],
    ]
    .concat();
    let deleted = [
        vec![0, 0, 1],
        owner,
        vec![0],
        some(canonical_bytes(&fx.deletion.deletion)),
        some(canonical_bytes(&fx.deletion.certificate)),
        vec![0],
    ]
    .concat();
    values.push((2, envelope::FORMAT, live_only));
    values.push((2, envelope::FORMAT, deleted));
    let mut seeds = Vec::new();
    for (table, format, payload) in values {
        seeds.push([vec![table], envelope::seal_parts_as(format, &[&payload])].concat());
        seeds.push([vec![table | 0x80, format], payload].concat());
    }
    Ok(seeds)
}

/// `selector | stored` or, with the selector's high bit, `selector |
/// format | payload` (resealed): a `slivers` value.
fn pair_record(input: &[u8]) -> Verdict {
    let Some((selector, rest)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    let stored = stored_value(selector & 0x80 != 0, rest);
    match records::decode_sliver_record(b"key", &stored) {
        Ok(record) => same_bytes("sliver record", &stored, &record.to_bytes()),
        Err(_) => Ok(Outcome::Rejected),
    }
}

fn pair_record_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let mut stored = Vec::new();
    for (offset, pair) in [(0, &fx.large.2[0]), (4096, &fx.large.2[3])] {
        for (sliver, at) in [
            (&pair.primary, offset),
            (&pair.secondary, offset + pair.primary.data.len() as u64),
        ] {
            let checksum = records::FileChecksum::of(&sliver.data);
            stored.push(records::file_place(sliver, at, checksum));
        }
    }
    stored.push(
        SliverRecord::Inline {
            index: fx.pairs[2].primary.index,
            data: &fx.pairs[2].primary.data,
        }
        .to_bytes(),
    );
    // A record of an earlier version: a 16-byte BLAKE3 checksum, not a CRC.
    let sliver = &fx.large.2[1].primary;
    stored.push(
        SliverRecord::InFile(records::FilePlace {
            file: records::PairFile::Own,
            index: sliver.index,
            offset: 8192,
            length: sliver.data.len() as u64,
            checksum: records::FileChecksum::Blake3(envelope::checksum(&sliver.data)),
        })
        .to_bytes(),
    );
    let mut seeds = Vec::new();
    for value in stored {
        seeds.push([vec![0], value.clone()].concat());
        let (format, payload) = (value[0], &value[envelope::HEADER..]);
        seeds.push([vec![0x80, format], payload.to_vec()].concat());
    }
    Ok(seeds)
}

// ---- codec and consensus ----

fn inconsistency_proof(input: &[u8]) -> Verdict {
    decode_deep::<InconsistencyProof>(input)
}

fn inconsistency_proof_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    // A "proof" of a consistent blob (verification answers Consistent),
    // and a secondary target.
    let mut consistent = Vec::new();
    for pair in &fx.pairs {
        if let Ok(symbol) = pair.secondary.recovery_symbol(&fx.metadata, SliverIndex(2)) {
            consistent.push(symbol);
        }
    }
    consistent.sort_by_key(|s| s.source_index);
    consistent.truncate(floe_codec::symbols_needed(&fx.metadata, Axis::Primary));
    let mut secondary = Vec::new();
    for pair in &fx.pairs {
        if let Ok(symbol) = pair.primary.recovery_symbol(&fx.metadata, SliverIndex(5)) {
            secondary.push(symbol);
        }
    }
    secondary.sort_by_key(|s| s.source_index);
    secondary.truncate(floe_codec::symbols_needed(&fx.metadata, Axis::Secondary));
    Ok(vec![
        encoded(&fx.proof)?,
        encoded(&InconsistencyProof {
            blob_id: fx.blob_id,
            target_axis: Axis::Primary,
            target: SliverIndex(2),
            symbols: consistent,
        })?,
        encoded(&InconsistencyProof {
            blob_id: fx.blob_id,
            target_axis: Axis::Secondary,
            target: SliverIndex(5),
            symbols: secondary,
        })?,
    ])
}

/// Types [`certificate`] reads.
const CERTIFICATE_TYPES: u8 = 6;

/// `selector | body`: a certificate, fact or signed message.
fn certificate(input: &[u8]) -> Verdict {
    let Some((selector, body)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    match selector % CERTIFICATE_TYPES {
        0 => decode_deep::<BlobCertificate>(body),
        1 => decode_deep::<InvalidBlobCertificate>(body),
        2 => decode_deep::<Fact>(body),
        3 => decode_deep::<Signed<StorageConfirmation>>(body),
        4 => decode_deep::<Signed<InvalidBlobAttestation>>(body),
        _ => decode_deep::<Signed<BlobDeletion>>(body),
    }
}

fn certificate_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let mut seeds = vec![
        [vec![0], encoded(&fx.certificate)?].concat(),
        [vec![0], encoded(&fx.deletable)?].concat(),
        [vec![1], encoded(&fx.invalid)?].concat(),
        [vec![3], encoded(&fx.confirmation)?].concat(),
        [vec![4], encoded(&fx.attestation)?].concat(),
        [vec![5], encoded(&fx.deletion.deletion)?].concat(),
    ];
    for fact in fx.facts() {
        seeds.push([vec![2], encoded(&fact)?].concat());
    }
    Ok(seeds)
}

/// A batch of digest messages, answered by the fixture index.
fn digest(input: &[u8]) -> Verdict {
    decode_deep::<Vec<ReconcileMessage>>(input)
}

fn digest_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    fx.exchange.iter().map(encoded).collect()
}

// ---- gateway ----

/// Blob lengths [`gateway_range`] checks against.
const RANGE_LENGTHS: [u64; 8] = [0, 1, 2, 99, 100, 1 << 20, u32::MAX as u64 + 5, u64::MAX];

/// `length selector | Range header value`: the range the gateway serves
/// must lie inside the blob (it slices the blob with it).
fn gateway_range(input: &[u8]) -> Verdict {
    let Some((selector, value)) = input.split_first() else {
        return Ok(Outcome::Rejected);
    };
    let length = RANGE_LENGTHS[usize::from(*selector) % RANGE_LENGTHS.len()];
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return Ok(Outcome::Rejected);
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::RANGE, value);
    match floe_gateway::requested_range(&headers, BlobId([7; 32]), length) {
        Ok(Some(range)) => {
            if range.start() > range.end() || *range.end() >= length {
                return Err(format!(
                    "range {range:?} served from a blob of {length} bytes"
                ));
            }
            Ok(Outcome::Accepted)
        }
        Ok(None) => Ok(Outcome::Accepted),
        Err(_) => Ok(Outcome::Rejected),
    }
}

fn gateway_range_seeds() -> Result<Vec<Vec<u8>>, String> {
    let seeds: [(u8, &str); 10] = [
        (4, "bytes=0-99"),
        (4, "bytes=10-"),
        (4, "bytes=-5"),
        (3, "bytes=0-0, 5-9"),
        (5, "bytes=100-200"),
        (2, "bytes=1-1"),
        (1, "bytes=0-"),
        (5, "bytes=1048575-"),
        (6, "bytes=4294967295-4294967299"),
        (7, "bytes=-18446744073709551615"),
    ];
    Ok(seeds
        .iter()
        .map(|(length, value)| [vec![*length], value.as_bytes().to_vec()].concat())
        .collect())
}

/// `0 | query string` of a store, `2 | query string` of a read, or `1 |
/// path segment` naming a blob.
fn gateway_query(input: &[u8]) -> Verdict {
    match input.split_first() {
        Some((selector @ (0 | 2), query)) => {
            let Ok(query) = std::str::from_utf8(query) else {
                return Ok(Outcome::Rejected);
            };
            let Ok(uri) = format!("/v1/blobs?{query}").parse::<Uri>() else {
                return Ok(Outcome::Rejected);
            };
            Ok(match floe_gateway::check_query(&uri, *selector == 0) {
                Ok(()) => Outcome::Accepted,
                Err(_) => Outcome::Rejected,
            })
        }
        Some((1, segment)) => {
            let Ok(text) = std::str::from_utf8(segment) else {
                return Ok(Outcome::Rejected);
            };
            match floe_gateway::parse_blob_id(text) {
                Ok(blob_id) => match blob_id.to_string().parse::<BlobId>() {
                    Ok(again) if again == blob_id => Ok(Outcome::Accepted),
                    _ => Err(format!("blob ID {blob_id} does not parse back")),
                },
                Err(_) => Ok(Outcome::Rejected),
            }
        }
        _ => Ok(Outcome::Rejected),
    }
}

fn gateway_query_seeds() -> Result<Vec<Vec<u8>>, String> {
    let fx = fixtures()?;
    let queries = [
        (0, "epochs=5"),
        (0, "epochs=1&deletable=true"),
        (0, "permanent=true&force=false&encoding_type=RedStuff"),
        (0, ""),
        (
            0,
            "epochs=184467440737095516150&quilt_version=v1&share=false",
        ),
        (2, "strict_consistency_check=true&download=x%20y"),
        (2, "skip_consistency_check=false"),
    ];
    let mut seeds: Vec<Vec<u8>> = queries
        .iter()
        .map(|(selector, q)| [vec![*selector], q.as_bytes().to_vec()].concat())
        .collect();
    seeds.push([vec![1], fx.blob_id.to_string().into_bytes()].concat());
    seeds.push([vec![1], format!(" {} ", fx.large.1).into_bytes()].concat());
    Ok(seeds)
}

/// A synced notice of the change into epoch 1 (kinds 16 and 17).
fn storage_grant(fx: &Fixtures) -> floe_consensus::Signed<floe_consensus::grant::StorageGrant> {
    floe_consensus::Signed::sign(
        floe_consensus::ProtocolMessage::new(
            Epoch(0),
            floe_consensus::grant::StorageGrant {
                client: fx.owner.public(),
                bytes: 10 << 30,
                until_epoch: Epoch(40),
                max_blob_size: 1 << 30,
                expires_ms: 1_800_000_000_000,
            },
        ),
        &fx.owner,
    )
}

fn synced_notice(fx: &Fixtures) -> floe_consensus::Signed<floe_consensus::handoff::ShardsSynced> {
    floe_consensus::Signed::sign(
        floe_consensus::ProtocolMessage::new(
            Epoch(1),
            floe_consensus::handoff::ShardsSynced {
                shards: vec![floe_codec::ShardIndex(0), floe_codec::ShardIndex(3)],
            },
        ),
        &fx.owner,
    )
}
