//! A 600 MiB string returned to the host is refused before the host copies
//! it: the host's own heap does not grow by it.
//!
//! Guest linear memory comes from the pooling allocator's mmap, not the heap,
//! so a counting global allocator sees only what the host itself allocates.
//! The count is per thread: the call runs on this test's single-threaded
//! runtime, and other tests running in parallel do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use warden_core::LimitKind;
use warden_tests::artifacts::HOSTILE;

use crate::*;

struct Counting;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    // `try_with`: the allocator may run while thread-locals are torn down.
    let _ = CURRENT.try_with(|c| {
        let now = c.get().saturating_add_signed(delta);
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every method forwards to the system allocator unchanged; the only
// addition is bookkeeping in const-initialised thread-locals that never
// allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test]
async fn a_600_mib_result_is_refused_without_growing_the_host() {
    let p = plugin(HOSTILE);
    let o = with_limits(Grant::default(), |l| {
        l.memory_bytes = 1024 * 1024 * 1024;
        l.fuel = u64::MAX / 2;
        l.timeout = std::time::Duration::from_secs(60);
    });
    let before = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(before));

    let out = p.call_tool(&o, "big_output", r#"{"mib":600}"#).await;
    assert_eq!(limit(&out), LimitKind::Output);

    let grew = PEAK.with(Cell::get).saturating_sub(before);
    assert!(
        grew < 32 * 1024 * 1024,
        "the host heap grew by {} MiB during the call",
        grew / (1024 * 1024)
    );
}
