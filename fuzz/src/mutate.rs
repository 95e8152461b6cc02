//! The inputs a run draws: a seed with a few mutations applied, or
//! arbitrary bytes. Both are proptest strategies, so every input comes from
//! a seeded, reproducible random stream and shrinks (fewer mutations,
//! smaller positions, shorter byte strings) when it fails.

use proptest::collection::vec;
use proptest::prelude::*;

/// A position in a collection of any size: a fraction of its length in
/// fixed point (`usize::MAX` is just below the end), so one drawn value
/// stays meaningful however mutations change lengths, and shrinks to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos(pub usize);

impl Pos {
    /// The position in a collection of `size > 0` elements.
    pub fn index(self, size: usize) -> usize {
        ((size as u128 * self.0 as u128) >> usize::BITS) as usize
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    any::<usize>().prop_map(Pos)
}

/// How a length or count is written where a mutation inflates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 2 bytes, little-endian (indices, shard numbers, request kinds).
    U16,
    /// 4 bytes, little-endian (frame lengths).
    U32,
    /// 8 bytes, little-endian (epochs, offsets, blob lengths).
    U64,
    /// ULEB128, as BCS writes sequence lengths and enum tags.
    Uleb,
}

/// One change to an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit {
        /// Where.
        at: Pos,
        /// Which bit (mod 8).
        bit: u8,
    },
    /// Overwrite one byte, often with an edge value.
    SetByte {
        /// Where.
        at: Pos,
        /// The new byte.
        value: u8,
    },
    /// Cut the input at a point.
    Truncate {
        /// Where.
        at: Pos,
    },
    /// Insert bytes.
    Insert {
        /// Where.
        at: Pos,
        /// What.
        bytes: Vec<u8>,
    },
    /// Remove up to `len` bytes.
    Remove {
        /// From where.
        at: Pos,
        /// How many.
        len: u8,
    },
    /// Repeat a chunk in place (more elements than a count says, or a
    /// count that now matches).
    Duplicate {
        /// From where.
        at: Pos,
        /// How many bytes.
        len: u8,
    },
    /// Replace the integer (or ULEB128) at a point with `value`: lengths
    /// and counts beyond the input, zero, sign and width edges.
    Inflate {
        /// Where.
        at: Pos,
        /// Its encoding.
        width: Width,
        /// The new value.
        value: u64,
    },
    /// Insert a chunk of another seed.
    Splice {
        /// Where.
        at: Pos,
        /// Which other seed.
        other: Pos,
        /// Where in it.
        from: Pos,
        /// How many bytes.
        len: u16,
    },
    /// This input's prefix, then another seed's suffix.
    CrossOver {
        /// Where this input is cut.
        at: Pos,
        /// Which other seed.
        other: Pos,
        /// Where the other is cut.
        from: Pos,
    },
}

/// One input of a run.
#[derive(Debug, Clone)]
pub enum Input {
    /// A seed of the corpus, mutated.
    Mutated {
        /// Which seed.
        seed: Pos,
        /// What is done to it, in order.
        mutations: Vec<Mutation>,
    },
    /// Arbitrary bytes.
    Raw(Vec<u8>),
}

fn edge_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => any::<u8>(),
        1 => prop::sample::select(vec![0u8, 1, 2, 0x7f, 0x80, 0x81, 0xfe, 0xff]),
    ]
}

fn edge_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => prop::sample::select(vec![
            0u64,
            1,
            0x7f,
            0x80,
            0xff,
            0xffff,
            1 << 20,
            (1 << 31) - 1,
            1 << 31,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX >> 1,
            u64::MAX,
        ]),
        2 => 0..=4096u64,
        1 => any::<u64>(),
    ]
}

fn width() -> impl Strategy<Value = Width> {
    prop::sample::select(vec![Width::U16, Width::U32, Width::U64, Width::Uleb])
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (pos(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (pos(), edge_byte()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => pos().prop_map(|at| Mutation::Truncate { at }),
        2 => (pos(), vec(edge_byte(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (pos(), 1..32u8).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (pos(), 1..64u8).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        4 => (pos(), width(), edge_value())
            .prop_map(|(at, width, value)| Mutation::Inflate { at, width, value }),
        1 => (pos(), pos(), pos(), 1..512u16)
            .prop_map(|(at, other, from, len)| Mutation::Splice { at, other, from, len }),
        1 => (pos(), pos(), pos())
            .prop_map(|(at, other, from)| Mutation::CrossOver { at, other, from }),
    ]
}

/// Inputs: mostly mutated seeds (one to a few mutations each), sometimes
/// arbitrary bytes, short or up to a few KiB.
pub fn inputs() -> BoxedStrategy<Input> {
    prop_oneof![
        18 => (pos(), vec(mutation(), 1..5))
            .prop_map(|(seed, mutations)| Input::Mutated { seed, mutations }),
        1 => vec(any::<u8>(), 0..64).prop_map(Input::Raw),
        1 => vec(any::<u8>(), 0..4096).prop_map(Input::Raw),
    ]
    .boxed()
}

/// A position in `0..=len` (insertion points include the end).
fn point(at: &Pos, len: usize) -> usize {
    at.index(len + 1)
}

fn pick<'a>(pool: &'a [Vec<u8>], which: &Pos) -> &'a [u8] {
    if pool.is_empty() {
        &[]
    } else {
        &pool[which.index(pool.len())]
    }
}

fn encode_value(width: Width, value: u64) -> Vec<u8> {
    match width {
        Width::U16 => (value as u16).to_le_bytes().to_vec(),
        Width::U32 => (value as u32).to_le_bytes().to_vec(),
        Width::U64 => value.to_le_bytes().to_vec(),
        Width::Uleb => {
            let mut out = Vec::new();
            let mut value = value;
            while value >= 0x80 {
                out.push((value as u8 & 0x7f) | 0x80);
                value >>= 7;
            }
            out.push(value as u8);
            out
        }
    }
}

/// Bytes taken by the integer of `width` at `at` (a ULEB128 runs to its
/// first byte without the high bit, at most 10 bytes).
fn current_len(bytes: &[u8], at: usize, width: Width) -> usize {
    let left = bytes.len() - at;
    match width {
        Width::U16 => left.min(2),
        Width::U32 => left.min(4),
        Width::U64 => left.min(8),
        Width::Uleb => bytes[at..]
            .iter()
            .take(10)
            .position(|b| b & 0x80 == 0)
            .map_or(left.min(10), |i| i + 1),
    }
}

/// Applies `mutation` to `bytes`, drawing other seeds from `pool`.
pub fn apply(bytes: &mut Vec<u8>, mutation: &Mutation, pool: &[Vec<u8>]) {
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit { at, bit } => {
            if len > 0 {
                bytes[at.index(len)] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte { at, value } => {
            if len > 0 {
                bytes[at.index(len)] = *value;
            }
        }
        Mutation::Truncate { at } => bytes.truncate(at.index(len + 1)),
        Mutation::Insert { at, bytes: new } => {
            let at = point(at, len);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, len: n } => {
            if len > 0 {
                let at = at.index(len);
                let end = (at + usize::from(*n)).min(len);
                bytes.drain(at..end);
            }
        }
        Mutation::Duplicate { at, len: n } => {
            if len > 0 {
                let at = at.index(len);
                let end = (at + usize::from(*n)).min(len);
                let chunk = bytes[at..end].to_vec();
                bytes.splice(end..end, chunk);
            }
        }
        Mutation::Inflate { at, width, value } => {
            let at = point(at, len);
            let old = current_len(bytes, at, *width);
            bytes.splice(at..at + old, encode_value(*width, *value));
        }
        Mutation::Splice {
            at,
            other,
            from,
            len: n,
        } => {
            let other = pick(pool, other);
            let from = point(from, other.len());
            let end = (from + usize::from(*n)).min(other.len());
            let at = point(at, len);
            bytes.splice(at..at, other[from..end].iter().copied());
        }
        Mutation::CrossOver { at, other, from } => {
            let other = pick(pool, other);
            let from = point(from, other.len());
            bytes.truncate(point(at, len));
            bytes.extend_from_slice(&other[from..]);
        }
    }
}

/// The bytes of `input`, its seed drawn from `pool`.
pub fn build(input: &Input, pool: &[Vec<u8>]) -> Vec<u8> {
    match input {
        Input::Raw(bytes) => bytes.clone(),
        Input::Mutated { seed, mutations } => {
            let mut bytes = pick(pool, seed).to_vec();
            for mutation in mutations {
                apply(&mut bytes, mutation, pool);
            }
            bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(i: usize) -> Pos {
        // Element `i` of a collection of 1000.
        let step = usize::MAX / 1000;
        Pos(step * i + step / 2)
    }

    #[test]
    fn inflate_replaces_a_whole_uleb128() {
        // A two-byte ULEB128 (300) followed by a marker.
        let mut bytes = vec![0xac, 0x02, 0xee];
        let at = Pos(0);
        apply(
            &mut bytes,
            &Mutation::Inflate {
                at,
                width: Width::Uleb,
                value: (1 << 31) - 1,
            },
            &[],
        );
        assert_eq!(bytes, [0xff, 0xff, 0xff, 0xff, 0x07, 0xee]);
        let mut bytes = vec![1, 2, 3, 4, 5];
        apply(
            &mut bytes,
            &Mutation::Inflate {
                at,
                width: Width::U32,
                value: u64::from(u32::MAX),
            },
            &[],
        );
        assert_eq!(bytes, [0xff, 0xff, 0xff, 0xff, 5]);
    }

    #[test]
    fn mutations_stay_in_bounds_on_empty_and_short_inputs() {
        let pool = vec![Vec::new(), vec![9; 3]];
        let all = [
            Mutation::FlipBit {
                at: index(999),
                bit: 9,
            },
            Mutation::SetByte {
                at: index(3),
                value: 1,
            },
            Mutation::Truncate { at: index(999) },
            Mutation::Insert {
                at: index(999),
                bytes: vec![1, 2],
            },
            Mutation::Remove {
                at: index(999),
                len: 200,
            },
            Mutation::Duplicate {
                at: index(999),
                len: 200,
            },
            Mutation::Inflate {
                at: index(999),
                width: Width::U64,
                value: 7,
            },
            Mutation::Splice {
                at: index(999),
                other: index(999),
                from: index(999),
                len: 999,
            },
            Mutation::CrossOver {
                at: index(0),
                other: index(999),
                from: index(0),
            },
        ];
        for start in [Vec::new(), vec![0x80], vec![1, 2, 3, 4]] {
            for mutation in &all {
                let mut bytes = start.clone();
                apply(&mut bytes, mutation, &pool);
                assert!(bytes.len() <= start.len() + 300, "{mutation:?}");
            }
        }
        let mut bytes = vec![1, 2, 3];
        apply(
            &mut bytes,
            &Mutation::CrossOver {
                at: index(500),
                other: index(999),
                from: index(0),
            },
            &pool,
        );
        assert_eq!(bytes, [1, 2, 9, 9, 9]);
    }
}
