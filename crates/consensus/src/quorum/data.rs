//! The tallies of data: primary slivers for a read, recovery symbols for a
//! repair. Each piece is verified against the blob's metadata; a piece that
//! is not the one asked for, or fails its proof, is a lie.

use super::*;

/// The read plan: primary slivers, systematic ones first, until enough are
/// verified to decode. It asks for no more than it still needs; a failure
/// frees a place for the next candidate, and a stall brings one in through
/// the driver's hedge.
#[derive(Debug)]
pub struct SliverTally {
    needed: usize,
    got: Vec<Sliver>,
    held: std::collections::BTreeSet<SliverIndex>,
    bytes: u64,
    failures: Vec<(SliverIndex, Failure)>,
}

impl SliverTally {
    /// A read that needs `needed` primary slivers.
    pub fn new(needed: usize) -> Self {
        Self {
            needed,
            got: Vec::with_capacity(needed),
            held: std::collections::BTreeSet::new(),
            bytes: 0,
            failures: Vec::new(),
        }
    }

    /// Checks a served sliver against the question and the metadata: pure,
    /// and run where the answer arrives (verification is the costly part of
    /// a read, so it runs in parallel, before the tally sees the sliver).
    pub fn check(
        metadata: &BlobMetadata,
        asked: SliverIndex,
        sliver: Sliver,
    ) -> Result<Sliver, Failure> {
        if sliver.axis != Axis::Primary || sliver.index != asked {
            return Err(Failure::Lie(
                "served another sliver than the one asked for".to_string(),
            ));
        }
        sliver
            .verify(metadata)
            .map_err(|e| Failure::Lie(format!("served a sliver that fails verification: {e}")))?;
        Ok(sliver)
    }

    /// Slivers verified, slivers needed, bytes fetched.
    pub fn progress(&self) -> (usize, usize, u64) {
        (self.got.len(), self.needed, self.bytes)
    }

    /// The slivers asked for that failed so far, and how.
    pub fn failures(&self) -> &[(SliverIndex, Failure)] {
        &self.failures
    }

    /// The slivers, if enough were verified.
    pub fn finish(self) -> Result<Vec<Sliver>, Shortfall<SliverIndex>> {
        if self.got.len() < self.needed {
            return Err(Shortfall {
                needed: saturating_u32(self.needed),
                got: saturating_u32(self.got.len()),
                failures: self.failures,
            });
        }
        Ok(self.got)
    }
}

impl Tally<SliverIndex, Result<Sliver, Failure>> for SliverTally {
    fn answer(
        &mut self,
        from: SliverIndex,
        answer: Result<Sliver, Failure>,
        _now: Instant,
    ) -> Step {
        match answer {
            // A checked sliver of the index asked for, not one already held.
            Ok(sliver) if sliver.index == from && self.held.insert(from) => {
                self.bytes += sliver.data.len() as u64;
                self.got.push(sliver);
            }
            Ok(_) => self.failures.push((
                from,
                Failure::Lie("served another sliver than the one asked for".to_string()),
            )),
            Err(failure) => self.failures.push((from, failure)),
        }
        if self.got.len() >= self.needed {
            Step::Done
        } else {
            Step::CONTINUE
        }
    }

    fn wanted(&self, in_flight: usize) -> usize {
        self.needed.saturating_sub(self.got.len() + in_flight)
    }
}

/// Recovery symbols for a set of target slivers, from distinct sources,
/// each checked against the metadata: proven ones ([`RecoverySymbol`], the
/// default) against their proofs, bare ones for their place and size only
/// (the sliver they rebuild is checked instead). A peer that sends symbols
/// not asked for, or failing their checks, is a liar; its good symbols
/// still count.
#[derive(Debug)]
pub struct SymbolTally<'m, K, S = RecoverySymbol> {
    metadata: &'m BlobMetadata,
    targets: Vec<(Axis, SliverIndex)>,
    /// Per target, per source: who sent the symbol, and the symbol.
    have: BTreeMap<(Axis, SliverIndex), BTreeMap<SliverIndex, (K, S)>>,
    bytes: u64,
    proof_bytes: u64,
    failures: Vec<(K, Failure)>,
}

impl<'m, K, S: Symbol> SymbolTally<'m, K, S> {
    /// Gathers symbols rebuilding `targets` of the blob `metadata` describes.
    pub fn new(metadata: &'m BlobMetadata, targets: &[(Axis, SliverIndex)]) -> Self {
        Self {
            metadata,
            targets: targets.to_vec(),
            have: BTreeMap::new(),
            bytes: 0,
            proof_bytes: 0,
            failures: Vec::new(),
        }
    }

    fn enough(&self) -> bool {
        self.targets.iter().all(|target| {
            self.have.get(target).map_or(0, BTreeMap::len)
                >= symbols_needed(self.metadata, target.0)
        })
    }

    /// Bytes of symbols received, used or not (their proofs apart).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the proofs of the symbols received.
    pub fn proof_bytes(&self) -> u64 {
        self.proof_bytes
    }

    /// The peers that failed so far, and how.
    pub fn failures(&self) -> &[(K, Failure)] {
        &self.failures
    }

    /// Each target's symbols, if every target has enough.
    #[allow(clippy::type_complexity)]
    pub fn finish(self) -> Result<BTreeMap<(Axis, SliverIndex), Vec<S>>, Shortfall<K>> {
        Ok(self
            .finish_with_senders()?
            .into_iter()
            .map(|(target, symbols)| (target, symbols.into_iter().map(|(_, s)| s).collect()))
            .collect())
    }

    /// Each target's symbols with who sent each, if every target has
    /// enough: a bare symbol found wrong later names its sender.
    #[allow(clippy::type_complexity)]
    pub fn finish_with_senders(
        self,
    ) -> Result<BTreeMap<(Axis, SliverIndex), Vec<(K, S)>>, Shortfall<K>> {
        if !self.enough() {
            let needed: usize = self
                .targets
                .iter()
                .map(|t| symbols_needed(self.metadata, t.0))
                .sum();
            let got: usize = self
                .targets
                .iter()
                .map(|t| {
                    self.have
                        .get(t)
                        .map_or(0, BTreeMap::len)
                        .min(symbols_needed(self.metadata, t.0))
                })
                .sum();
            return Err(Shortfall {
                needed: saturating_u32(needed),
                got: saturating_u32(got),
                failures: self.failures,
            });
        }
        Ok(self
            .have
            .into_iter()
            .map(|(target, symbols)| (target, symbols.into_values().collect()))
            .collect())
    }
}

impl<K: Clone, S: Symbol> Tally<K, Result<Vec<S>, String>> for SymbolTally<'_, K, S> {
    fn answer(&mut self, from: K, answer: Result<Vec<S>, String>, _now: Instant) -> Step {
        match answer {
            Ok(symbols) => {
                let mut bad = 0usize;
                for symbol in symbols {
                    // Every byte received counts as fetched, used or not.
                    self.bytes += symbol.data().len() as u64;
                    self.proof_bytes += symbol.proof_len() as u64;
                    let target = (symbol.target_axis(), symbol.target_index());
                    if !self.targets.contains(&target) || symbol.check(self.metadata).is_err() {
                        bad += 1;
                        continue;
                    }
                    // The first symbol from a source counts: one sent again
                    // (or claimed by another peer) replaces nothing.
                    self.have
                        .entry(target)
                        .or_default()
                        .entry(symbol.source_index())
                        .or_insert_with(|| (from.clone(), symbol));
                }
                if bad > 0 {
                    self.failures.push((
                        from,
                        Failure::Lie(format!(
                            "{bad} recovery symbols of blob {} not asked for or failing their checks",
                            self.metadata.blob_id()
                        )),
                    ));
                }
            }
            Err(e) => self.failures.push((from, Failure::Unanswered(e))),
        }
        if self.enough() {
            Step::Done
        } else {
            Step::CONTINUE
        }
    }
}
