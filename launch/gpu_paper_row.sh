#!/usr/bin/env bash
# One cube-single row of the paper's table in one GPU run (one GPU + 16 CPU cores, <= 9.5 minutes,
# every step time-boxed, partial results kept). Run from the repo root:
#
#   bash launch/gpu_paper_row.sh                  # LPS (wheels in .whl/, see below)
#   AGENT=qcfql bash launch/gpu_paper_row.sh      # QC-FQL, alpha 30 (experiments/configs/qcfql.py)
#   AGENT=fql bash launch/gpu_paper_row.sh        # FQL, alpha 300 (experiments/configs/fql.py)
#
#   1. data      cube-single-play-v0 at the official size (EPISODES=1000 x 1001 steps, one val
#                episode) with GEN_WORKERS processes (default: every core), time-boxed to
#                GEN_S: the first episodes that fit are kept, and the log says how many
#   2. train     AGENT at its paper config on cube-single tasks TASKS x SEEDS seeds, one vmapped
#                program (experiments/ogbench_grid.py), for as many of NUM_STEPS (1M) steps as
#                the time left allows
#   3. evaluate  EVAL_EPISODES (50) episodes per (task, seed) at EVAL_AT (250k, 500k) and at the
#                last step reached, in EVAL_WORKERS CPU processes while training goes on
#   4. table     $OUT/row.md: data size, steps reached, speed, and the grid's table beside the
#                paper's numbers
#
# Writes into $OUT (default ./gpu_out): paper_row.log, row.md, table.md, success.csv, train.csv,
# summary.json, curves.png. Rows of several runs (one agent each) become one table here:
#   python experiments/ogbench_grid.py --merge=OUT_lps,OUT_qcfql,OUT_fql --workdir=DIR
#
# Wheels: bash launch/make_gpu_wheels.sh (into .whl/, carried to the GPU machine). A CPU check at
# tiny size (no GPU, no install; 92 s on 2 shared cores at load 15):
#   JAX_PLATFORMS=cpu SKIP_INSTALL=1 SIZE=tiny EPISODES=4 STEPS_PER_EPISODE=201 GEN_WORKERS=2 \
#     TASKS=2 SEEDS=1 NUM_STEPS=4000 STEPS_PER_CALL=1000 EVAL_AT=2000 EVAL_EPISODES=2 \
#     EVAL_WORKERS=1 TOTAL_S=420 GEN_S=150 TAIL_S=90 DATA_DIR=/tmp/row_data OUT=/tmp/row_tiny \
#     bash launch/gpu_paper_row.sh
#
# Env vars (defaults for one H100 / H200 and 16 CPU cores):
#   AGENT=lps            lps | qcfql | fql (a config in experiments/configs/)
#   ALPHA=               override the agent's alpha (qcfql 30 and fql 300 on cube-single are
#                        already their configs' values)
#   COMPUTE_DTYPE=float32  bfloat16: bf16 matmuls (see docs/throughput_gpu_plan.md); XLA_FLAGS
#                        in the environment reach the training process as they are
#   EPISODES=1000 STEPS_PER_EPISODE=1001 VAL_EPISODES=1
#   GEN_WORKERS=$(nproc) GEN_S=240     generation time box (collection; writing comes after)
#   DATA_DIR=/tmp/paper_row_data       reused if it already holds cube-single-play-v0.npz
#   TASKS=1..5 SEEDS=2 SIZE=paper NUM_STEPS=1000000 STEPS_PER_CALL=1000
#   EVAL_AT=250000,500000 EVAL_EPISODES=50 EVAL_WORKERS=$(( $(nproc) - 2 ))
#   TOTAL_S=570          hard limit of the whole script
#   TAIL_S=100           kept after training for the last evaluation and the outputs
#   GRID_EXTRA=          more ogbench_grid flags (e.g. --save_params)
#   DRY_RUN=1            print the commands with their time boxes, run nothing
set -u
START=$(date +%s)
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
LOG="$OUT/paper_row.log"
: > "$LOG"
CORES=$(nproc)
AGENT="${AGENT:-lps}"
ALPHA="${ALPHA:-}"
COMPUTE_DTYPE="${COMPUTE_DTYPE:-float32}"
EPISODES="${EPISODES:-1000}"
STEPS_PER_EPISODE="${STEPS_PER_EPISODE:-1001}"
VAL_EPISODES="${VAL_EPISODES:-1}"
GEN_WORKERS="${GEN_WORKERS:-$CORES}"
GEN_S="${GEN_S:-240}"
DATA_DIR="${DATA_DIR:-/tmp/paper_row_data}"
TASKS="${TASKS:-1..5}"
SEEDS="${SEEDS:-2}"
SIZE="${SIZE:-paper}"
NUM_STEPS="${NUM_STEPS:-1000000}"
STEPS_PER_CALL="${STEPS_PER_CALL:-1000}"
EVAL_AT="${EVAL_AT:-250000,500000}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
EVAL_WORKERS="${EVAL_WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}"
TOTAL_S="${TOTAL_S:-570}"
TAIL_S="${TAIL_S:-100}"
GRID_EXTRA="${GRID_EXTRA:-}"
DRY_RUN="${DRY_RUN:-0}"
RESERVE_S=10                       # for row.md at the end
. launch/gpu_common.sh
if [ "$DRY_RUN" = "1" ]; then       # print each step's command and time box instead
  step() { local name="$1" cap="$2"; shift 2; echo "STEP $name $cap $*"; }
  install_wheels() { :; }
  show_devices() { :; }
fi
DATASET="$DATA_DIR/cube-single-play-v0.npz"
say "paper row: agent $AGENT ($COMPUTE_DTYPE), $CORES cores, out $OUT, XLA_FLAGS=${XLA_FLAGS:-}"

# ---------------------------------------------------------------------------- 1. install, devices
install_wheels
show_devices

# ---------------------------------------------------------------------------- 2. data
if [ -f "$DATASET" ]; then
  say "reusing $DATASET"
else
  step generate $(( GEN_S + 60 )) python3 -m lps_jax.data.generate --env=cube-single-play-v0 \
    --episodes="$EPISODES" --val_episodes="$VAL_EPISODES" --workers="$GEN_WORKERS" \
    --steps_per_episode="$STEPS_PER_EPISODE" --time_budget_s="$GEN_S" --out="$DATA_DIR" \
    --nocompress --no_progress
  grep -h "time budget reached\|generation speed\|^wrote" "$LOG" | sed 's/^/  /'
fi

# ---------------------------------------------------------------------------- 3. train + evaluate
BUDGET=$(( $(left) - TAIL_S ))
[ "$BUDGET" -lt 10 ] && BUDGET=10
say "training budget: ${BUDGET} s (first call, i.e. compilation, included)"
step train_eval 100000 python3 experiments/ogbench_grid.py --agents="$AGENT" \
  ${ALPHA:+--alpha="$ALPHA"} --compute_dtype="$COMPUTE_DTYPE" --domain=cube-single --tasks="$TASKS" \
  --seeds="0..$(( SEEDS - 1 ))" --size="$SIZE" --num_steps="$NUM_STEPS" \
  --steps_per_call="$STEPS_PER_CALL" --eval_at="$EVAL_AT" --eval_episodes="$EVAL_EPISODES" \
  --eval_workers="$EVAL_WORKERS" --time_budget_s="$BUDGET" --dataset_dir="$DATA_DIR" \
  --dataset_episodes=16 --dataset_steps_per_episode="$STEPS_PER_EPISODE" \
  --workers="$GEN_WORKERS" --workdir="$OUT" $GRID_EXTRA

# ---------------------------------------------------------------------------- 4. row.md
[ "$DRY_RUN" = "1" ] && exit 0
python3 - "$OUT" "$LOG" "$AGENT" <<'PY' >> "$LOG" 2>&1
"""row.md: what the run reached (data, steps, speed) above the grid's table."""
import json, os, re, sys
out, log, agent = sys.argv[1:4]
text = open(log).read()
lines = [f'# cube-single paper row: {agent}', '']
for pattern in (r'time budget reached: .*', r'generation speed: .*', r'(?<=\] )reusing .*npz'):
  lines += [f'- data: {m}' for m in re.findall(pattern, text)]
summary_path = os.path.join(out, 'summary.json')
if os.path.exists(summary_path):
  summary = json.load(open(summary_path))
  data = summary.get('dataset', {})
  if 'transitions' in data:
    lines.append(f"- training transitions: {data['transitions']} (per task)")
  for a in summary.get('agents', []):
    lines.append(f"- {a['agent']}: {a['steps_reached']} steps x {a['members']} members in "
                 f"{a['train_seconds']:.0f} s (first call {a['first_call_seconds']:.0f} s), "
                 f"{a['agent_steps_per_second']:.0f} agent-steps/s; evaluated at "
                 f"{a['eval_steps']}")
  progress = summary.get('training')
  if progress and not any(a['agent'] == progress['agent'] for a in summary.get('agents', [])):
    lines.append(f"- {progress['agent']}: stopped during training at step {progress['step']} "
                 f"({progress['seconds']:.0f} s, first call {progress['first_call_seconds']:.0f} s)")
  lines.append(f"- evaluations: {summary.get('evaluations_done', 0)} done, "
               f"{summary.get('evaluations_pending', 0)} pending at the end, "
               f"{summary.get('evaluations_failed', 0)} failed")
table = os.path.join(out, 'table.md')
lines += ['', open(table).read() if os.path.exists(table) else '(no table: no evaluation finished)']
open(os.path.join(out, 'row.md'), 'w').write('\n'.join(lines) + '\n')
print('\n'.join(lines))
PY
say "done; outputs:"
ls -la "$OUT" | tee -a "$LOG"
