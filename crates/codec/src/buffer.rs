//! The two large buffers an encode writes its slivers into, and the one a
//! decode writes a blob into ([`crate::decode_bytes`]).
//!
//! A 64 MiB blob needs ~300 MB of sliver buffers, and faulting that in 4 KiB
//! pages (each zeroed by the kernel on first touch) costs about as much as
//! the Reed–Solomon work itself. Large buffers are therefore anonymous maps
//! advised to use transparent huge pages where the OS supports it, and fall
//! back to an ordinary allocation otherwise.
//!
//! A map is recycled: when the last sliver cut from it is dropped, it goes
//! back to a small process-wide pool (at most [`POOL_BYTES`]), and the next
//! encode of a similar size writes into pages that are already faulted in
//! (measured: the spread of n=100 64 MiB encodes went from 400–700 ms to
//! within ±5 %). A map idle in the pool for [`POOL_IDLE`] is unmapped by a
//! reaper thread that runs only while the pool holds maps. A recycled buffer
//! holds the previous blob's slivers: the encoder writes every byte of it
//! (see `encode`); debug builds fill it with a poison pattern first, so a
//! byte left unwritten changes the blob ID in every large-blob test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memmap2::MmapMut;

/// Buffers smaller than this are plain heap allocations.
const MAP_THRESHOLD: usize = 8 << 20;

/// At most this many bytes of maps wait in the pool.
const POOL_BYTES: usize = 640 << 20;

/// A pooled map not reused for this long is unmapped (by the reaper thread,
/// or by the next map returned to the pool).
const POOL_IDLE: Duration = Duration::from_secs(30);

static POOL: Mutex<Vec<(Instant, MmapMut)>> = Mutex::new(Vec::new());

/// Whether a reaper thread is running.
static REAPING: AtomicBool = AtomicBool::new(false);

fn pool() -> std::sync::MutexGuard<'static, Vec<(Instant, MmapMut)>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes the maps idle for [`POOL_IDLE`] out of `pool`, to be unmapped
/// once the lock is released.
fn expired(pool: &mut Vec<(Instant, MmapMut)>, now: Instant) -> Vec<(Instant, MmapMut)> {
    let (old, kept) = std::mem::take(pool)
        .into_iter()
        .partition(|(since, _)| now.duration_since(*since) >= POOL_IDLE);
    *pool = kept;
    old
}

/// Unmaps idle maps every [`POOL_IDLE`] while the pool holds any.
fn reap() {
    loop {
        std::thread::sleep(POOL_IDLE);
        let mut pool = pool();
        let old = expired(&mut pool, Instant::now());
        if pool.is_empty() {
            REAPING.store(false, Ordering::Release);
            return;
        }
        drop(pool);
        drop(old);
    }
}

pub(crate) enum SliverBuffer {
    Heap(Vec<u8>),
    Mapped { map: MmapMut, len: usize },
}

impl SliverBuffer {
    /// A buffer of `len` bytes whose contents are unspecified (zero, or a
    /// previous encode's slivers): the caller writes every byte it keeps.
    pub(crate) fn for_overwrite(len: usize) -> Self {
        if len >= MAP_THRESHOLD {
            if let Some(map) = take_pooled(len) {
                return SliverBuffer::Mapped { map, len };
            }
            if let Ok(map) = MmapMut::map_anon(len) {
                #[cfg(target_os = "linux")]
                // Only advice: a kernel without THP simply ignores it.
                let _ = map.advise(memmap2::Advice::HugePage);
                return SliverBuffer::Mapped { map, len };
            }
        }
        SliverBuffer::Heap(vec![0u8; len])
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            SliverBuffer::Heap(vec) => vec,
            SliverBuffer::Mapped { map, len } => &mut map[..*len],
        }
    }

    /// Freezes the buffer into shareable bytes without copying.
    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            SliverBuffer::Heap(vec) => Bytes::from(vec),
            SliverBuffer::Mapped { map, len } => {
                Bytes::from_owner(Recycled(Some(map))).slice(..len)
            }
        }
    }
}

impl AsMut<[u8]> for SliverBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for SliverBuffer {
    fn as_ref(&self) -> &[u8] {
        match self {
            SliverBuffer::Heap(vec) => vec,
            SliverBuffer::Mapped { map, len } => &map[..*len],
        }
    }
}

/// Takes a pooled map of at least `len` bytes and at most a quarter more.
fn take_pooled(len: usize) -> Option<MmapMut> {
    let mut pool = pool();
    let fits = |map: &MmapMut| map.len() >= len && map.len() - len <= len / 4;
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, (_, map))| fits(map))
        .min_by_key(|(_, (_, map))| map.len())
        .map(|(i, _)| i)?;
    #[allow(unused_mut)]
    let mut map = pool.swap_remove(best).1;
    drop(pool);
    #[cfg(debug_assertions)]
    map[..len].fill(0xE5);
    Some(map)
}

/// The owner of a mapped buffer's [`Bytes`]: returns the map to the pool
/// when the last sliver cut from it is dropped.
struct Recycled(Option<MmapMut>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let Some(map) = self.0.take() else { return };
        if map.len() > POOL_BYTES {
            return;
        }
        let mut pool = pool();
        let now = Instant::now();
        let mut unmap = expired(&mut pool, now);
        // Oldest first out until the new map fits under the cap.
        let mut held: usize = pool.iter().map(|(_, m)| m.len()).sum();
        while held + map.len() > POOL_BYTES {
            let oldest = pool.remove(0);
            held -= oldest.1.len();
            unmap.push(oldest);
        }
        pool.push((now, map));
        drop(pool);
        if !REAPING.swap(true, Ordering::AcqRel)
            && std::thread::Builder::new()
                .name("floe-codec-pool".into())
                .spawn(reap)
                .is_err()
        {
            // No thread: maps then leave the pool only as it is used.
            REAPING.store(false, Ordering::Release);
        }
        // Unmapped here, outside the lock.
        drop(unmap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_map_is_reused_and_a_small_buffer_is_not_pooled() {
        let len = MAP_THRESHOLD + 12_345;
        let mut first = SliverBuffer::for_overwrite(len);
        first.as_mut_slice().fill(7);
        let bytes = first.into_bytes();
        assert_eq!(bytes.len(), len);
        let kept = bytes.slice(10..20);
        drop(bytes);
        // A slice still holds the map: it is not in the pool yet, so a new
        // buffer is fresh (zeroed by the kernel).
        let mut fresh = SliverBuffer::for_overwrite(len);
        assert!(fresh.as_mut_slice().iter().all(|b| *b == 0));
        assert_eq!(&kept[..], &[7; 10]);
        drop(kept);
        drop(fresh);
        // The first map is back and is handed out again, for a somewhat
        // smaller buffer too: its length is the one asked for.
        let mut again = SliverBuffer::for_overwrite(len - 1000);
        assert!(matches!(again, SliverBuffer::Mapped { .. }));
        assert_eq!(again.as_mut_slice().len(), len - 1000);
        let bytes = again.into_bytes();
        assert_eq!(bytes.len(), len - 1000);
        drop(bytes);
        // Far larger requests do not take a small pooled map.
        assert!(take_pooled(len * 2).is_none());
        assert!(take_pooled(len - 1000).is_some());
        assert!(matches!(
            SliverBuffer::for_overwrite(100),
            SliverBuffer::Heap(_)
        ));
    }

    #[test]
    fn a_map_over_the_cap_is_unmapped_not_pooled() {
        // Untouched pages of an anonymous map cost nothing.
        let len = POOL_BYTES + (1 << 20);
        drop(SliverBuffer::for_overwrite(len).into_bytes());
        assert!(pool().iter().all(|(_, map)| map.len() <= POOL_BYTES));
    }

    #[test]
    fn idle_maps_expire() {
        let now = Instant::now();
        let mut pool = vec![(now, MmapMut::map_anon(4096).unwrap())];
        assert!(expired(&mut pool, now + POOL_IDLE / 2).is_empty());
        assert_eq!(pool.len(), 1);
        assert_eq!(expired(&mut pool, now + POOL_IDLE).len(), 1);
        assert!(pool.is_empty());
    }
}
