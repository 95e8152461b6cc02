//! What the unit tests of this crate share.
#![allow(clippy::unwrap_used)]

use floe_consensus::NodeId;

use super::*;

/// Four members, one shard each, and their protocol keys (each member's
/// network key is another).
pub(crate) fn committee(epoch: Epoch) -> (Committee, Vec<KeyPair>) {
    let keys: Vec<KeyPair> = (0..4u8).map(|i| KeyPair::from_seed(&[i + 1; 32])).collect();
    let members = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: key.public(),
            network_key: KeyPair::from_seed(&[i as u8 + 100; 32]).public(),
            address: format!("127.0.0.1:{}", 7000 + i),
            shards: vec![ShardIndex(i as u16)],
        })
        .collect();
    (Committee::new(epoch, 4, members).unwrap(), keys)
}
