#!/usr/bin/env bash
# One panel of the OGBench alpha figure on a CPU, in the background (hours): first a size check,
# then the sweep at the first size that learns. DOMAIN (puzzle-3x3) picks the panel.
#
#   OUT=experiments/results/ogbench_alpha_puzzle3x3_cpu
#   nohup nice -n 10 bash launch/cpu_alpha.sh > $OUT/pipeline.log 2>&1 &
#   DOMAIN=cube-single EPISODES=100 CHECK_STEPS=100000 CHECK_EVERY=100000 LPS_ALPHAS=0.1,1,10 \
#     bash launch/cpu_alpha.sh
#
# 1. data: EPISODES <DOMAIN>-play episodes into DATA_DIR (reused if there)
# 2. size check: LPS at alpha 1 x 2 seeds, CHECK_STEPS steps, evaluated at every CHECK_EVERY
#    steps (50 episodes each), into $OUT/lps_check_<EPISODES>ep
# 3. the first evaluated step where the check's mean success is >= THRESHOLD (0.3) becomes the
#    sweep's length: QC-MFQL at ALPHAS and LPS at LPS_ALPHAS (default ALPHAS) x 2 seeds (one
#    program per agent), into $OUT. If no step reaches 0.3 it stops and says so: a flat curve
#    at a size that does not learn means nothing.
# Every step is resumable: rerunning the script reuses the data, the check's rows and the
# sweep's finished programs (ogbench_alpha keeps its rows and skips finished programs).
# Partial results: $OUT/alpha.csv, table.md and alpha.png are rewritten as each evaluation
# arrives; `python experiments/ogbench_alpha.py --merge=$OUT --workdir=DIR` redraws them.
set -u
DOMAIN="${DOMAIN:-puzzle-3x3}"
OUT="${OUT:-experiments/results/ogbench_alpha_$(tr -d - <<< "$DOMAIN")_cpu}"
EPISODES="${EPISODES:-1000}"
DATA_DIR="${DATA_DIR:-data/ogbench$EPISODES}"
CHECK_STEPS="${CHECK_STEPS:-200000}"
CHECK_EVERY="${CHECK_EVERY:-50000}"
ALPHAS="${ALPHAS:-0.1,1,3,10,100}"
LPS_ALPHAS="${LPS_ALPHAS:-$ALPHAS}"
SEEDS="${SEEDS:-0..1}"
SIZE="${SIZE:-cpu}"
EVAL_WORKERS="${EVAL_WORKERS:-1}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
GEN_WORKERS="${GEN_WORKERS:-2}"
STEPS_PER_CALL="${STEPS_PER_CALL:-1000}"
THRESHOLD="${THRESHOLD:-0.3}"
export JAX_PLATFORMS=cpu MUJOCO_GL=disable PYTHONUNBUFFERED=1
mkdir -p "$OUT"
say() { echo "[$(date -u +%FT%TZ)] $*"; }

if [ ! -f "$DATA_DIR/$DOMAIN-play-v0.npz" ]; then
  say "generating $EPISODES episodes into $DATA_DIR"
  python -m lps_jax.data.generate --env="$DOMAIN-play-v0" --episodes="$EPISODES" \
    --workers="$GEN_WORKERS" --out="$DATA_DIR" --noprogress || exit 1
fi

CHECK="$OUT/lps_check_${EPISODES}ep"
EVAL_AT=$(seq -s, "$CHECK_EVERY" "$CHECK_EVERY" "$CHECK_STEPS")
say "size check: LPS alpha 1, seeds $SEEDS, $CHECK_STEPS steps, evaluated at $EVAL_AT -> $CHECK"
python experiments/ogbench_alpha.py --domains="$DOMAIN" --agents=lps --agent_alphas='lps=1' \
  --seeds="$SEEDS" --size="$SIZE" --num_steps="$CHECK_STEPS" --eval_at="$EVAL_AT" \
  --steps_per_call="$STEPS_PER_CALL" --eval_episodes="$EVAL_EPISODES" --eval_workers="$EVAL_WORKERS" \
  --dataset_dir="$DATA_DIR" --workdir="$CHECK" > "$CHECK.log" 2>&1 || exit 1

STEPS=$(python - "$CHECK/alpha.csv" "$THRESHOLD" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for steps in sorted({int(r['steps']) for r in rows}):
  values = [float(r['success']) for r in rows if int(r['steps']) == steps]
  print(f'step {steps}: success {values}', file=sys.stderr)
  if sum(values) / len(values) >= float(sys.argv[2]):
    print(steps)
    break
EOF
)
if [ -z "$STEPS" ]; then
  say "size check FAILED: LPS at alpha 1 stays below $THRESHOLD at every evaluated step ($CHECK);" \
    "grow the data, the steps or the networks"
  exit 3
fi
say "size check passed at $STEPS steps; sweep: qcmfql x $ALPHAS, lps x $LPS_ALPHAS, seeds $SEEDS"
python experiments/ogbench_alpha.py --domains="$DOMAIN" --agents=qcmfql,lps \
  --alphas="$ALPHAS" --agent_alphas="lps=$LPS_ALPHAS" --seeds="$SEEDS" --size="$SIZE" \
  --num_steps="$STEPS" \
  --steps_per_call="$STEPS_PER_CALL" --eval_episodes="$EVAL_EPISODES" --eval_workers="$EVAL_WORKERS" \
  --dataset_dir="$DATA_DIR" --workdir="$OUT"
say "sweep done rc=$?"
