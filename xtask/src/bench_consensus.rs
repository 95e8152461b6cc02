//! `cargo xtask bench consensus`: certificate verification, building, and
//! lattice joins, on one core.

use std::time::Instant;

use anyhow::{Context, Result};
use floe_codec::{BlobId, ShardIndex};
use floe_consensus::{
    BlobDeletion, BlobState, CertificateBuilder, Committee, DeletionProof, Epoch, Fact, KeyPair,
    Member, NodeId, ProtocolMessage, SignatureCheck, Signed, StorageConfirmation, VerifiedFact,
};
use serde::Serialize;

#[derive(Serialize)]
struct Record {
    case: String,
    n_shards: u16,
    members: usize,
    signatures: usize,
    median_ms: f64,
    iterations: usize,
}

fn median_ms(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn committee(n: u16, members: usize) -> Result<(Committee, Vec<KeyPair>)> {
    let keys: Vec<KeyPair> = (0..members)
        .map(|i| KeyPair::from_seed(&seed(i, 1)))
        .collect();
    let list = (0..members)
        .map(|i| Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: keys[i].public(),
            network_key: KeyPair::from_seed(&seed(i, 2)).public(),
            address: format!("127.0.0.1:{}", 7000 + i),
            shards: (0..n)
                .filter(|s| usize::from(*s) % members == i)
                .map(ShardIndex)
                .collect(),
        })
        .collect();
    Ok((Committee::new(Epoch(0), n, list)?, keys))
}

fn seed(i: usize, role: u8) -> [u8; 32] {
    let mut seed = [role; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    seed
}

pub fn run(quick: bool) -> Result<()> {
    // One core, as the target says.
    let (n, members) = (1000u16, 100usize);
    let (committee, keys) = committee(n, members)?;
    let message = ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id: BlobId([1; 32]),
            end_epoch: Epoch(10),
            deletable: false,
            owner: None,
        },
    );
    let confirmations: Vec<_> = keys
        .iter()
        .map(|k| Signed::sign(message.clone(), k))
        .collect();
    let iterations = if quick { 20 } else { 200 };
    let mut records = Vec::new();

    let build = || -> Result<_> {
        let mut builder = CertificateBuilder::new(&committee, message.clone());
        for signed in &confirmations {
            if builder.is_complete() {
                break;
            }
            builder.add(signed)?;
        }
        Ok(builder.certificate()?)
    };
    let certificate = build()?;
    let signatures = certificate.signatures.len();
    records.push(Record {
        case: "build certificate from confirmations".into(),
        n_shards: n,
        members,
        signatures,
        median_ms: median_ms(iterations / 4 + 1, || {
            let _ = build();
        }),
        iterations: iterations / 4 + 1,
    });
    for (name, check) in [
        ("verify certificate (batch)", SignatureCheck::Batch),
        (
            "verify certificate (one by one)",
            SignatureCheck::Individual,
        ),
    ] {
        certificate
            .verify_with(&committee, check)
            .context("certificate must verify")?;
        records.push(Record {
            case: name.into(),
            n_shards: n,
            members,
            signatures,
            median_ms: median_ms(iterations, || {
                let _ = certificate.verify_with(&committee, check);
            }),
            iterations,
        });
    }

    // Join 100 000 states: each from one of a few verified facts.
    let owner = KeyPair::from_seed(&[9; 32]);
    let mut facts: Vec<VerifiedFact> = Vec::new();
    for end in [5u64, 10, 20] {
        let message = ProtocolMessage::new(
            Epoch(0),
            StorageConfirmation {
                blob_id: BlobId([1; 32]),
                end_epoch: Epoch(end),
                deletable: end == 20,
                owner: Some(owner.public()),
            },
        );
        let mut builder = CertificateBuilder::new(&committee, message.clone());
        for key in &keys {
            if builder.is_complete() {
                break;
            }
            builder.add(&Signed::sign(message.clone(), key))?;
        }
        facts.push(Fact::Certified(builder.certificate()?).verify(&committee)?);
    }
    let deletion = Signed::sign(
        ProtocolMessage::new(
            Epoch(0),
            BlobDeletion {
                blob_id: BlobId([1; 32]),
            },
        ),
        &owner,
    );
    let Fact::Certified(certificate) = facts[2].fact().clone() else {
        anyhow::bail!("the third fact is the deletable certificate");
    };
    facts.push(
        Fact::Deleted(Box::new(DeletionProof {
            deletion,
            certificate,
        }))
        .verify(&committee)?,
    );
    let states: Vec<BlobState> = (0..100_000)
        .map(|i| BlobState::from_fact(facts[i % facts.len()].clone()))
        .collect();
    let join_runs = if quick { 3 } else { 7 };
    records.push(Record {
        case: "join 100000 states".into(),
        n_shards: n,
        members,
        signatures,
        median_ms: median_ms(join_runs, || {
            let mut acc = BlobState::unknown(BlobId([1; 32]));
            for state in &states {
                // Every state is of the same blob.
                let _ = acc.join_in(state);
            }
            std::hint::black_box(acc.status(Epoch(1)));
        }),
        iterations: join_runs,
    });

    println!(
        "{:<40} {:>8} {:>8} {:>10} {:>11}",
        "case", "n", "members", "signatures", "median ms"
    );
    for r in &records {
        println!(
            "{:<40} {:>8} {:>8} {:>10} {:>11.3}",
            r.case, r.n_shards, r.members, r.signatures, r.median_ms
        );
    }
    println!("single thread; certificate: {signatures} signatures = quorum of {n} shards over {members} members");
    crate::bench::write_json("consensus", &records)
}
