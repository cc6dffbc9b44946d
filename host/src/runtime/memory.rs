//! Gives memory freed by an unloaded version back to the operating system,
//! and says how much of the heap is in use.
//!
//! glibc's malloc keeps what is freed in per-thread arenas for reuse (a
//! model is loaded on a blocking-pool thread, its runs happen on tract's
//! and tokio's threads, so its allocations spread over many arenas) and
//! returns it only when the top of an arena is free. Measured with
//! `malloc_stats` after 20 swaps of the tiny model on the host path: 87 MB
//! held from the system, 9.6 MB in use; `malloc_trim(0)` took RSS from 172
//! to 123 MB. So after each unload the arenas are trimmed.

/// Sets glibc's mmap threshold to a fixed 1 MiB, and its arenas to one per
/// core, at start.
///
/// By default glibc raises the threshold to the size of each mmapped block
/// it frees (up to 32 MiB): after the first unload, a model's weight
/// tensors (1-10 MB each for ViT) come from the arenas instead of mmap,
/// where they fragment what the next version allocates and stay resident
/// after it is freed. A fixed threshold keeps every large tensor in its own
/// mapping, unmapped the moment it is freed, whatever allocates it (Rust,
/// tract, onnxruntime's C++).
///
/// glibc also gives threads up to 8 arenas per core, and each arena keeps a
/// few MB that trimming cannot return (free chunks between live ones). New
/// blocking-pool threads take new arenas, so RSS rose in steps with the
/// thread count: measured over 100 swaps of the tiny model on tract, 24 ->
/// 29 MB anonymous RSS by default, 24 -> 25.5 MB with 2 arenas; a CI run
/// under parallel load grew 7 MB in 20 swaps. One arena per core still lets
/// every core allocate without waiting on another.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores.max(2)).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes malloc's parameters; called before
        // any thread but the main one exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Bytes malloc has handed out and not had back (arena chunks and mmapped
/// blocks): every allocation in the process, Rust's and onnxruntime's. What
/// a leak grows; RSS also counts what the arenas keep free.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads malloc's counters under its own locks.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns the free pages of every malloc arena to the system.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes glibc's arena locks itself and only
    // releases memory that no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
