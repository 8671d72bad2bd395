#!/usr/bin/env bash
# Reruns every benchmark in BENCHMARKS.md and prints the figures:
# machine, criterion engine benchmarks, callgrind instructions per record,
# one full training run per topic, the gRPC load generator and bulk coding.
#
# Usage: scripts/bench.sh [--quick]
#   --quick  shorter criterion and load runs, 100,000 streamed records
#            and no training run; for checking that everything still runs.
# Cargo's target directory is $CARGO_TARGET_DIR, or target/ when unset.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
if [[ "${1:-}" == "--quick" ]]; then
    quick=true
fi
if $quick; then
    criterion_args=(--warm-up-time 1 --measurement-time 3)
    loadgen_args=(--seconds 3 --stream-records 100000)
    bulk_args=(--records 100000)
else
    criterion_args=(--warm-up-time 3 --measurement-time 10)
    loadgen_args=(--seconds 10 --stream-records 1000000)
    bulk_args=(--records 1000000)
fi

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|L1d|L2|L3)' || true
free -h | head -2
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine slows every figure)"
git log -1 --format='commit %h %s' 2>/dev/null || true

echo "== build"
cargo build --release --bin occoder
cargo bench --no-run --bench engine --bench hotpath --bench training --bench loadgen --bench bulk_throughput

echo "== engine benchmarks (criterion; time per iteration and elements per second)"
cargo bench --bench engine -- "${criterion_args[@]}" 2>&1 | grep -E '^[a-z_]+/|time:|thrpt:'

echo "== hot path, one thread"
hotpath=$(cargo bench --no-run --bench hotpath 2>&1 | sed -n 's/.*Executable .*(\(.*hotpath-[0-9a-f]*\)).*/\1/p' | tail -1)
"$hotpath"
if command -v valgrind >/dev/null; then
    out=$(mktemp)
    # The program's own output carries the record count; callgrind's report
    # goes to a file and its log to /dev/null.
    report=$(valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*Model*code_with*' "$hotpath" 2>/dev/null)
    echo "$report"
    records=$(sed -n 's/^\([0-9]*\) records coded.*/\1/p' <<<"$report")
    instructions=$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    echo "callgrind: $instructions instructions in code_with, $((instructions / records)) per record"
    rm -f "$out"
else
    echo "valgrind is not installed; skipping the instruction count"
fi

if ! $quick; then
    echo "== training, one full run per topic"
    cargo bench --bench training
fi

echo "== gRPC load generator (server and client share the machine)"
cargo bench --bench loadgen -- "${loadgen_args[@]}"

echo "== bulk coding: CodeStream and an asynchronous operation (server and client share the machine)"
cargo bench --bench bulk_throughput -- "${bulk_args[@]}"
