#!/usr/bin/env bash
# GPU check for augur-cuda, on a machine with a CUDA GPU, its driver and NVRTC (libnvrtc):
#   1. builds augur-cuda with --features cuda (no CUDA toolkit needed: cudarc loads the driver
#      and NVRTC at run time; the kernels are compiled by NVRTC when the backend starts);
#   2. runs all its tests, the GPU tests included (--include-ignored), with AUGUR_REQUIRE_GPU=1,
#      so a missing GPU fails the run instead of skipping;
#   3. runs the bandwidth bench: swap out / swap in (GB/s over the host link) and copy-on-write
#      copies, each against one plain contiguous copy of the same bytes.
# Usage: scripts/gpu-check.sh [BLOCKS]   (blocks moved per bench op, default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export AUGUR_REQUIRE_GPU=1
blocks="${1:-512}"

step() { printf '\n==> %s\n' "$*"; }

if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "note: nvidia-smi not found; the tests below fail if there is no usable GPU"
fi

step "build augur-cuda with --features cuda"
cargo build --release -p augur-cuda --features cuda --all-targets

step "tests, GPU tests included (AUGUR_REQUIRE_GPU=1)"
cargo test --release -p augur-cuda --features cuda -- --include-ignored

step "bandwidth (${blocks} blocks per op)"
cargo run --release -p augur-cuda --features cuda --example bandwidth -- "${blocks}"

echo
echo "gpu-check passed"
