#!/usr/bin/env bash
# Short, bounded runs of every fuzz target from its seed corpus (CI calls
# this). Usage: fuzz/run.sh [seconds per target, default 40] [target...]
# The targets are fuzz/Cargo.toml's [[bin]]s, in its order; name some to
# run only those.
# A crash stops the run and leaves the input in fuzz/artifacts/<target>/;
# turn it into a regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-40}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(awk '/^\[\[bin\]\]/ { bin = 1 } bin && /^name = / { gsub(/"/, "", $3); print $3; bin = 0 }' Cargo.toml)
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz (once, a few minutes)"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes -Z sanitizer flags; the pinned stable toolchain accepts
# them this way, and ships the AddressSanitizer runtime.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine-target}/fuzz"
echo "==> building the fuzz targets with AddressSanitizer (cached in $CARGO_TARGET_DIR)"
cargo fuzz build
for target in "${targets[@]}"; do
  # New inputs go to a scratch dir; the committed seeds stay as they are.
  scratch=$(mktemp -d)
  echo "==> fuzzing $target for ${secs}s"
  log=$(mktemp)
  if cargo fuzz run "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    status=0
  else
    status=$?
  fi
  grep -E "^(#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written|error)" "$log" || tail -20 "$log"
  rm -f "$log"
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
