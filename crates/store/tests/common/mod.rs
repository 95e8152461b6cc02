//! Blobs, committees and facts for store tests.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use floe_codec::{encode, BlobId, BlobMetadata, EncodingConfig, ShardIndex, SliverPair};
use floe_consensus::*;
use floe_store::Store;

pub const N: u16 = 10;

pub struct World {
    pub committee: Committee,
    pub keys: Vec<KeyPair>,
    pub owner: KeyPair,
}

pub fn world() -> World {
    let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i + 1; 32])).collect();
    let members = (0..4usize)
        .map(|i| Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: keys[i].public(),
            network_key: KeyPair::from_seed(&[100 + i as u8; 32]).public(),
            address: format!("127.0.0.1:{}", 7000 + i),
            shards: (0..N)
                .filter(|s| usize::from(*s) % 4 == i)
                .map(ShardIndex)
                .collect(),
        })
        .collect();
    World {
        committee: Committee::new(Epoch(0), N, members).unwrap(),
        keys,
        owner: KeyPair::from_seed(&[77; 32]),
    }
}

pub struct Blob {
    pub blob_id: BlobId,
    pub metadata: BlobMetadata,
    pub pairs: Vec<SliverPair>,
}

pub fn blob(seed: u64, len: usize) -> Blob {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let (metadata, blob_id, pairs) = encode(&EncodingConfig::new(N).unwrap(), &data).unwrap();
    Blob {
        blob_id,
        metadata,
        pairs,
    }
}

impl Blob {
    /// The pair that `shard` holds of this blob.
    pub fn pair_for(&self, shard: ShardIndex) -> &SliverPair {
        &self.pairs[shard.to_pair_index(N, &self.blob_id).as_usize()]
    }
}

impl World {
    fn certify<T: MessageBody>(&self, message: ProtocolMessage<T>) -> Certificate<T> {
        let mut builder = CertificateBuilder::new(&self.committee, message.clone());
        for key in &self.keys {
            if builder.is_complete() {
                break;
            }
            builder.add(&Signed::sign(message.clone(), key)).unwrap();
        }
        builder.certificate().unwrap()
    }

    pub fn certified(&self, blob_id: BlobId, end_epoch: u64, deletable: bool) -> VerifiedFact {
        let body = StorageConfirmation {
            blob_id,
            end_epoch: Epoch(end_epoch),
            deletable,
            owner: deletable.then(|| self.owner.public()),
        };
        Fact::Certified(self.certify(ProtocolMessage::new(Epoch(0), body)))
            .verify(&self.committee)
            .unwrap()
    }

    pub fn invalid(&self, blob_id: BlobId) -> VerifiedFact {
        let body = InvalidBlobAttestation { blob_id };
        Fact::Invalid(self.certify(ProtocolMessage::new(Epoch(0), body)))
            .verify(&self.committee)
            .unwrap()
    }

    /// The owner's deletion of its registration until `end_epoch`.
    pub fn deleted(&self, blob_id: BlobId, end_epoch: u64) -> VerifiedFact {
        let deletion = Signed::sign(
            ProtocolMessage::new(Epoch(0), BlobDeletion { blob_id }),
            &self.owner,
        );
        let Fact::Certified(certificate) = self.certified(blob_id, end_epoch, true).into_fact()
        else {
            unreachable!()
        };
        Fact::Deleted(Box::new(DeletionProof {
            deletion,
            certificate,
        }))
        .verify(&self.committee)
        .unwrap()
    }
}

/// A permanent storage confirmation of `blob_id` until `end_epoch`, signed in epoch 0.
pub fn confirmation(blob_id: BlobId, end_epoch: u64) -> ProtocolMessage<StorageConfirmation> {
    ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id,
            end_epoch: Epoch(end_epoch),
            deletable: false,
            owner: None,
        },
    )
}

/// The shards of node-1 in [`world`], the node every store test plays.
pub fn my_shards() -> Vec<ShardIndex> {
    vec![ShardIndex(1), ShardIndex(5), ShardIndex(9)]
}

/// Stores the metadata of `blob` and its pair for every shard of `store`.
pub fn store_all(store: &Store, blob: &Blob) {
    store
        .put_metadata(&blob.blob_id, &blob.metadata, 1_000)
        .unwrap();
    for &shard in &store.shards() {
        store
            .put_sliver_pair(shard, &blob.blob_id, blob.pair_for(shard))
            .unwrap();
    }
}

/// Stores every pair of `blob` and a certificate for it up to `end_epoch`.
pub fn store_certified(store: &Store, world: &World, blob: &Blob, end_epoch: u64) {
    store_all(store, blob);
    store
        .record_fact(world.certified(blob.blob_id, end_epoch, false), Epoch(0))
        .unwrap();
}

/// The database of a closed store at `dir`, opened behind its back through
/// RocksDB itself (to damage or rewrite values).
pub fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(false);
    rocksdb::DB::open_cf(&options, dir, floe_store::TABLES).unwrap()
}

/// A `slivers` key as the store writes it: shard, blob, axis (0 primary).
pub fn sliver_key(shard: ShardIndex, blob_id: &BlobId, axis: u8) -> Vec<u8> {
    let mut key = shard.0.to_be_bytes().to_vec();
    key.extend_from_slice(&blob_id.0);
    key.push(axis);
    key
}
