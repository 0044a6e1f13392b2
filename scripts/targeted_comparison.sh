#!/usr/bin/env bash
# The comparison of docs/results.md section 9 on one task: the targeted search, the pruning baselines
# inside a search (prune + fine-tune at the same steps), seed 000's penalised search, and prune-only,
# all from one dense fine-tuned MiniLM, on static GFLOPs; then every targeted trial exported and timed.
#   scripts/targeted_comparison.sh [FILE] [OUT]
#     FILE  default search_spaces/minilm_pydoc_targeted.yaml (builtin:pydoc-topics, Python's docstrings)
#     OUT   default runs/targeted_<name of FILE>
# Trials and steps: TARGETED (7) trials on a grid of targets evenly over TLOW..THIGH (0.2..0.8 of the
# dense static FLOPs), PRUNE (3) trials per pruning method (activation, heads, both) on a grid of ratios
# over 0.3..0.8, PENALISED (4) trials at sampled lambda, each of STEPS main steps (default: the file's
# training.max_steps), all from the same dense model. A search whose summary.json exists is kept.
set -euo pipefail
FILE=${1:-search_spaces/minilm_pydoc_targeted.yaml}
OUT=${2:-runs/targeted_$(basename "$FILE" .yaml)}
ECON=${ECON:-.venv/bin/econ-ray}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$OUT/mlflow.db}
log() { printf '\n== %s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }

log "1/6 dense fine-tuning (the teacher and the start of every trial)"
[[ -f $OUT/dense/econ.json ]] || $ECON train "$FILE" --objective penalised --lam 0 --attention dense --max-steps 100 \
  --save "$OUT/dense" --json > "$OUT/dense.log"

# the three searches' files: the given one, from the dense model, with their own space
$PY - "$FILE" "$OUT" "${TARGETED:-7}" "${PRUNE:-3}" "${PENALISED:-4}" "${STEPS:-0}" "${TLOW:-0.2}" "${THIGH:-0.8}" <<'PYEOF'
import sys, yaml
src, out, n_t, n_p, n_pen, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
t_low, t_high = map(float, sys.argv[7:9])
base = yaml.safe_load(open(src))
if steps:
    base["training"]["max_steps"] = steps
base["model"]["name"] = f"{out}/dense/model"
base["objective"].update(dense_reference="model", dense_steps=0)
def write(name, trials, objective, space, attention="dense", cost="static", sampler="grid"):
    cfg = yaml.safe_load(yaml.safe_dump(base))
    cfg["name"] = f"{base['name']}_{name}"
    cfg["attention"]["mode"] = attention
    cfg["objective"].update(objective)
    cfg["search"].update(trials=trials, concurrency=1, sampler=sampler, cost=cost, space=space,
                         registered_model=f"{cfg['name']}")
    yaml.safe_dump(cfg, open(f"{out}/{name}.yaml", "w"), sort_keys=False)
write("targeted", n_t, {"kind": "targeted"}, {"target_ratio": {"low": t_low, "high": t_high}})
for method in ("activation", "heads", "both"):
    write(f"prune_{method}", n_p, {"kind": "prune", "prune_method": method}, {"target_ratio": {"low": 0.3, "high": 0.8}})
write("penalised", n_pen, {"kind": "penalised", "alpha": 1.0, "beta": 0.0, "distill": {"weight": 0.0}},
      {"lam": {"low": 1.0, "high": 100.0, "log": True}}, attention="gates", sampler="random")
PYEOF

for s in targeted prune_activation prune_heads prune_both penalised; do
  log "search: $s"
  [[ -f $OUT/search_$s/summary.json ]] || $ECON search "$OUT/$s.yaml" --run-dir "$OUT/search_$s" --seed 0 --json \
    > "$OUT/search_$s.log" 2>&1
done

log "5/6 prune-only baselines on the dense model (no fine-tuning)"
$ECON prune "$OUT/dense" --method ffn-activation,heads --ratios 0.2,0.4,0.6,0.8,0.9 --out "$OUT/baselines" --json \
  > "$OUT/baselines.log"

log "6/6 every targeted trial exported and timed at batch 1 (1 thread, 100 repeats)"
$PY - "$OUT" <<'PYEOF' | while read -r id ck; do
import json, sys
for t in json.load(open(f"{sys.argv[1]}/search_targeted/trials.json")):
    if t["status"] == "complete" and t.get("checkpoint"):
        print(t["trial_id"], t["checkpoint"])
PYEOF
  $ECON export "$ck" --out "$OUT/export/$id" --threads 1 --repeats 100 --json > "$OUT/export_$id.log"
done
$PY scripts/targeted_comparison.py "$OUT" --title "$(basename "$FILE" .yaml): every method on static GFLOPs"
