//! The append path does no per-record work: the number of allocations of
//! one append does not grow with the number of records in the batch.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards
// to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by appending `b` (median of several appends, so an
/// occasional index push or roll does not count).
fn allocations_per_append(log: &storage::Log, b: &bytes::Bytes) -> u64 {
    let mut counts = Vec::new();
    for _ in 0..9 {
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        log.append_as_leader(b, 0, 0).unwrap();
        COUNTING.store(false, Ordering::SeqCst);
        counts.push(ALLOCATIONS.load(Ordering::SeqCst));
    }
    counts.sort_unstable();
    counts[counts.len() / 2]
}

#[test]
fn an_append_allocates_the_same_for_ten_records_or_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, log) = open(dir.path(), small_config(64 << 20));
    let few = batch(10, 100, 0, 1);
    let many = batch(1000, 10, 0, 2);
    log.append_as_leader(&few, 0, 0).unwrap();
    let for_few = allocations_per_append(&log, &few);
    let for_many = allocations_per_append(&log, &many);
    assert_eq!(for_few, for_many, "allocations grow with the record count");
    assert!(for_few <= 4, "{for_few} allocations for one append");
}
