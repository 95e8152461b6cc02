//! Well-formed values built from the real types, once per process: a
//! committee of four members over ten shards, blobs encoded for it, signed
//! certificates and facts, an inconsistency proof, digest indexes. The
//! seeds of every target are encodings of these, and some targets check
//! decoded values against them (certificates against the committee,
//! slivers and proofs against the metadata).

use std::sync::OnceLock;

use floe_codec::{
    encode, recover_sliver, Axis, BlobId, BlobMetadata, EncodingConfig, InconsistencyProof,
    RecoveryError, RecoverySymbol, ShardIndex, SliverIndex, SliverPair,
};
use floe_consensus::{
    BlobCertificate, BlobDeletion, BlobState, CertificateBuilder, Committee, CommitteeFile,
    DeletionProof, DigestIndex, Epoch, EpochClock, Fact, InvalidBlobAttestation,
    InvalidBlobCertificate, ItemId, KeyPair, Member, MessageBody, NodeId, ProtocolMessage,
    ReconcileMessage, Signed, StorageConfirmation,
};

/// Shards of the fixture committee.
pub const N_SHARDS: u16 = 10;
/// The fixture committee's epoch.
pub const EPOCH: Epoch = Epoch(3);

/// The fixture values.
#[derive(Debug)]
pub struct Fixtures {
    /// The owner of the deletable registration.
    pub owner: KeyPair,
    /// The committee file (committee of epoch [`EPOCH`] and its clock).
    pub file: CommitteeFile,
    /// A blob of 300 bytes: its metadata, ID and pairs.
    pub metadata: BlobMetadata,
    /// Its blob ID.
    pub blob_id: BlobId,
    /// Its sliver pairs, by pair index.
    pub pairs: Vec<SliverPair>,
    /// A larger blob (5000 bytes: two-byte ULEB128 sliver lengths).
    pub large: (BlobMetadata, BlobId, Vec<SliverPair>),
    /// Metadata whose primary hash of pair 2 is wrong, so the blob it
    /// names is inconsistently encoded.
    pub bad_metadata: BlobMetadata,
    /// The proof of that inconsistency.
    pub proof: InconsistencyProof,
    /// A permanent storage certificate of the blob.
    pub certificate: BlobCertificate,
    /// A deletable certificate owned by [`Fixtures::owner`].
    pub deletable: BlobCertificate,
    /// The owner's deletion, with the deletable certificate.
    pub deletion: DeletionProof,
    /// An invalid-blob certificate of the inconsistent blob.
    pub invalid: InvalidBlobCertificate,
    /// Member 0's confirmation of the permanent registration.
    pub confirmation: Signed<StorageConfirmation>,
    /// Member 0's attestation of the inconsistent blob.
    pub attestation: Signed<InvalidBlobAttestation>,
    /// The committee of the next epoch, certified by this one.
    pub link: floe_consensus::chain::CommitteeCertificate,
    /// Member 0's signature of that proposal.
    pub handover: Signed<floe_consensus::chain::CommitteeProposal>,
    /// One side of an anti-entropy exchange (what a node holds).
    pub index: DigestIndex,
    /// Messages the other side sends over a whole exchange with it.
    pub exchange: Vec<Vec<ReconcileMessage>>,
    /// The items the other side holds.
    pub other_items: Vec<ItemId>,
    /// The blob's state after each fact about it, and after all of them.
    pub states: Vec<BlobState>,
}

impl Fixtures {
    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.file.committee
    }

    /// Every fact of the fixtures.
    pub fn facts(&self) -> Vec<Fact> {
        vec![
            Fact::Certified(self.certificate.clone()),
            Fact::Certified(self.deletable.clone()),
            Fact::Deleted(Box::new(self.deletion.clone())),
            Fact::Invalid(self.invalid.clone()),
        ]
    }
}

/// The state of `blob_id` after each of `facts` about it, and after all.
fn states_of(committee: &Committee, blob_id: BlobId, facts: Vec<Fact>) -> Vec<BlobState> {
    let mut states = Vec::new();
    let mut all: Option<BlobState> = None;
    for fact in facts {
        if fact.blob_id() != blob_id {
            continue;
        }
        let Ok(verified) = fact.verify(committee) else {
            continue;
        };
        let state = BlobState::from_fact(verified);
        all = Some(match all {
            Some(all) => all.join(&state).unwrap_or(all),
            None => state.clone(),
        });
        states.push(state);
    }
    states.extend(all);
    states
}

/// The fixtures, built on first use.
pub fn fixtures() -> Result<&'static Fixtures, String> {
    static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    FIXTURES
        .get_or_init(build)
        .as_ref()
        .map_err(|e| format!("the fuzz fixtures could not be built: {e}"))
}

fn certify<T: MessageBody>(
    committee: &Committee,
    signers: &[&KeyPair],
    body: T,
) -> Result<floe_consensus::Certificate<T>, String> {
    let message = ProtocolMessage::new(EPOCH, body);
    let mut builder = CertificateBuilder::new(committee, message.clone());
    for key in signers {
        builder
            .add(&Signed::sign(message.clone(), key))
            .map_err(|e| e.to_string())?;
    }
    builder.certificate().map_err(|e| e.to_string())
}

fn build() -> Result<Fixtures, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let keys: Vec<(KeyPair, KeyPair)> = (0..4u8)
        .map(|i| {
            (
                KeyPair::from_seed(&[i + 1; 32]),
                KeyPair::from_seed(&[i + 101; 32]),
            )
        })
        .collect();
    let owner = KeyPair::from_seed(&[77; 32]);
    let shards: [&[u16]; 4] = [&[0, 1, 2], &[3, 4, 5], &[6, 7], &[8, 9]];
    let members = keys
        .iter()
        .zip(shards)
        .enumerate()
        .map(|(i, ((protocol, network), shards))| Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: protocol.public(),
            network_key: network.public(),
            address: format!("127.0.0.1:{}", 7100 + i),
            shards: shards.iter().map(|s| ShardIndex(*s)).collect(),
        })
        .collect();
    let committee = Committee::new(EPOCH, N_SHARDS, members).map_err(|x| e(&x))?;
    let file = CommitteeFile {
        committee,
        clock: EpochClock {
            genesis_unix_ms: 1_764_028_800_000,
            epoch_duration_ms: 3_600_000,
        },
    };
    let committee = &file.committee;
    let config = EncodingConfig::new(N_SHARDS).map_err(|x| e(&x))?;
    let blob: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    let (metadata, blob_id, pairs) = encode(&config, &blob).map_err(|x| e(&x))?;
    let large_blob: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 1) as u8).collect();
    let large = encode(&config, &large_blob).map_err(|x| e(&x))?;

    // Inconsistent: the primary hash of pair 2 does not match its row, so
    // rebuilding primary sliver 2 from the secondaries proves it.
    let mut hashes = metadata.hashes().to_vec();
    let target = SliverIndex(2);
    if let Some(pair) = hashes.get_mut(2) {
        pair.primary.0[0] ^= 1;
    }
    let bad_metadata = BlobMetadata::new(metadata.unencoded_length(), hashes).map_err(|x| e(&x))?;
    let mut symbols: Vec<RecoverySymbol> = Vec::new();
    for pair in &pairs {
        symbols.push(
            pair.secondary
                .recovery_symbol(&bad_metadata, target)
                .map_err(|x| e(&x))?,
        );
    }
    let proof = match recover_sliver(&bad_metadata, Axis::Primary, target, symbols) {
        Err(RecoveryError::Inconsistent(proof)) => *proof,
        other => {
            return Err(format!(
                "the tampered blob did not prove inconsistent: {other:?}"
            ))
        }
    };
    proof.verify(&bad_metadata).map_err(|x| e(&x))?;

    let (p0, p1, p2) = (&keys[0].0, &keys[1].0, &keys[2].0);
    let confirmation_body = StorageConfirmation {
        blob_id,
        end_epoch: Epoch(9),
        deletable: false,
        owner: None,
    };
    let certificate = certify(committee, &[p0, p1, p2], confirmation_body.clone())?;
    let deletable = certify(
        committee,
        &[p0, p1, p2],
        StorageConfirmation {
            blob_id,
            end_epoch: Epoch(12),
            deletable: true,
            owner: Some(owner.public()),
        },
    )?;
    let deletion = DeletionProof {
        deletion: Signed::sign(
            ProtocolMessage::new(Epoch(4), BlobDeletion { blob_id }),
            &owner,
        ),
        certificate: deletable.clone(),
    };
    let attestation_body = InvalidBlobAttestation {
        blob_id: bad_metadata.blob_id(),
    };
    let invalid = certify(committee, &[p0, p1], attestation_body.clone())?;
    let confirmation = Signed::sign(ProtocolMessage::new(EPOCH, confirmation_body), p0);
    let attestation = Signed::sign(ProtocolMessage::new(EPOCH, attestation_body), p0);
    let proposal = floe_consensus::chain::CommitteeProposal::of(committee, Epoch(EPOCH.0 + 1));
    let link = certify(committee, &[p0, p1, p2], proposal.clone())?;
    let handover = Signed::sign(ProtocolMessage::new(EPOCH, proposal), p0);

    // Two sides that share most items: 300 in common, 20 only here, 20
    // only there, so an exchange splits ranges, lists and diffs.
    let item = |i: u32| ItemId {
        blob_id: BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        fact: *blake3::hash(&(i + 1_000_000).to_le_bytes()).as_bytes(),
    };
    let index = DigestIndex::from_items((0..320).map(item));
    let other_items: Vec<ItemId> = (0..300).chain(320..340).map(item).collect();
    let other = DigestIndex::from_items(other_items.iter().copied());
    let mut exchange = Vec::new();
    let mut in_flight = vec![other.open()];
    let mut at_index = true;
    while !in_flight.is_empty() && exchange.len() < 32 {
        let reply = if at_index {
            index.respond(&in_flight)
        } else {
            other.respond(&in_flight)
        };
        exchange.push(in_flight);
        in_flight = reply.messages;
        at_index = !at_index;
    }
    exchange.retain(|messages| !messages.is_empty());

    let mut fixtures = Fixtures {
        owner,
        file,
        metadata,
        blob_id,
        pairs,
        large,
        bad_metadata,
        proof,
        certificate,
        deletable,
        deletion,
        invalid,
        confirmation,
        attestation,
        link,
        handover,
        index,
        exchange,
        other_items,
        states: Vec::new(),
    };
    fixtures.states = states_of(fixtures.committee(), blob_id, fixtures.facts());
    if fixtures.states.len() < 4 {
        return Err(format!(
            "only {} states could be built from the facts",
            fixtures.states.len()
        ));
    }
    Ok(fixtures)
}
