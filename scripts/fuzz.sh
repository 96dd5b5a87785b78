#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of the parsers that take
# outside input. Each target runs for SECONDS (default 60); a crash stops the
# run and leaves its input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# The stable toolchain builds the sanitizer instrumentation with
# RUSTC_BOOTSTRAP=1. The first build takes several minutes.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz@0.13.2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(client_message connection_id sigv4_headers lambda_events job_request)
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  echo "==> $t for ${seconds}s"
  cargo fuzz run -O "$t" -- -max_total_time="$seconds" 2>&1 | grep -E '^(Done|SUMMARY|==)|panicked' || true
  if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
    echo "crash inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
