#!/usr/bin/env bash
# Reproduces the comparison of character n-gram lengths in
# docs/EVALUATION.md. For each topic, seed and setting it trains a model
# with its held-out splits, evaluates the held-out model on the test and
# validation splits, and, for seed 2024, on the same splits with one typo
# per title. Prints one JSON line per evaluation. Takes about 15 minutes
# on 2 cores after the build.
#
# Usage: scripts/compare-ngrams.sh [OUT_DIR]   (a temporary directory by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --locked --bin occoder
occoder="${CARGO_TARGET_DIR:-target}/release/occoder"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"

# Writes a copy of a labelled JSON Lines file with one typo in one title
# word of at least four letters: a letter dropped, two neighbours swapped,
# one replaced by another or one inserted. Records without such a word
# are left out.
add_typos() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, random, sys
source, target, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
letters = "abcdefghijklmnopqrstuvwxyz"
lines = []
for line in open(source):
    record = json.loads(line)
    words = record["occp_text"].split()
    candidates = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    if not candidates:
        continue
    i = rng.choice(candidates)
    word, k = words[i], rng.randrange(1, len(words[i]) - 1)
    edit = rng.randrange(4)
    if edit == 0:
        word = word[:k] + word[k + 1:]
    elif edit == 1:
        word = word[:k] + word[k + 1] + word[k] + word[k + 2:]
    elif edit == 2:
        word = word[:k] + rng.choice([letter for letter in letters if letter != word[k].lower()]) + word[k + 1:]
    else:
        word = word[:k] + rng.choice(letters) + word[k:]
    words[i] = word
    record["occp_text"] = " ".join(words)
    lines.append(json.dumps(record))
open(target, "w").write("\n".join(lines) + "\n")
PY
}

# Prints one evaluation as a JSON line with the run's labels. In place of
# the accuracy-versus-production curve it gives best_half_accuracy: the
# accuracy at the last point of the curve that codes at most half of the
# records.
report() {
    local label=$1 model=$2 data=$3
    "$occoder" evaluate --model "$model" --data "$data" --json | python3 -c "
import json, sys
figures = json.load(sys.stdin)[0]
curve = figures.pop('curve')
half = [point['accuracy'] for point in curve if point['production_rate'] <= 0.5 + 1e-9]
print(json.dumps({'run': '$label', 'best_half_accuracy': half[-1] if half else None, **figures}))"
}

for topic in osca anzsco; do
    for seed in 2024 7 11 13; do
        for ngrams in "4 5" "4 4" "5 5"; do
            read -r min max <<<"$ngrams"
            run="$work/$topic-$seed-$min$max"
            mkdir -p "$run"
            "$occoder" train --topic "$topic" --seed "$seed" --min-char-ngram "$min" --max-char-ngram "$max" \
                --out "$run/model.occm" --holdout-model "$run/holdout.occm" --splits-dir "$run" 2>/dev/null >/dev/null
            for split in test validation; do
                report "$topic seed $seed n-grams $min-$max $split" "$run/holdout.occm" "$run/$split.jsonl"
                if [[ $seed == 2024 ]]; then
                    add_typos "$run/$split.jsonl" "$run/$split-typos.jsonl" "$([[ $split == test ]] && echo 1 || echo 2)"
                    report "$topic seed $seed n-grams $min-$max $split with typos" "$run/holdout.occm" "$run/$split-typos.jsonl"
                fi
            done
        done
    done
done
