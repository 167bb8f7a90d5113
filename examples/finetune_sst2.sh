#!/usr/bin/env bash
# Fine-tuning a pretrained checkpoint beside from-scratch models on SST-2 (README,
# "Fine-tuning your checkpoints"). Runs, in order: MiniLM alone on 6,000 sentences,
# then for each seed the three models jointly with mmo-role-depth and independently
# (paired runs) on $JOINT_TRAIN sentences (3,000 by default: the CPU budget). Each
# run's metrics, config and printed table are copied to $OUT/<run>/; the checkpoints
# (about 1 GB per joint run) are deleted, the exported models stay in $RUNS/<run>/export.
#
#   examples/finetune_sst2.sh [DATA_DIR] [PRETRAINED_DIR] [OUT] [SEEDS]
set -euo pipefail
DATA=${1:-../shared/data/sst2}
PRE=${2:-../shared/pretrained}
OUT=${3:-results/finetune}
SEEDS=${4:-"0 1 2"}
RUNS=${RUNS:-/tmp/mmojax-finetune}
JOINT_TRAIN=${JOINT_TRAIN:-3000}
COMMON=(--task sst2 --data "$DATA" --epochs 1 --learning-rate 1e-4
        --warmup-ratio 0.1 --batch-size 16 --gradient-accumulation-steps 2 --eval-every 0
        --no-progress --overwrite)
JOINT=(--max-train "$JOINT_TRAIN" --models "bert=$PRE/minilm-l6-h384-uncased,gpt2,roberta"
       --tokenizers "gpt2=$PRE/tiny-gpt2,roberta=$PRE/roberta-base-tokenizer"
       --model-size hidden=384,layers=6,heads=12,intermediate=1536)

run() {  # run NAME ARGS...
  local name=$1; shift
  if [ -f "$OUT/$name/table.txt" ]; then echo "done: $name"; return; fi
  mkdir -p "$OUT/$name"
  /usr/bin/time -f "%e s wall, %M KB max RSS" mmojax train "${COMMON[@]}" "$@" \
      --workdir "$RUNS/$name" > "$OUT/$name/table.tmp" 2> "$OUT/$name/log.txt"
  cp "$RUNS/$name/metrics.jsonl" "$RUNS/$name/config.json" "$OUT/$name/"
  rm -rf "$RUNS/$name/checkpoints"
  mv "$OUT/$name/table.tmp" "$OUT/$name/table.txt"
}

run minilm-alone-seed0 --max-train 6000 --no-export --models "bert=$PRE/minilm-l6-h384-uncased" --mode independent --seed 0
for seed in $SEEDS; do
  run "mmo-role-depth-seed$seed" "${JOINT[@]}" --mode mmo-role-depth --seed "$seed"
  run "independent-seed$seed" "${JOINT[@]}" --mode independent --seed "$seed"
done
