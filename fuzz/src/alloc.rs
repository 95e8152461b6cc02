//! A global allocator that counts, per thread, the bytes live while a
//! fuzz execution runs, so an input that makes a parser reserve far more
//! than it holds is caught even when the allocation succeeds.
//!
//! A binary opts in with
//! `#[global_allocator] static A: floe_fuzz::CountingAlloc = floe_fuzz::CountingAlloc;`.
//! Outside [`track`] it only passes calls to the system allocator (one
//! thread-local flag read per call), so it costs nothing measurable to the
//! other tasks of the same binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

/// The counting allocator: the system allocator, plus per-thread counters
/// while [`track`] runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
    static OVER: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn note(delta: isize) {
    // `try_with`: an allocation during thread teardown must not panic.
    let tracking = TRACKING.try_with(Cell::get).unwrap_or(false);
    if !tracking {
        return;
    }
    let now = LIVE
        .try_with(|live| {
            let now = live.get().saturating_add(delta);
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
            now
        })
        .unwrap_or(0);
    if delta > 0 && now > LIMIT.try_with(Cell::get).unwrap_or(isize::MAX) {
        over_limit();
    }
}

/// Keeps the stack of the first allocation that takes the thread over its
/// limit: where a parser reserves what it should not. Counting is paused
/// meanwhile, so the capture's own allocations neither count nor recurse.
#[cold]
fn over_limit() {
    let fresh = OVER.try_with(|o| o.try_borrow().map(|o| o.is_none()).unwrap_or(false));
    if fresh != Ok(true) {
        return;
    }
    let _ = TRACKING.try_with(|t| t.set(false));
    let stack = std::backtrace::Backtrace::force_capture().to_string();
    let _ = OVER.try_with(|o| {
        if let Ok(mut o) = o.try_borrow_mut() {
            *o = Some(stack);
        }
    });
    let _ = TRACKING.try_with(|t| t.set(true));
}

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are const-initialized thread-locals
// without destructors, so touching them never allocates or re-enters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            note(size(layout));
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            note(size(layout));
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        note(-size(layout));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            note(isize::try_from(new_size).unwrap_or(isize::MAX) - size(layout));
        }
        moved
    }
}

/// Runs `f`, returning its result and the most bytes it held allocated at
/// once on this thread (0 when [`CountingAlloc`] is not the global
/// allocator). Memory freed by `f` that was allocated before counts as
/// negative, so it never inflates the figure.
pub fn track<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (result, peak, _) = track_limited(usize::MAX, f);
    (result, peak)
}

/// [`track`], also returning the stack of the first allocation that took
/// the bytes held over `limit` (if any did).
pub fn track_limited<R>(limit: usize, f: impl FnOnce() -> R) -> (R, usize, Option<String>) {
    LIVE.with(|live| live.set(0));
    PEAK.with(|peak| peak.set(0));
    LIMIT.with(|l| l.set(isize::try_from(limit).unwrap_or(isize::MAX)));
    OVER.with(|o| o.borrow_mut().take());
    TRACKING.with(|t| t.set(true));
    let result = f();
    TRACKING.with(|t| t.set(false));
    LIMIT.with(|l| l.set(isize::MAX));
    let peak = PEAK.with(Cell::get);
    let over = OVER.with(|o| o.borrow_mut().take());
    (result, usize::try_from(peak).unwrap_or(0), over)
}

/// Runs `f` without counting its allocations (a panic hook capturing a
/// backtrace, for one).
pub fn paused<R>(f: impl FnOnce() -> R) -> R {
    let was = TRACKING.with(|t| t.replace(false));
    let result = f();
    TRACKING.with(|t| t.set(was));
    result
}

/// Whether [`CountingAlloc`] is the global allocator of this binary.
pub fn installed() -> bool {
    let ((), peak) = track(|| drop(std::hint::black_box(Box::new([0u8; 64]))));
    peak >= 64
}
