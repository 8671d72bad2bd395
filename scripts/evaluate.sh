#!/usr/bin/env bash
# Regenerates the figures of docs/EVALUATION.md. For each topic it trains
# with the shipped models' settings (same seed, so the same splits), then
# evaluates the model trained without the held-out titles on the test
# split, beside a flat SVM and a nearest-title matcher trained on the same
# training split. Writes docs/evaluation/<topic>-{test,validation}.txt and
# the accuracy-versus-production-rate curve as CSV and SVG.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin occoder
occoder="${CARGO_TARGET_DIR:-target}/release/occoder"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out=docs/evaluation
mkdir -p "$out"

for topic in osca anzsco; do
    "$occoder" train --topic "$topic" --out "$work/$topic.occm" \
        --holdout-model "$work/$topic-holdout.occm" --splits-dir "$work/$topic"
    for split in test validation; do
        "$occoder" evaluate --model "$work/$topic-holdout.occm" --data "$work/$topic/$split.jsonl" \
            --training-data "$work/$topic/training.jsonl" \
            --curve "$out/$topic-$split-curve.csv" --plot "$out/$topic-$split-curve.svg" \
            > "$out/$topic-$split.txt"
        cat "$out/$topic-$split.txt"
    done
done
