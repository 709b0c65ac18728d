#!/usr/bin/env bash
# Pretrains bert-mini (masked LM) and llama-mini (causal LM) on the plain-text corpus, resumably.
#
#   tools/experiments/pretrain.sh [bert-mini|llama-mini|all] [RUNS_DIR]
#
# RUNS_DIR (default ../runs/pretrain, outside the repo: the weights are 45-135 MB) gets one
# folder per preset: init/, checkpoint-last/ (the model: a Hugging Face folder plus optimizer
# state), metrics.jsonl, loss.png, log.txt. Run the script again after an interruption and each
# preset continues from its checkpoint-last exactly where it stopped (the same options are
# required; the engine refuses a resume whose run differs). Settings: CORPUS_DIR and
# TOKENIZERS_DIR (default ../shared/corpus, ../shared/tokenizers), TOKENS (default 20000000 per
# preset), ENGINE (default the Debug build), EXTRA (more engine options, e.g. "--device cuda"),
# EVAL_EVERY, SAVE_EVERY, LOG_EVERY (steps; 250, 50, 10 by default; they do not change the run).
# The corpus is WikiText-2's training split, Tiny Shakespeare and the 13 Gutenberg books (never a
# validation or test split); wikitext-2/valid.txt is scored afterwards with engine eval-lm.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
which="${1:-all}"
runs="${2:-$here/../runs/pretrain}"
corpus_dir="${CORPUS_DIR:-$here/../shared/corpus}"
tok_dir="${TOKENIZERS_DIR:-$here/../shared/tokenizers}"
tokens="${TOKENS:-20000000}"
engine="${ENGINE:-$here/tools/Engine.Cli/bin/Debug/net10.0/engine}"
[ -x "$engine" ] || { echo "build first: dotnet build ($engine missing)" >&2; exit 2; }
corpus=("$corpus_dir/wikitext-2/train.txt" "$corpus_dir/tinyshakespeare/input.txt")
for f in "$corpus_dir"/gutenberg-nltk/*.txt; do corpus+=("$f"); done

run() {  # run PRESET TOKENIZER LR
  local preset="$1" tokenizer="$2" lr="$3" out="$runs/$1"
  mkdir -p "$out"
  local resume=()
  [ -f "$out/checkpoint-last/pretrain_state.json" ] && resume=(--resume "$out/checkpoint-last")
  echo "== $preset $(date -u +%FT%TZ) $(uname -n) $(nproc) cores ${resume[*]:-fresh}" | tee -a "$out/log.txt"
  "$engine" pretrain --preset "$preset" --tokenizer "$tokenizer" --corpus "${corpus[@]}" \
    --tokens "$tokens" --seq 128 --batch 32 --lr "$lr" --warmup 0.02 --schedule cosine --seed 1 \
    --eval-every "${EVAL_EVERY:-250}" --eval-rows 256 --save-every "${SAVE_EVERY:-50}" --log-every "${LOG_EVERY:-10}" --out "$out" ${EXTRA:-} "${resume[@]}" 2>&1 | tee -a "$out/log.txt"
  "$engine" eval-lm --model "$out/checkpoint-last" --corpus "$corpus_dir/wikitext-2/valid.txt" --unigram-from "$corpus_dir/wikitext-2/train.txt" \
    --seq 128 --max-rows 256 2>&1 | tee -a "$out/log.txt"
}

case "$which" in
  bert-mini) run bert-mini "$tok_dir/bert-base-uncased/vocab.txt" 5e-4 ;;
  llama-mini) run llama-mini "$tok_dir/llama2/tokenizer.model" 1e-3 ;;
  all) run bert-mini "$tok_dir/bert-base-uncased/vocab.txt" 5e-4; run llama-mini "$tok_dir/llama2/tokenizer.model" 1e-3 ;;
  *) echo "usage: $0 [bert-mini|llama-mini|all] [RUNS_DIR]" >&2; exit 2 ;;
esac
