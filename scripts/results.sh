#!/usr/bin/env bash
# Regenerates docs/results.md from scratch: every number on the page comes from the commands
# below, run on the shipped model and the held-out test books. Each step is skipped when its
# result is already there, and a step that was interrupted continues with --resume, so the
# script can be stopped and run again. About 80 minutes on a 2-core machine.
#
#   bash scripts/results.sh            # everything
#   RUNS=runs/x QUICK=1 bash scripts/results.sh   # a smoke test (minutes)
#   EXTRA_RESULTS=runs/kvdistill bash scripts/results.sh   # the page also shows scripts/kvdistill.sh's results
set -euo pipefail
cd "$(dirname "$0")/.."

# THREADS=1 leaves the other core to a second job (scripts/kvdistill.sh).
F="node bin/freqkv.js"
TH=(); [ -n "${THREADS:-}" ] && TH=(--threads "$THREADS")
M=${MODEL:-models/freqkv-tiny}
R=${RUNS:-runs/results}
if [ "${QUICK:-0}" = 1 ]; then
  LEN=${QUICK_LENGTHS:-256,512,1024}; W=2; T=1; STEPS=4; DEPTHS=0,1
else
  LEN=256,512,1024,2048,4096,8192; W=${MAX_WINDOWS:-12}; T=${TRIALS:-3}; STEPS=${FT_STEPS:-150}; DEPTHS=0,0.25,0.5,0.75,1
fi

# One evaluation: skipped when done, resumed when interrupted.
ev() { # ev <sub> <out> <flags...>
  local sub=$1 out=$2; shift 2
  if [ -f "$out/result.json" ]; then echo "results.sh: $out done" >&2; return; fi
  local resume=(); [ -f "$out/state.json" ] && resume=(--resume)
  $F eval "$sub" --out "$out" "$@" "${TH[@]}" "${resume[@]}"
}

# One fine-tune at twice the window: the FreqKV recipe of FREQKV.md section 3 scaled down
# (LoRA rank 8, alpha 16 on q,k,v,o; embeddings and norms trainable; constant lr after warm-up).
ft() { # ft <out> <flags...>
  local out=$1; shift
  if [ -f "$out/train/checkpoint.safetensors" ]; then
    $F train finetune --out "$out" --resume "${TH[@]}"
  else
    $F train finetune --model $M --data data --seq-len 512 --lora-rank 8 --lora-alpha 16 --train embed,norm \
      --lr 5e-4 --warmup 10 --schedule constant --batch 8 --steps $STEPS --eval-every 50 --save-every 25 --out "$out" "${TH[@]}" "$@"
  fi
}

[ -f data/manifest.json ] || $F data --tokenizer $M --out data

# 1. The shipped model, training-free: perplexity by the paper's protocol and the passkey grid.
#    (`freqkv eval all` is the one command for this: it writes base/ppl, base/passkey and a page.)
if [ ! -f "$R/base/ppl/result.json" ] || [ ! -f "$R/base/passkey/result.json" ]; then
  # --resume is safe on a fresh run (it starts one) and skips what a previous run finished
  $F eval all --model $M --policy full,window,freqkv,h2o --lengths $LEN --max-windows $W --depths $DEPTHS --trials $T \
    --out "$R/base" --page "$R/base/results.md" "${TH[@]}" --resume
fi

# 2. Fine-tunes at 512 tokens (twice the window): FreqKV with compression in the loop, and the
#    LongLoRA-style full-cache baseline with positions interpolated into the window.
ft "$R/ft-freqkv" --method freqkv
ft "$R/ft-longlora" --method longlora

# 3. Table 1 rows for the fine-tuned models (the base rows are step 1), same windows.
ev ppl "$R/ft-freqkv-ppl" --model "$R/ft-freqkv" --policy freqkv --lengths $LEN --max-windows $W
ev ppl "$R/ft-longlora-ppl" --model "$R/ft-longlora" --policy full --lengths $LEN --max-windows $W
ev passkey "$R/ft-freqkv-passkey" --model "$R/ft-freqkv" --policy freqkv --lengths $LEN --depths $DEPTHS --trials $T
ev passkey "$R/ft-longlora-passkey" --model "$R/ft-longlora" --policy full --lengths $LEN --depths $DEPTHS --trials $T

# 4. Ablations at inference on the FreqKV fine-tune: retention, sinks, amplitude correction,
#    high instead of low frequencies, compression after RoPE instead of before.
ev ppl "$R/ablations" --model "$R/ft-freqkv" --lengths $LEN --max-windows $W --policy \
  freqkv,freqkv:retain=0.25,freqkv:retain=0.75,freqkv:sinks=0,freqkv:scaling=none,freqkv:keep=high,freqkv:rope=post

$F eval report --from "$R${EXTRA_RESULTS:+,$EXTRA_RESULTS}" --out docs/results.md --notes docs/results-notes.md
