#!/usr/bin/env bash
# Reproduces docs/results.md: every experiment of METHOD section 7 on the offline pretrained MiniLM
# (search_spaces/minilm_similarity.yaml) and on a tiny GPT-2 trained here, then `econ-ray report`.
#   scripts/results.sh [OUT]        (default runs/results; about 60 min on 2 CPU cores)
# Steps share one dense fine-tuned MiniLM; each writes its own folder under OUT.
set -euo pipefail
OUT=${1:-runs/results}
ECON=${ECON:-.venv/bin/econ-ray}
FILE=search_spaces/minilm_similarity.yaml
LAM=${LAM:-3.0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$OUT/mlflow.db}
log() { printf '\n== %s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
# start from the dense fine-tuned model: its weights, no second dense phase
FROM_DENSE=(--set "model.name=$OUT/dense/model" --set objective.dense_reference=model --set objective.dense_steps=0)

log "1/9 dense fine-tuning of MiniLM (GELU -> ReLU, 300 + 300 dense steps)"
[[ -f $OUT/dense/econ.json ]] || $ECON train $FILE --attention dense --lam 0 --max-steps 300 --save "$OUT/dense" --json > "$OUT/dense.log"

log "2/9 top-k and budget sweep on the dense model (no retraining)"
$ECON topk "$OUT/dense" --k 24,16,8,4,2,1 --budget 8,4,2,1 --out "$OUT/topk" --json > "$OUT/topk.log"

log "3/9 post-hoc pruning baselines on the dense model"
$ECON prune "$OUT/dense" --method ffn-magnitude,ffn-activation,heads,topk --ratios 0.1,0.3,0.5,0.7,0.9 \
  --out "$OUT/baselines" --json > "$OUT/baselines.log"

log "4/9 ablation at lambda = $LAM: attention only, FFN only, both, dense (100 steps each from the dense model)"
$ECON ablation $FILE --lam "$LAM" "${FROM_DENSE[@]}" --out "$OUT/ablation" --json > "$OUT/ablation.log"

log "5/9 incentive-trained search (Ray Tune + Optuna, Ray Train + DeepSpeed), from the dense model"
$ECON search $FILE --trials "${TRIALS:-4}" --concurrency 1 --run-dir "$OUT/search" "${FROM_DENSE[@]}" \
  --set distributed.cpus_per_worker=1 --json > "$OUT/search.log" 2>&1

log "6/9 one priced model at lambda = $LAM, physically pruned: counted vs realised speedup"
[[ -f $OUT/gated/econ.json ]] || $ECON train $FILE --lam "$LAM" --alpha 1 --beta 1 "${FROM_DENSE[@]}" \
  --save "$OUT/gated" --json > "$OUT/gated.log"
$ECON export "$OUT/gated" --out "$OUT/export" --threads 1 --repeats 200 --json > "$OUT/export.log"

log "7/9 sparse-attention post-training of a tiny GPT-2 vs top-k"
$ECON posttrain search_spaces/posttrain_gpt2.yaml --eps 0.01,0.05,0.1 --out "$OUT/posttrain" --json > "$OUT/posttrain.log"

log "8/9 constrained post-training of MiniLM from the dense model (eps 0.05, 300 steps): multiplier defaults vs the old ones"
for mult in "1 1" "0.05 0" "0.5 0.5"; do
  read -r lr mu0 <<< "$mult"
  [[ -f $OUT/constrained_lr${lr}_mu${mu0}/econ.json ]] || $ECON train $FILE --objective constrained --tau-rel 0.05 \
    --max-steps 300 --set training.eval_every=25 --set objective.multiplier.lr="$lr" --set objective.multiplier.init="$mu0" \
    "${FROM_DENSE[@]}" --save "$OUT/constrained_lr${lr}_mu${mu0}" --json > "$OUT/constrained_lr${lr}_mu${mu0}.log"
done

log "9/9 attention heatmaps and the report"
$ECON heatmap "$OUT/gated" --dense-model "$OUT/dense" --layers 0,3,5 --heads 0,1 --index 0 \
  --out "$OUT/heatmap/heatmap.png" --json > "$OUT/heatmap.log"
$ECON report "$OUT" --title "econ-ray results on MiniLM-L6-H384 (builtin:similarity) and a tiny GPT-2"
