//! The component's allocator (wasm only): the system allocator, counting the
//! bytes in use, and zeroing freed blocks while pre-initializing.
//!
//! `preinit` switches zeroing on around the model's load, so the snapshot,
//! which skips zero pages, leaves out what loading freed (the ONNX bytes,
//! tract's intermediate graphs). The counts say what the snapshot holds.
//! A leaf: it imports no other module, so `inference` can report its
//! loading stages here without importing `preinit`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Switches zeroing of freed blocks on or off.
pub fn zero_freed(on: bool) {
    ZERO_FREED.store(on, Ordering::SeqCst);
}

/// Heap bytes in use now, and the most in use at once so far.
pub fn in_use() -> (usize, usize) {
    (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed))
}

/// Set while pre-initializing: see the module docs.
static ZERO_FREED: AtomicBool = AtomicBool::new(false);

/// Heap bytes allocated and not freed, and their highest value.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// While pre-initializing, reports that loading reached `stage` and the heap
/// then in use: progress, and where the snapshot's bytes come from.
pub fn stage(stage: &str) {
    if ZERO_FREED.load(Ordering::Relaxed) {
        crate::warn!(
            "vitrine: pre-initializing: {stage} ({} MB in use on the heap)",
            LIVE.load(Ordering::Relaxed) >> 20
        );
    }
}

fn count_alloc(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn count_free(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
}

/// The system allocator, zeroing what is freed while [`ZERO_FREED`] is set.
struct ZeroFreed;

// SAFETY: every call goes to `System`; zeroing writes only to the block being
// freed, which the caller still owns.
unsafe impl GlobalAlloc for ZeroFreed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ZERO_FREED.load(Ordering::Relaxed) {
            unsafe { ptr.write_bytes(0, layout.size()) };
        }
        count_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ZERO_FREED.load(Ordering::Relaxed) {
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                count_free(layout.size());
                count_alloc(new_size);
            }
            return new;
        }
        // Moving by hand so the old block can be zeroed.
        // SAFETY: the caller guarantees `new_size` is valid for `layout`'s alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            count_alloc(new_size);
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: ZeroFreed = ZeroFreed;
