//! Memory across many swaps on the host path, where each version's model is
//! loaded natively by tract: after the first swaps have warmed the
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
    copy_dir, post, proc_status_mb, publish, rss_mb, serve_args, states, wait_until,
};
use crate::support::*;

/// Swaps after which memory must be flat; CI-sized (`./reliability.sh`
/// runs 100).
const SWAPS: u64 = 30;
const WARM: usize = 10;
/// Before `malloc_trim` after each unload, RSS grew 110 -> 168 MB over 20
/// swaps, 49 MB of it free memory malloc's arenas kept.
const BOUND_MB: f64 = 5.0;

#[test]
fn host_path_memory_stays_flat_across_thirty_swaps() {
    let repo_dir = fresh_dir("rss-host");
    let repo = repo_dir.path();
    let v1_dir = fresh_dir("rss-host-v1");
    let v1 = v1_dir.path();
    copy_dir(&tiny_version(0), v1);
    std::fs::write(v1.join(".ready"), b"").expect("marker");
    publish(v1, &repo.join("1"));
    let mut server = Server::spawn(
        "m",
        &serve_args(
            repo,
            &["--inference=host", "--tensorflow_inter_op_parallelism=2"],
        ),
    );
    server.wait_ready();
    let body = blog_request(&coco_jpeg()).to_string();
    let url = server.url("/v1/models/m:predict");
    assert_eq!(post(&url, &body).version, Some(1));
    let anon = |pid| proc_status_mb(pid, "RssAnon");
    let mut figures = vec![anon(server.pid())];
    let mut rss = vec![rss_mb(server.pid())];
    let started = Instant::now();
    for v in 2..=SWAPS + 1 {
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
    }
    let warm = figures[WARM];
    let last = *figures.last().expect("figures");
    eprintln!(
        "host path anonymous RSS across {SWAPS} swaps ({:.0} s): first load {:.1} MB, after {WARM} swaps {warm:.1} MB, after {SWAPS} {last:.1} MB; all: {:?}; VmRSS: {:?}",
        started.elapsed().as_secs_f64(),
        figures[0],
        figures.iter().map(|f| f.round() as i64).collect::<Vec<_>>(),
        rss.iter().map(|f| f.round() as i64).collect::<Vec<_>>()
    );
    assert!(
        last <= warm + BOUND_MB,
        "anonymous RSS grew from {warm:.1} MB after {WARM} swaps to {last:.1} MB after {SWAPS}: {figures:?}\n{}",
        server.log()
    );
}
