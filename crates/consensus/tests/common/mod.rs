//! Committees and keys for tests.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use floe_codec::{BlobId, ShardIndex};
use floe_consensus::*;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

pub struct TestCommittee {
    pub committee: Committee,
    pub protocol_keys: Vec<KeyPair>,
}

/// `members` members over `n` shards; shards spread evenly, or at random
/// (each member at least one) when `seed` is given.
pub fn committee(n: u16, members: usize, seed: Option<u64>) -> TestCommittee {
    committee_in(Epoch(0), n, members, seed)
}

pub fn committee_in(epoch: Epoch, n: u16, members: usize, seed: Option<u64>) -> TestCommittee {
    let mut rng = StdRng::seed_from_u64(seed.unwrap_or(1));
    let mut holders: Vec<usize> = (0..usize::from(n)).map(|s| s % members).collect();
    if seed.is_some() {
        // Random assignment, keeping one shard per member.
        holders = (0..usize::from(n))
            .map(|s| {
                if s < members {
                    s
                } else {
                    rng.gen_range(0..members)
                }
            })
            .collect();
        holders.shuffle(&mut rng);
    }
    let protocol_keys: Vec<KeyPair> = (0..members).map(|_| KeyPair::generate(&mut rng)).collect();
    let network_keys: Vec<KeyPair> = (0..members).map(|_| KeyPair::generate(&mut rng)).collect();
    let members = (0..members)
        .map(|i| Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: protocol_keys[i].public(),
            network_key: network_keys[i].public(),
            address: format!("127.0.0.1:{}", 7000 + i),
            shards: holders
                .iter()
                .enumerate()
                .filter(|(_, h)| **h == i)
                .map(|(s, _)| ShardIndex(s as u16))
                .collect(),
        })
        .collect();
    TestCommittee {
        committee: Committee::new(epoch, n, members).unwrap(),
        protocol_keys,
    }
}

pub fn confirmation(epoch: u64, blob: u8, end_epoch: u64) -> ProtocolMessage<StorageConfirmation> {
    ProtocolMessage::new(
        Epoch(epoch),
        StorageConfirmation {
            blob_id: BlobId([blob; 32]),
            end_epoch: Epoch(end_epoch),
            deletable: false,
            owner: None,
        },
    )
}

impl TestCommittee {
    /// A certificate signed by the given members.
    pub fn certify<T: MessageBody>(
        &self,
        message: &ProtocolMessage<T>,
        signers: impl IntoIterator<Item = usize>,
    ) -> Certificate<T> {
        Certificate::from_signatures(
            &self.committee,
            message.clone(),
            signers.into_iter().map(|i| {
                (
                    MemberIndex(i as u16),
                    Signed::sign(message.clone(), &self.protocol_keys[i]).signature,
                )
            }),
        )
        .unwrap()
    }

    /// Signed by the first members until a quorum (or validity) weight.
    pub fn certify_enough<T: MessageBody>(&self, message: &ProtocolMessage<T>) -> Certificate<T> {
        let mut builder = CertificateBuilder::new(&self.committee, message.clone());
        for key in &self.protocol_keys {
            if builder.is_complete() {
                break;
            }
            builder.add(&Signed::sign(message.clone(), key)).unwrap();
        }
        builder.certificate().unwrap()
    }
}
