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
# EVAL_EVERY, SAVE_EVERY, LOG_EVERY (steps; 250, 50, 10 by default; they do not change the run),
# STOP_AFTER (end this session after that step of the run, as a clean interruption; run the
# script again without it to continue).
# The corpus is WikiText-2's training split, Tiny Shakespeare and the 13 Gutenberg books (never a
# validation or test split); wikitext-2/valid.txt is scored afterwards with engine eval-lm.
# TASK_TEXT=1 (a new run only) adds the benchmarks' training splits from DATA_DIR (default
# ../shared/data), one document per example: GLUE's CoLA, SST-2, MRPC, STS-B, RTE and WNLI
# train.tsv and SentEval's SST-5 sentiment-train. MR, CR, SUBJ and MPQA are left out: they have
# no split, so any held-out part a fine-tuning run evaluates on would be in the corpus. GLUE's tasks share
# sources, though: 48 of MRPC's dev pairs are STS-B training pairs and 110 of STS-B's are MRPC's
# (docs/pretraining.md), so an MRPC or STS-B result on such a backbone must say so. The choice
# is recorded in RUNS_DIR/PRESET/task-text when set; a run resumes with the corpus it started with
# (TASK_TEXT is then ignored: the engine would refuse a different corpus).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
which="${1:-all}"
runs="${2:-$here/../runs/pretrain}"
corpus_dir="${CORPUS_DIR:-$here/../shared/corpus}"
tok_dir="${TOKENIZERS_DIR:-$here/../shared/tokenizers}"
tokens="${TOKENS:-20000000}"
engine="${ENGINE:-$here/tools/Engine.Cli/bin/Debug/net10.0/engine}"
[ -x "$engine" ] || { echo "build first: dotnet build ($engine missing)" >&2; exit 2; }
data_dir="${DATA_DIR:-$here/../shared/data}"
corpus=("$corpus_dir/wikitext-2/train.txt" "$corpus_dir/tinyshakespeare/input.txt")
for f in "$corpus_dir"/gutenberg-nltk/*.txt; do corpus+=("$f"); done
task_text=(cola:"$data_dir/glue/CoLA/train.tsv" sst2:"$data_dir/glue/SST-2/train.tsv" mrpc:"$data_dir/glue/MRPC/train.tsv"
  stsb:"$data_dir/glue/STS-B/train.tsv" rte:"$data_dir/glue/RTE/train.tsv" wnli:"$data_dir/glue/WNLI/train.tsv"
  sst5:"$data_dir/senteval/SST-5/sentiment-train")

run() {  # run PRESET TOKENIZER LR
  local preset="$1" tokenizer="$2" lr="$3" out="$runs/$1"
  mkdir -p "$out"
  local resume=() items=("${corpus[@]}")
  if [ -f "$out/checkpoint-last/pretrain_state.json" ]; then
    resume=(--resume "$out/checkpoint-last")
    [ -n "${TASK_TEXT:-}" ] && echo "TASK_TEXT ignored: $out resumes with the corpus it started with" >&2
  elif [ "${TASK_TEXT:-0}" = 1 ]; then touch "$out/task-text"
  else rm -f "$out/task-text"
  fi
  [ -f "$out/task-text" ] && items+=("${task_text[@]}")
  echo "== $preset $(date -u +%FT%TZ) $(uname -n) $(nproc) cores ${resume[*]:-fresh}$([ -f "$out/task-text" ] && echo ', with the task training text')" | tee -a "$out/log.txt"
  "$engine" pretrain --preset "$preset" --tokenizer "$tokenizer" --corpus "${items[@]}" \
    --tokens "$tokens" --seq 128 --batch 32 --lr "$lr" --warmup 0.02 --schedule cosine --seed 1 \
    --eval-every "${EVAL_EVERY:-250}" --eval-rows 256 --save-every "${SAVE_EVERY:-50}" --log-every "${LOG_EVERY:-10}" --out "$out" ${STOP_AFTER:+--stop-after-step "$STOP_AFTER"} ${EXTRA:-} "${resume[@]}" 2>&1 | tee -a "$out/log.txt"
  "$engine" eval-lm --model "$out/checkpoint-last" --corpus "$corpus_dir/wikitext-2/valid.txt" --unigram-from "$corpus_dir/wikitext-2/train.txt" \
    --seq 128 --max-rows 256 2>&1 | tee -a "$out/log.txt"
}

case "$which" in
  bert-mini) run bert-mini "$tok_dir/bert-base-uncased/vocab.txt" 5e-4 ;;
  llama-mini) run llama-mini "$tok_dir/llama2/tokenizer.model" 1e-3 ;;
  all) run bert-mini "$tok_dir/bert-base-uncased/vocab.txt" 5e-4; run llama-mini "$tok_dir/llama2/tokenizer.model" 1e-3 ;;
  *) echo "usage: $0 [bert-mini|llama-mini|all] [RUNS_DIR]" >&2; exit 2 ;;
esac
