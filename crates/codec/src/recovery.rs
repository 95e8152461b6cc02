//! Recovering a lost sliver from symbols of the orthogonal slivers, and
//! proving a writer's inconsistency when the recovered sliver does not match.
//!
//! Symbol `(i, j)` of the extended matrix lies in row `i` and column `j`.
//! The holder of secondary sliver `j` extends its column to all `n` symbols
//! and sends symbol `i`, with a proof against the metadata's hash of column
//! `j`; `n − f` such symbols rebuild primary sliver `i` (row `i` is a
//! codeword of the row code). Symmetrically, `n − 2f` symbols from primary
//! slivers rebuild a secondary sliver (which is `f + 1` when `n = 3f + 1`).
//!
//! Every symbol is proven against the sliver it came from. If the rebuilt
//! sliver does not hash to its own entry in the metadata, the committed
//! symbols are not a consistent two-dimensional codeword: the symbols with
//! their proofs form an [`InconsistencyProof`] that anyone holding the
//! metadata can check.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    commitment::{self, SymbolProof},
    error::{InconsistencyError, RecoveryError, SliverError, SymbolError},
    sliver::LineShape,
    Axis, BlobId, BlobMetadata, Sliver, SliverIndex, SymbolIndex,
};

/// One symbol of an extended sliver, sent to help rebuild an orthogonal
/// sliver, with its proof.
///
/// BCS: `source_axis: u8 enum, source_index: u16 LE, symbol_index: u16 LE,
/// data: bytes, proof: SymbolProof`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySymbol {
    /// The axis of the sliver the symbol comes from.
    pub source_axis: Axis,
    /// The sliver the symbol comes from.
    pub source_index: SliverIndex,
    /// Its position in the extended source sliver, which is the index of the
    /// orthogonal sliver it helps rebuild.
    pub symbol_index: SymbolIndex,
    /// The symbol.
    pub data: Bytes,
    /// Its proof against the source sliver's hash in the metadata.
    pub proof: SymbolProof,
}

/// A recovery symbol sent without its proof.
///
/// A repair asks for bare symbols first: it checks the sliver they rebuild
/// against the metadata's hash for it, one hash of the result instead of a
/// proof per symbol (the proofs outweigh small symbols several times). Bare
/// symbols prove nothing, so a rebuild that fails its hash is no proof of
/// inconsistency: the repair asks again for proven [`RecoverySymbol`]s.
///
/// BCS: `source_axis: u8 enum, source_index: u16 LE, symbol_index: u16 LE,
/// data: bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BareSymbol {
    /// The axis of the sliver the symbol comes from.
    pub source_axis: Axis,
    /// The sliver the symbol comes from.
    pub source_index: SliverIndex,
    /// Its position in the extended source sliver, which is the index of the
    /// orthogonal sliver it helps rebuild.
    pub symbol_index: SymbolIndex,
    /// The symbol.
    pub data: Bytes,
}

/// A recovery symbol, proven ([`RecoverySymbol`]) or bare ([`BareSymbol`]):
/// what gathering and rebuilding need of either.
pub trait Symbol: Clone + Send + Sync + 'static {
    /// Whether the symbol carries its proof (so it vouches for itself,
    /// whoever sends it).
    const PROVEN: bool;
    /// The axis of the sliver the symbol comes from.
    fn source_axis(&self) -> Axis;
    /// The sliver the symbol comes from.
    fn source_index(&self) -> SliverIndex;
    /// Its position in the extended source sliver.
    fn symbol_index(&self) -> SymbolIndex;
    /// The symbol's bytes.
    fn data(&self) -> &Bytes;
    /// The symbol's bytes, to change (lab lies only).
    fn data_mut(&mut self) -> &mut Bytes;
    /// Bytes of its proof (0 for a bare symbol).
    fn proof_len(&self) -> usize;
    /// Checks its place and size against the metadata, and its proof if it
    /// has one.
    fn check(&self, metadata: &BlobMetadata) -> Result<(), SymbolError>;
    /// The symbols `sliver` contributes to the orthogonal slivers `targets`.
    fn of_sliver(
        sliver: &Sliver,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<Vec<Self>, SliverError>;
    /// The error for symbols that rebuild a sliver not matching its hash.
    fn mismatch(
        metadata: &BlobMetadata,
        target_axis: Axis,
        target: SliverIndex,
        symbols: Vec<Self>,
    ) -> RecoveryError;

    /// The axis of the sliver this symbol helps rebuild.
    fn target_axis(&self) -> Axis {
        self.source_axis().orthogonal()
    }

    /// The index of the sliver this symbol helps rebuild.
    fn target_index(&self) -> SliverIndex {
        SliverIndex(self.symbol_index().0)
    }
}

/// Checks a symbol's place and size against the metadata.
fn check_place(
    metadata: &BlobMetadata,
    source_axis: Axis,
    source_index: SliverIndex,
    symbol_index: SymbolIndex,
    len: usize,
) -> Result<(), SymbolError> {
    let n = metadata.config().n();
    let s = metadata.symbol_size();
    if source_index.as_usize() >= n || symbol_index.as_usize() >= n {
        return Err(SymbolError::IndexOutOfRange {
            blob_id: metadata.blob_id(),
            axis: source_axis,
            source_index,
            symbol_index,
        });
    }
    if len != s {
        return Err(SymbolError::WrongSize {
            blob_id: metadata.blob_id(),
            axis: source_axis,
            source_index,
            expected: s,
            actual: len,
        });
    }
    Ok(())
}

/// The accessors both kinds of symbol share: their fields of the same names.
macro_rules! symbol_fields {
    () => {
        fn source_axis(&self) -> Axis {
            self.source_axis
        }
        fn source_index(&self) -> SliverIndex {
            self.source_index
        }
        fn symbol_index(&self) -> SymbolIndex {
            self.symbol_index
        }
        fn data(&self) -> &Bytes {
            &self.data
        }
        fn data_mut(&mut self) -> &mut Bytes {
            &mut self.data
        }
    };
}

impl Symbol for BareSymbol {
    const PROVEN: bool = false;
    symbol_fields!();
    fn proof_len(&self) -> usize {
        0
    }
    fn check(&self, metadata: &BlobMetadata) -> Result<(), SymbolError> {
        check_place(
            metadata,
            self.source_axis,
            self.source_index,
            self.symbol_index,
            self.data.len(),
        )
    }
    fn of_sliver(
        sliver: &Sliver,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<Vec<Self>, SliverError> {
        sliver.bare_symbols(metadata, targets)
    }
    fn mismatch(
        metadata: &BlobMetadata,
        target_axis: Axis,
        target: SliverIndex,
        _: Vec<Self>,
    ) -> RecoveryError {
        RecoveryError::Unproven {
            blob_id: metadata.blob_id(),
            target_axis,
            target,
        }
    }
}

impl Symbol for RecoverySymbol {
    const PROVEN: bool = true;
    symbol_fields!();
    fn proof_len(&self) -> usize {
        self.proof.byte_len()
    }
    fn check(&self, metadata: &BlobMetadata) -> Result<(), SymbolError> {
        self.verify(metadata)
    }
    fn of_sliver(
        sliver: &Sliver,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<Vec<Self>, SliverError> {
        sliver.recovery_symbols(metadata, targets)
    }
    fn mismatch(
        metadata: &BlobMetadata,
        target_axis: Axis,
        target: SliverIndex,
        symbols: Vec<Self>,
    ) -> RecoveryError {
        RecoveryError::Inconsistent(Box::new(InconsistencyProof {
            blob_id: metadata.blob_id(),
            target_axis,
            target,
            symbols,
        }))
    }
}

impl RecoverySymbol {
    /// The axis of the sliver this symbol helps rebuild.
    pub fn target_axis(&self) -> Axis {
        self.source_axis.orthogonal()
    }

    /// The index of the sliver this symbol helps rebuild.
    pub fn target_index(&self) -> SliverIndex {
        SliverIndex(self.symbol_index.0)
    }

    /// Checks the symbol's proof against the metadata.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig, SliverIndex};
    ///
    /// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// // Secondary sliver 3 (in pair 0) sends its symbol for primary sliver 1.
    /// let mut symbol = pairs[0].secondary.recovery_symbol(&metadata, SliverIndex(1))?;
    /// symbol.verify(&metadata)?;
    /// symbol.data = vec![0xffu8; symbol.data.len()].into();
    /// assert!(symbol.verify(&metadata).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, metadata: &BlobMetadata) -> Result<(), SymbolError> {
        check_place(
            metadata,
            self.source_axis,
            self.source_index,
            self.symbol_index,
            self.data.len(),
        )?;
        let (n, s) = (metadata.config().n(), metadata.symbol_size());
        let root = metadata.sliver_hash(self.source_axis, self.source_index);
        let start = self.symbol_index.as_usize() * s;
        commitment::verify(&root, n * s, start..start + s, &self.data, &self.proof).map_err(
            |source| SymbolError::BadProof {
                blob_id: metadata.blob_id(),
                axis: self.source_axis,
                source_index: self.source_index,
                symbol_index: self.symbol_index,
                source,
            },
        )
    }
}

impl Sliver {
    /// The recovery symbols this sliver contributes to the orthogonal slivers
    /// `targets`: extends this sliver once and proves each symbol.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, Axis, EncodingConfig, SliverIndex};
    ///
    /// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// // Primary sliver 0 helps rebuild secondary slivers 1 and 3.
    /// let targets = [SliverIndex(1), SliverIndex(3)];
    /// let symbols = pairs[0].primary.recovery_symbols(&metadata, &targets)?;
    /// assert_eq!(symbols.len(), 2);
    /// assert_eq!(symbols[1].target_axis(), Axis::Secondary);
    /// assert_eq!(symbols[1].target_index(), SliverIndex(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recovery_symbols(
        &self,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<Vec<RecoverySymbol>, SliverError> {
        let (extended, s) = self.extended_for(metadata, targets)?;
        let mut prover = commitment::Prover::new(&extended);
        Ok(targets
            .iter()
            .map(|target| {
                let range = target.as_usize() * s..(target.as_usize() + 1) * s;
                RecoverySymbol {
                    source_axis: self.axis,
                    source_index: self.index,
                    symbol_index: SymbolIndex(target.0),
                    data: Bytes::copy_from_slice(&extended[range.clone()]),
                    proof: prover.prove(range),
                }
            })
            .collect())
    }

    /// The bare symbols (no proofs) this sliver contributes to the orthogonal
    /// slivers `targets`: extends this sliver once, and hashes nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig, SliverIndex};
    ///
    /// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// let targets = [SliverIndex(1), SliverIndex(3)];
    /// let bare = pairs[0].primary.bare_symbols(&metadata, &targets)?;
    /// let proven = pairs[0].primary.recovery_symbols(&metadata, &targets)?;
    /// assert_eq!(bare[1].data, proven[1].data);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bare_symbols(
        &self,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<Vec<BareSymbol>, SliverError> {
        let (extended, s) = self.extended_for(metadata, targets)?;
        Ok(targets
            .iter()
            .map(|target| BareSymbol {
                source_axis: self.axis,
                source_index: self.index,
                symbol_index: SymbolIndex(target.0),
                data: Bytes::copy_from_slice(&extended[target.as_usize() * s..][..s]),
            })
            .collect())
    }

    /// This sliver extended to all `n` symbols, and the symbol size, once
    /// `targets` are checked to be distinct orthogonal slivers.
    fn extended_for(
        &self,
        metadata: &BlobMetadata,
        targets: &[SliverIndex],
    ) -> Result<(Vec<u8>, usize), SliverError> {
        self.check_shape(metadata)?;
        let n = metadata.config().n_shards();
        let mut seen = vec![false; usize::from(n)];
        for target in targets {
            match seen.get_mut(target.as_usize()) {
                None => {
                    return Err(SliverError::IndexOutOfRange {
                        blob_id: metadata.blob_id(),
                        axis: self.axis.orthogonal(),
                        index: *target,
                        n_shards: n,
                    })
                }
                Some(true) => {
                    return Err(SliverError::DuplicateTarget {
                        blob_id: metadata.blob_id(),
                        axis: self.axis.orthogonal(),
                        index: *target,
                    })
                }
                Some(slot) => *slot = true,
            }
        }
        let shape = LineShape::of(metadata, self.axis);
        let mut extended = Vec::with_capacity(shape.n() * shape.s);
        extended.extend_from_slice(&self.data);
        crate::line::with_coder(|coder| {
            extended.extend_from_slice(coder.extend(&self.data, shape.k, shape.m, shape.s));
        });
        Ok((extended, shape.s))
    }

    /// The recovery symbol this sliver contributes to orthogonal sliver `target`.
    pub fn recovery_symbol(
        &self,
        metadata: &BlobMetadata,
        target: SliverIndex,
    ) -> Result<RecoverySymbol, SliverError> {
        let mut symbols = self.recovery_symbols(metadata, &[target])?;
        symbols.pop().ok_or(SliverError::IndexOutOfRange {
            blob_id: metadata.blob_id(),
            axis: self.axis.orthogonal(),
            index: target,
            n_shards: metadata.config().n_shards(),
        })
    }
}

/// The number of recovery symbols needed to rebuild a sliver on `axis`:
/// `n − f` for a primary sliver, `n − 2f` for a secondary sliver.
///
/// # Examples
///
/// ```
/// use floe_codec::{encode, symbols_needed, Axis, EncodingConfig};
///
/// let (metadata, _, _) = encode(&EncodingConfig::new(10)?, b"hello")?; // f = 3
/// assert_eq!(symbols_needed(&metadata, Axis::Primary), 7); // n - f
/// assert_eq!(symbols_needed(&metadata, Axis::Secondary), 4); // n - 2f
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn symbols_needed(metadata: &BlobMetadata, axis: Axis) -> usize {
    LineShape::of(metadata, axis).k
}

/// Rebuilds sliver `target` on `target_axis` from recovery symbols of the
/// orthogonal axis, proven or bare. Every symbol is checked (its proof too,
/// if it has one); symbols that fail, or belong to
/// another target, are skipped (a faulty peer cannot block recovery when
/// enough good symbols are given); duplicates (same source) count once; the
/// first `symbols_needed` valid distinct ones are used.
///
/// If the rebuilt sliver does not match the metadata: from proven symbols,
/// the blob was encoded inconsistently and the error carries the
/// [`InconsistencyProof`]; from bare ones, the error is
/// [`RecoveryError::Unproven`] (a sender may have lied; ask for proofs).
///
/// # Examples
///
/// ```
/// use floe_codec::{encode, recover_sliver, symbols_needed, Axis, EncodingConfig};
///
/// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
/// // Pair 1 lost its primary sliver; the secondary slivers of pairs 0, 2 and 3 help.
/// let lost = &pairs[1].primary;
/// let symbols = [0usize, 2, 3]
///     .into_iter()
///     .map(|p| pairs[p].secondary.recovery_symbol(&metadata, lost.index))
///     .collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(symbols.len(), symbols_needed(&metadata, Axis::Primary)); // n - f = 3
/// let rebuilt = recover_sliver(&metadata, Axis::Primary, lost.index, symbols)?;
/// assert_eq!(&rebuilt, lost);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recover_sliver<S: Symbol>(
    metadata: &BlobMetadata,
    target_axis: Axis,
    target: SliverIndex,
    symbols: impl IntoIterator<Item = S>,
) -> Result<Sliver, RecoveryError> {
    let blob_id = metadata.blob_id();
    let n_shards = metadata.config().n_shards();
    if target.0 >= n_shards {
        return Err(SliverError::IndexOutOfRange {
            blob_id,
            axis: target_axis,
            index: target,
            n_shards,
        }
        .into());
    }
    let shape = LineShape::of(metadata, target_axis);
    let mut distinct = BTreeMap::new();
    let mut rejected = None;
    for symbol in symbols {
        if distinct.len() == shape.k || distinct.contains_key(&symbol.source_index()) {
            continue;
        }
        if symbol.target_axis() != target_axis || symbol.target_index() != target {
            rejected.get_or_insert(RecoveryError::WrongTarget {
                blob_id,
                axis: symbol.source_axis(),
                source_index: symbol.source_index(),
                target_axis,
                target,
            });
            continue;
        }
        if let Err(error) = symbol.check(metadata) {
            rejected.get_or_insert(error.into());
            continue;
        }
        distinct.insert(symbol.source_index(), symbol);
    }
    if distinct.len() < shape.k {
        // Too few good symbols: name the first bad one if there was one.
        return Err(rejected.unwrap_or(RecoveryError::NotEnoughSymbols {
            blob_id,
            target_axis,
            target,
            given: distinct.len(),
            needed: shape.k,
        }));
    }
    let mut data = vec![0u8; shape.source_bytes()];
    let known = distinct
        .iter()
        .map(|(source, symbol)| (source.as_usize(), &symbol.data()[..]));
    let (sliver, commitment) = crate::line::with_coder(|coder| {
        coder.restore(shape.k, shape.m, shape.s, known, &mut data);
        let sliver = Sliver {
            axis: target_axis,
            index: target,
            data: Bytes::from(data),
        };
        let commitment = sliver.commitment_with(metadata, coder);
        (sliver, commitment)
    });
    if commitment == metadata.sliver_hash(target_axis, target) {
        Ok(sliver)
    } else {
        Err(S::mismatch(
            metadata,
            target_axis,
            target,
            distinct.into_values().collect(),
        ))
    }
}

/// Proof that blob `blob_id` was encoded inconsistently: recovery symbols,
/// each proven against the metadata, that rebuild a sliver which does not
/// match the metadata's hash for it.
///
/// BCS: `blob_id: [u8; 32], target_axis: u8 enum, target: u16 LE,
/// symbols: vec<RecoverySymbol>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InconsistencyProof {
    /// The inconsistent blob.
    pub blob_id: BlobId,
    /// The axis of the sliver that fails to rebuild consistently.
    pub target_axis: Axis,
    /// Its index.
    pub target: SliverIndex,
    /// The symbols, each with its proof.
    pub symbols: Vec<RecoverySymbol>,
}

impl InconsistencyProof {
    /// Checks the proof against the blob's metadata: `Ok` means the blob is
    /// proven inconsistent.
    ///
    /// # Examples
    ///
    /// A proof comes from [`recover_sliver`] as
    /// [`RecoveryError::Inconsistent`]. Here the writer (hidden lines) altered
    /// primary sliver 1 after encoding and put the altered sliver's
    /// [`Sliver::commitment`] into the metadata, so every sliver verifies on
    /// its own; rebuilding secondary sliver 0 from rows 0 and 1 exposes it.
    ///
    /// ```
    /// use floe_codec::{recover_sliver, symbols_needed, Axis, RecoveryError, SliverIndex};
    /// # use floe_codec::{encode, BlobMetadata, EncodingConfig};
    /// # let (honest, _, mut pairs) = encode(&EncodingConfig::new(4)?, b"hello, Floe")?;
    /// # let mut row = pairs[1].primary.data.to_vec();
    /// # row[0] ^= 1;
    /// # pairs[1].primary.data = row.into();
    /// # let mut hashes = honest.hashes().to_vec();
    /// # hashes[1].primary = pairs[1].primary.commitment(&honest)?;
    /// # let metadata = BlobMetadata::new(honest.unencoded_length(), hashes)?;
    ///
    /// let target = SliverIndex(0);
    /// let symbols = (0..symbols_needed(&metadata, Axis::Secondary))
    ///     .map(|p| pairs[p].primary.recovery_symbol(&metadata, target))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// match recover_sliver(&metadata, Axis::Secondary, target, symbols) {
    ///     Err(RecoveryError::Inconsistent(proof)) => assert!(proof.verify(&metadata).is_ok()),
    ///     other => panic!("expected an inconsistency, got {other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, metadata: &BlobMetadata) -> Result<(), InconsistencyError> {
        metadata.verify(&self.blob_id)?;
        // Canonical form: exactly the needed symbols, sources strictly
        // increasing, so one proof has one encoding and no unverified padding.
        let needed = symbols_needed(metadata, self.target_axis);
        let increasing = self
            .symbols
            .windows(2)
            .all(|w| w[0].source_index < w[1].source_index);
        if self.symbols.len() != needed || !increasing {
            return Err(InconsistencyError::NotCanonical {
                symbols: self.symbols.len(),
                needed,
            });
        }
        match recover_sliver(
            metadata,
            self.target_axis,
            self.target,
            self.symbols.iter().cloned(),
        ) {
            Err(RecoveryError::Inconsistent(_)) => Ok(()),
            Ok(_) => Err(InconsistencyError::Consistent {
                blob_id: self.blob_id,
                target_axis: self.target_axis,
                target: self.target,
            }),
            Err(other) => Err(InconsistencyError::Recovery(other)),
        }
    }
}
