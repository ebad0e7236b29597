#!/usr/bin/env bash
# KV-Distill on the shipped model (issue 8): trains the adaptor (lambda 0.6) and the ablation
# adaptors (lambda 1, 0.4, 0; no routing) on the training books, then evaluates them on held-out
# questions from the test books against the full context, H2O (question-independent and
# question-aware), SnapKV and FreqKV at equal bytes. Steps whose output exists are skipped.
#
#   bash scripts/kvdistill.sh              # then: bash scripts/results.sh rebuilds the page
#   THREADS=1 bash scripts/kvdistill.sh    # leave a core to another job
set -euo pipefail
cd "$(dirname "$0")/.."

F="node bin/freqkv.js"
M=${MODEL:-models/freqkv-tiny}
R=${RUNS:-runs/kvdistill}
STEPS=${KVD_STEPS:-300}
TH=(); [ -n "${THREADS:-}" ] && TH=(--threads "$THREADS")
[ -f data/manifest.json ] || $F data --tokenizer $M --out data

train() { # train <name> <flags...>
  local name=$1; shift
  [ -f "$R/$name/adaptor.safetensors" ] && [ -f "$R/$name/done" ] && return
  rm -rf "$R/$name"
  $F train kvdistill --model $M --data data --steps $STEPS --out "$R/$name" "${TH[@]}" "$@"
  touch "$R/$name/done"
}
train lambda0.6
train lambda1 --lambda 1
train lambda0.4 --lambda 0.4
train lambda0 --lambda 0
train norouting --no-routing

out="$R/eval"
if [ ! -f "$out/result.json" ]; then
  resume=(); [ -f "$out/state.json" ] && resume=(--resume)
  $F eval kvdistill --model $M --adaptor "$R/lambda0.6/adaptor.safetensors" \
    --adaptors "lambda1=$R/lambda1/adaptor.safetensors,lambda0.4=$R/lambda0.4/adaptor.safetensors,lambda0=$R/lambda0/adaptor.safetensors,norouting=$R/norouting/adaptor.safetensors" \
    --retain 0.01,0.05,0.1,0.2,0.25 --out "$out" ${QUICK:+--quick} "${TH[@]}" "${resume[@]}"
fi
