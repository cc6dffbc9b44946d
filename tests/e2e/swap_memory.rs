//! Memory across many swaps on the host path, where each version's model is
//! loaded natively, on each engine: after the first swaps have warmed the
//! allocator, more swaps must not grow the server's memory. (The guest
//! path's test is in `lifecycle.rs`.)
//!
//! The bound is on anonymous resident memory (`RssAnon`: heap, stacks,
//! linear memories), where a leak shows. `VmRSS` also counts pages of the
//! binary and the mapped `.cwasm` as code is first touched (~70 MB of
//! files, shared with every other process mapping them), so it is printed
//! but not bounded.

use std::time::Instant;

use crate::lifecycle::{
    post, proc_status_mb, publish, rss_mb, serve_tiny_for_swaps, states, wait_until,
};
use crate::support::swaps_or;

/// Swaps after which memory must be flat: 30 in CI, `VITRINE_SWAPS` for
/// `./reliability.sh --swaps 100`.
fn swaps() -> u64 {
    swaps_or(30).max(20)
}
const WARM: usize = 10;
/// Before `malloc_trim` after each unload, RSS grew 110 -> 168 MB over 20
/// swaps, 49 MB of it free memory malloc's arenas kept; with it, still 5-7
/// MB over swaps 10 to 30, until the mmap threshold and the arena count were
/// fixed (`runtime::memory::tune_allocator`). A leaked tiny-model pool is
/// ~12 MB.
const BOUND_MB: f64 = 5.0;
/// One reading moves by about a megabyte with what the last requests left
/// in the arenas, so each end of the comparison is the median of this many.
const WINDOW: usize = 5;

#[test]
fn host_path_memory_stays_flat_across_thirty_swaps_on_onnxruntime() {
    swaps_keep_memory_flat("onnxruntime");
}

#[test]
fn host_path_memory_stays_flat_across_thirty_swaps_on_tract() {
    swaps_keep_memory_flat("tract");
}

/// Swaps [`swaps`] versions of the tiny model in on the host path's
/// `engine`, three requests each, and bounds anonymous RSS growth after the
/// first [`WARM`]. The heap in use (malloc's own count, `/vitrine/stats`) is
/// printed beside it: a leak grows both, memory malloc keeps free only RSS.
fn swaps_keep_memory_flat(engine: &str) {
    let swaps = swaps();
    let (repo_dir, v1_dir, server, body, url) = serve_tiny_for_swaps(
        &format!("rss-{engine}"),
        &[
            "--inference=host",
            &format!("--native_engine={engine}"),
            "--tensorflow_inter_op_parallelism=2",
        ],
    );
    let (repo, v1) = (repo_dir.path(), v1_dir.path());
    let anon = |pid| proc_status_mb(pid, "RssAnon");
    let heap = || {
        let (_, stats) = server.get("/vitrine/stats");
        stats["heap_in_use_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6
    };
    let mut figures = vec![anon(server.pid())];
    let mut rss = vec![rss_mb(server.pid())];
    let mut heaps = vec![heap()];
    let started = Instant::now();
    for v in 2..=swaps + 1 {
        publish(v1, &repo.join(v.to_string()));
        wait_until(&server, &format!("version {v} replaces {}", v - 1), || {
            let s = states(&server, "m");
            s.get(&v).is_some_and(|(s, _)| s == "AVAILABLE")
                && s.get(&(v - 1)).is_none_or(|(s, _)| s == "END")
        });
        std::fs::remove_dir_all(repo.join((v - 1).to_string())).expect("remove old version");
        for _ in 0..3 {
            assert_eq!(post(&url, &body).version, Some(v));
        }
        figures.push(anon(server.pid()));
        rss.push(rss_mb(server.pid()));
        heaps.push(heap());
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let warm = median(&figures[WARM - WINDOW / 2..=WARM + WINDOW / 2]);
    let last = median(&figures[figures.len() - WINDOW..]);
    let round = |v: &[f64]| v.iter().map(|f| f.round() as i64).collect::<Vec<_>>();
    eprintln!(
        "host path on {engine}: anonymous RSS across {swaps} swaps ({:.0} s): first load {:.1} MB, around swap {WARM} {warm:.1} MB, over the last {WINDOW} {last:.1} MB (medians); all: {:?}; VmRSS: {:?}; heap in use (MB): {:?}",
        started.elapsed().as_secs_f64(),
        figures[0],
        round(&figures),
        round(&rss),
        round(&heaps),
    );
    eprintln!(
        "RELIABILITY-SUMMARY {}",
        serde_json::json!({"test": "swap_memory", "path": format!("host path, {engine}"),
            "swaps": swaps, "seconds": started.elapsed().as_secs_f64(), "first_mb": figures[0],
            "warm_mb": warm, "last_mb": last, "bound_mb": BOUND_MB,
            "heap_first_mb": heaps[0], "heap_last_mb": heaps.last(),
            "rss_anon_mb": round(&figures)})
    );
    assert!(
        last <= warm + BOUND_MB,
        "on {engine}, anonymous RSS grew from {warm:.1} MB around swap {WARM} to {last:.1} MB over the last {WINDOW} of {swaps} (medians): {figures:?}; heap in use (MB): {heaps:?}\n{}",
        server.log()
    );
}
