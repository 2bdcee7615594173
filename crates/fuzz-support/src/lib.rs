//! Dev-only support for the proptest fuzz targets of every crate (see the
//! "Fuzzing" entry of ARCHITECTURE.md): one case budget for all of them;
//! an allocator that measures the largest single allocation, for the
//! targets that check no length field is believed before it is checked;
//! and damage to files on disk, for the recovery targets.
//!
//! A dev-dependency only: no library or binary links it.

// The measuring allocator needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// `PROPTEST_CASES` when set (a long local run), else the target's CI
/// budget: each target picks the number of cases that runs in about a
/// second.
pub fn cases(default_cases: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases)
}

/// The proptest config of a fuzz target: [`cases`], and no regression
/// files (a failure prints its shrunk input, which becomes a named test).
pub fn config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Forwards to the system allocator, noting the largest allocation the
/// current thread makes inside [`largest_allocation`]. A test binary that
/// uses it declares `#[global_allocator] static A: MeasuringAllocator =
/// MeasuringAllocator;`.
#[derive(Debug)]
pub struct MeasuringAllocator;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread exits.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only const-initialised
// thread-locals without destructors and never allocates.
unsafe impl GlobalAlloc for MeasuringAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns the largest single allocation it made on this
/// thread (0 unless the binary's global allocator is a
/// [`MeasuringAllocator`]).
pub fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    MEASURING.with(|m| m.set(true));
    f();
    MEASURING.with(|m| m.set(false));
    LARGEST.with(Cell::get)
}

/// One kind of damage to a file; positions wrap around its length.
#[derive(Debug, Clone)]
pub enum Damage {
    FlipBit { at: usize, bit: u8 },
    Overwrite { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
    AppendGarbage { bytes: Vec<u8> },
    Zero { at: usize, len: usize },
    Delete,
}

/// Any damage, weighted toward the subtle kinds (a flipped bit, a few
/// overwritten bytes, among them an offset set near `i64::MAX`).
pub fn arb_file_damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit { at, bit }),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Damage::Overwrite { at, bytes }),
        1 => any::<usize>().prop_map(|at| Damage::Overwrite { at, bytes: vec![0x7f; 8] }),
        2 => any::<usize>().prop_map(|at| Damage::Truncate { at }),
        1 => proptest::collection::vec(any::<u8>(), 1..64)
            .prop_map(|bytes| Damage::AppendGarbage { bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Damage::Zero { at, len }),
        1 => Just(Damage::Delete),
    ]
}

/// Applies `damage` to the file at `path` and returns the first byte it
/// changed (0 for a deletion), or `None` if it changed nothing (a write
/// into an empty file). Panics on I/O errors: this is test code.
pub fn damage_file(path: &Path, damage: &Damage) -> Option<u64> {
    let mut bytes = std::fs::read(path).expect("read the file to damage");
    let len = bytes.len();
    let first_changed = match damage {
        Damage::Delete => {
            std::fs::remove_file(path).expect("delete");
            return Some(0);
        }
        Damage::FlipBit { at, bit } if len > 0 => {
            bytes[at % len] ^= 1 << bit;
            at % len
        }
        Damage::Overwrite { at, bytes: new } if len > 0 => {
            let at = at % len;
            let end = (at + new.len()).min(len);
            bytes[at..end].copy_from_slice(&new[..end - at]);
            at
        }
        Damage::Zero { at, len: n } if len > 0 => {
            let at = at % len;
            let end = (at + n).min(len);
            bytes[at..end].fill(0);
            at
        }
        Damage::Truncate { at } => {
            let at = at % (len + 1);
            bytes.truncate(at);
            at
        }
        Damage::AppendGarbage { bytes: more } => {
            bytes.extend_from_slice(more);
            len
        }
        _ => return None,
    };
    std::fs::write(path, bytes).expect("write the damaged file");
    Some(first_changed as u64)
}
