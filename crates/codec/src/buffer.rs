//! The two large buffers an encode writes its slivers into.
//!
//! A 64 MiB blob needs ~300 MB of sliver buffers, and faulting that in 4 KiB
//! pages (each zeroed by the kernel on first touch) costs about as much as
//! the Reed–Solomon work itself. Large buffers are therefore anonymous maps
//! advised to use transparent huge pages where the OS supports it, and fall
//! back to an ordinary allocation otherwise.

use bytes::Bytes;
use memmap2::MmapMut;

/// Buffers smaller than this are plain heap allocations.
const MAP_THRESHOLD: usize = 8 << 20;

pub(crate) enum SliverBuffer {
    Heap(Vec<u8>),
    Mapped(MmapMut),
}

impl SliverBuffer {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn zeroed(len: usize) -> Self {
        if len >= MAP_THRESHOLD {
            if let Ok(map) = MmapMut::map_anon(len) {
                #[cfg(target_os = "linux")]
                // Only advice: a kernel without THP simply ignores it.
                let _ = map.advise(memmap2::Advice::HugePage);
                return SliverBuffer::Mapped(map);
            }
        }
        SliverBuffer::Heap(vec![0u8; len])
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            SliverBuffer::Heap(vec) => vec,
            SliverBuffer::Mapped(map) => map,
        }
    }

    /// Freezes the buffer into shareable bytes without copying.
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            SliverBuffer::Heap(vec) => Bytes::from(vec),
            SliverBuffer::Mapped(map) => Bytes::from_owner(map),
        }
    }
}
