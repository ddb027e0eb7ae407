#!/usr/bin/env bash
# One command for a machine with a GPU (run from the repo root; < 9 minutes, every step
# time-boxed): LPS and QC-FQL at paper size on cube-single tasks 1..5 x seeds, each agent ONE
# vmapped program, evaluated with 50 episodes per (agent, task, seed) in parallel CPU processes.
#
#   bash launch/gpu_check.sh            # installs .whl/ (launch/make_gpu_wheels.sh); with the
#                                       # packages already installed: SKIP_INSTALL=1 (docs/gpu.md)
#
# Writes into $OUT (default ./gpu_out), at most 7 small files:
#   gpu_check.log   every step's output (nvidia-smi, jax.devices(), generation speed, training)
#   success.csv     agent, task, seed, step, success, return, episode_length, episodes
#   train.csv       losses of each member at each evaluation point
#   summary.json    steps reached, agent-steps/s, first-call (compile) and wall seconds
#   table.md        success mean +- std beside the paper's numbers
#   curves.png      success vs steps
#   bench.json      BENCH=1 (default): python -m lps_jax.bench --gpu (fused vs unfused, N=1/32,
#                   float32/bfloat16, paper size)
#   toy.tar.gz      TOY=1 (default): launch/gpu_toy.sh's outputs (alpha figure, toy variants,
#                   latent-gradient study, planted-bug gate runs) and its log; it runs on the GPU
#                   in the background while the OGBench data is generated on the CPU cores
# A failing or timed-out step is logged and the script goes on; the driver writes partial
# results when stopped (SIGTERM from `timeout`).
#
# Env vars (defaults are for one H100 / H200 and 16 CPU cores):
#   SKIP_INSTALL=0       1: do not pip-install .whl/ (CPU test of this script)
#   EPISODES=500         cube-single-play episodes to generate, time-boxed to 120 s (the first
#                        episodes that fit are kept and the log says how many) ...
#   STEPS_PER_EPISODE=1001
#   GEN_WORKERS=16       ... with this many processes
#   FALLBACK_EPISODES=64 episodes the driver generates if no dataset was written at all
#   DATA_DIR=/tmp/gpu_check_data (reused if it already holds cube-single-play-v0.npz)
#   TASKS=1..5 SEEDS=2   members per agent = tasks x seeds
#   AGENTS=lps,qcfql     SIZE=paper   NUM_STEPS=1000000   STEPS_PER_CALL=1000
#   EVAL_AT=100000,200000,300000,500000,1000000 (the last step reached is always evaluated)
#   EVAL_EPISODES=50     EVAL_WORKERS=14
#   TOTAL_S=525          hard wall-clock limit of the whole script
#   TRAIN_BUDGET_S=      per-agent training seconds (default: what the remaining time allows)
#   BENCH=1              0: skip the benchmark step at the end (it reserves 110 s)
#   TOY=1 TOY_S=300      0: skip the toy studies; TOY_S: their time box
#   CONCURRENT=0         1: one driver process per agent, all at once on the GPU (small nets are
#                        launch-bound, so they overlap), EVAL_WORKERS split between them; the
#                        runs are merged into $OUT and kept as $OUT/run_<agent>.tar.gz
#   GRID_EXTRA=          more driver flags, e.g. "--noevaluate --save_params": train only and
#                        bring every member's params back (evaluate here with --evaluate_saved)
#   TAIL_S=150           seconds kept after training for start-up and the evaluation tail
#
# The CPU-size side-by-side grid of docs/ogbench.md (the CPU machine's data file copied into
# the repository as .gpu/ogdata100; one H100: 100k steps x 15 members x 3 agents in 140 s),
# trained on the GPU machine and evaluated on a CPU machine from the returned params:
#   CONCURRENT=1 SIZE=cpu AGENTS=lps,qcfql,fql TASKS=2,3,5 SEEDS=5 NUM_STEPS=100000 \
#     EVAL_AT=50000,100000 DATA_DIR=.gpu/ogdata100 BENCH=0 TOY=0 TAIL_S=20 TOTAL_S=200 \
#     GRID_EXTRA="--noevaluate --save_params" bash launch/gpu_check.sh
#   # then, on the CPU machine, with run_<agent>.tar.gz unpacked into DIR:
#   python experiments/ogbench_grid.py --evaluate_saved=DIR/lps,DIR/qcfql,DIR/fql \
#     --eval_episodes=50 --eval_workers=2 --workdir=runs/ogbench_cpu_size
set -u
START=$(date +%s)
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
EPISODES="${EPISODES:-500}"
FALLBACK_EPISODES="${FALLBACK_EPISODES:-64}"
STEPS_PER_EPISODE="${STEPS_PER_EPISODE:-1001}"
GEN_WORKERS="${GEN_WORKERS:-16}"
TASKS="${TASKS:-1..5}"
SEEDS="${SEEDS:-2}"
AGENTS="${AGENTS:-lps,qcfql}"
SIZE="${SIZE:-paper}"
NUM_STEPS="${NUM_STEPS:-1000000}"
STEPS_PER_CALL="${STEPS_PER_CALL:-1000}"
EVAL_AT="${EVAL_AT:-100000,200000,300000,500000,1000000}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
EVAL_WORKERS="${EVAL_WORKERS:-14}"
TOTAL_S="${TOTAL_S:-525}"
BENCH="${BENCH:-1}"
TOY="${TOY:-1}"
TOY_S="${TOY_S:-300}"
CONCURRENT="${CONCURRENT:-0}"
GRID_EXTRA="${GRID_EXTRA:-}"
TAIL_S="${TAIL_S:-150}"
DATA_DIR="${DATA_DIR:-/tmp/gpu_check_data}"
# Two JAX processes share the GPU (the toy studies and the OGBench driver): no preallocation.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
RESERVE_S=0
[ "$BENCH" = "1" ] && RESERVE_S=110      # kept for the benchmark step at the end
. launch/gpu_common.sh

# ---------------------------------------------------------------------------- 1. install
install_wheels

# ---------------------------------------------------------------------------- 2. devices
show_devices

# ---------------------------------------------------------------------------- 2b. toy (background)
TOY_PID=""
if [ "$TOY" = "1" ]; then
  say "BEGIN toy (background, timeout ${TOY_S} s)"
  timeout --signal=TERM --kill-after=10 "$TOY_S" bash launch/gpu_toy.sh "$OUT/toy" \
    > "$OUT/toy.log" 2>&1 &
  TOY_PID=$!
fi

# ---------------------------------------------------------------------------- 3. data
if [ ! -f "$DATA_DIR/cube-single-play-v0.npz" ]; then   # what fits in 120 s is kept
  step generate 135 python3 -m lps_jax.data.generate --env=cube-single-play-v0 \
    --episodes="$EPISODES" --workers="$GEN_WORKERS" --out="$DATA_DIR" --no_progress \
    --steps_per_episode="$STEPS_PER_EPISODE" --time_budget_s=120
fi   # (if even that failed, the driver generates FALLBACK_EPISODES itself)

# ---------------------------------------------------------------------------- 4. train + eval
# Per-agent budget: the time left, less ~90 s for start-up and data loading and ~60 s for the
# evaluation tail, split over the agents when they run one after another (each budget includes
# that agent's compilation).
NUM_AGENTS=$(echo "$AGENTS" | tr ',' '\n' | grep -c .)
if [ "$CONCURRENT" = "1" ]; then
  AUTO_BUDGET=$(( $(left) - TAIL_S ))
else
  AUTO_BUDGET=$(( ($(left) - TAIL_S) / NUM_AGENTS ))
fi
BUDGET="${TRAIN_BUDGET_S:-$AUTO_BUDGET}"
[ "$BUDGET" -gt "$AUTO_BUDGET" ] && BUDGET="$AUTO_BUDGET"
[ "$BUDGET" -lt 10 ] && BUDGET=10
say "training budget per agent: ${BUDGET} s"
GRID=(python3 experiments/ogbench_grid.py
  --domain=cube-single --tasks="$TASKS" --seeds="0..$(( SEEDS - 1 ))" --size="$SIZE"
  --num_steps="$NUM_STEPS" --steps_per_call="$STEPS_PER_CALL" --eval_at="$EVAL_AT"
  --eval_episodes="$EVAL_EPISODES" --time_budget_s="$BUDGET"
  --dataset_dir="$DATA_DIR" --dataset_episodes="$FALLBACK_EPISODES"
  --dataset_steps_per_episode="$STEPS_PER_EPISODE" --workers="$GEN_WORKERS" $GRID_EXTRA)
if [ "$CONCURRENT" = "1" ]; then
  LIMIT=$(left)
  say "BEGIN train_eval: $NUM_AGENTS concurrent drivers (timeout ${LIMIT} s)"
  mkdir -p "$OUT/runs"
  RUN_DIRS=""
  for agent in $(echo "$AGENTS" | tr ',' ' '); do
    timeout --signal=TERM --kill-after=10 "$LIMIT" "${GRID[@]}" --agents="$agent" \
      --eval_workers=$(( EVAL_WORKERS / NUM_AGENTS )) --workdir="$OUT/runs/$agent" \
      > "$OUT/runs/$agent.log" 2>&1 &
    RUN_DIRS="$RUN_DIRS${RUN_DIRS:+,}$OUT/runs/$agent"
  done
  wait
  say "END train_eval"
  grep -h "agent-steps/s\|done in" "$OUT"/runs/*.log | tee -a "$LOG"
  if ls "$OUT"/runs/*/success.csv > /dev/null 2>&1; then
    python3 experiments/ogbench_grid.py --merge="$RUN_DIRS" --workdir="$OUT" >> "$LOG" 2>&1
    say "merged rc=$?"
  fi
  for agent in $(echo "$AGENTS" | tr ',' ' '); do   # one file each (<= 16 MiB comes back)
    mv "$OUT/runs/$agent.log" "$OUT/runs/$agent/" 2>/dev/null
    tar czf "$OUT/run_$agent.tar.gz" -C "$OUT/runs" "$agent"
  done
  rm -rf "$OUT/runs"
else
  step train_eval 100000 "${GRID[@]}" --agents="$AGENTS" --eval_workers="$EVAL_WORKERS" \
    --workdir="$OUT"
fi

# ---------------------------------------------------------------------------- 5. bench
if [ "$BENCH" = "1" ]; then
  say "BEGIN bench"
  timeout 100 python3 -m lps_jax.bench --gpu --output="$OUT/bench.json" >> "$LOG" 2>&1
  say "END bench rc=$?"
fi

# ---------------------------------------------------------------------------- 6. toy outputs
if [ -n "$TOY_PID" ]; then
  wait "$TOY_PID"; say "END toy rc=$?"
  mv "$OUT/toy.log" "$OUT/toy/" 2>/dev/null
  tar czf "$OUT/toy.tar.gz" -C "$OUT" toy && rm -rf "$OUT/toy"
fi

say "done; outputs:"
ls -la "$OUT" | tee -a "$LOG"
