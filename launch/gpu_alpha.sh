#!/usr/bin/env bash
# The LPS paper's alpha figure on OGBench in one GPU run (< 9 minutes, every step time-boxed,
# partial results kept): QC-MFQL over alpha against LPS (and DSRL) at CPU size, per domain.
#
#   bash launch/gpu_alpha.sh            # from the repo root; the wheels of
#                                       # launch/make_gpu_wheels.sh in .whl/ (carried)
#
# Steps:
#   1. install the carried wheels (.whl/*.whl into /tmp/site; SKIP_INSTALL=1 skips it)
#   2. nvidia-smi, jax.devices()
#   3. data: <domain>-play-v0 for every domain at once, the 16 cores split between them
#      (EPISODES episodes each; if a domain misses the box, FALLBACK_EPISODES)
#   4. one experiments/ogbench_alpha.py process per domain, all at once on the GPU (small
#      networks are launch-bound, so they overlap); in each, one vmapped program per agent, in
#      order: LPS at LPS_ALPHAS x SEEDS (its alpha-1 members are the size check: the size learns
#      if their success is >= 0.3; table.md states it), QC-MFQL at QCMFQL_ALPHAS x SEEDS, DSRL at
#      its default if DSRL=1. Each program is evaluated (EVAL_EPISODES per member) by CPU
#      worker processes while the next one trains; a program's training budget is its share of
#      the time left (ogbench_alpha --total_time_s), so a slow GPU stops early and says so
#      (the steps column).
#   5. the per-domain runs merged into one CSV, table and figure.
#
# Writes into $OUT (default ./gpu_out), 8 files:
#   gpu_alpha.log   every step's output
#   alpha.csv       agent, domain, task, alpha, seed, steps, success
#   alpha.png       one panel per domain: success vs alpha (log), one line per agent, seeds'
#                   min..max band
#   table.md        per domain and agent: success per alpha, best alpha, 1/10 and 10x of it,
#                   min..max over alpha, the paper's values, the LPS size check
#   support.csv     distance of each member's actions to the nearest dataset chunk, and the
#                   data's own
#   train.csv       each member's losses at the end of training
#   summary.json    steps reached, agent-steps/s, first-call (compile) and wall seconds
#   runs.tar.gz     the per-domain runs and their logs
#
# Env vars (defaults: one H100 / H200 and 16 CPU cores; the run):
#   DOMAINS=puzzle-3x3,scene   (add cube-double if it fits: DOMAINS=puzzle-3x3,scene,cube-double)
#   EPISODES=100 FALLBACK_EPISODES=40 STEPS_PER_EPISODE=1001 GEN_WORKERS=16 GEN_S=150
#   DATA_DIR=/tmp/gpu_alpha_data  (a domain whose <domain>-play-v0.npz is there is reused)
#   QCMFQL_ALPHAS=0.03,0.1,0.3,1,3,10,30,100,300   LPS_ALPHAS=0.1,1,10   DSRL=0   SEEDS=2
#   AGENTS=lps,qcmfql  the programs' order in each driver (DSRL=1 appends dsrl). LPS first holds
#                    the size check; AGENTS=qcmfql,lps starts the larger evaluation load (18
#                    members) earlier if the evaluation tail does not fit
#   SIZE=cpu (2x128 nets, batch 128)  NUM_STEPS=100000  STEPS_PER_CALL=1000
#   EVAL_EPISODES=50  EVAL_WORKERS=14 (split between the domains)
#   TOTAL_S=525      hard wall-clock limit of the whole script
#   TAIL_S=120       seconds kept after training for the evaluation tail and the merge
#
# CPU test at a tiny size (everything but the wheel install):
#   SKIP_INSTALL=1 JAX_PLATFORMS=cpu OUT=/tmp/gpu_alpha_test EPISODES=2 STEPS_PER_EPISODE=40 \
#     GEN_WORKERS=2 QCMFQL_ALPHAS=0.1,10 LPS_ALPHAS=1 SEEDS=1 SIZE=tiny NUM_STEPS=4 \
#     STEPS_PER_CALL=2 EVAL_EPISODES=1 EVAL_WORKERS=2 TOTAL_S=900 TAIL_S=300 \
#     DATA_DIR=/tmp/gpu_alpha_data_test bash launch/gpu_alpha.sh
set -u
START=$(date +%s)
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_alpha.log"
: > "$LOG"
DOMAINS="${DOMAINS:-puzzle-3x3,scene}"
EPISODES="${EPISODES:-100}"
FALLBACK_EPISODES="${FALLBACK_EPISODES:-40}"
STEPS_PER_EPISODE="${STEPS_PER_EPISODE:-1001}"
GEN_WORKERS="${GEN_WORKERS:-16}"
GEN_S="${GEN_S:-150}"
DATA_DIR="${DATA_DIR:-/tmp/gpu_alpha_data}"
QCMFQL_ALPHAS="${QCMFQL_ALPHAS:-0.03,0.1,0.3,1,3,10,30,100,300}"
LPS_ALPHAS="${LPS_ALPHAS:-0.1,1,10}"
DSRL="${DSRL:-0}"
SEEDS="${SEEDS:-2}"
SIZE="${SIZE:-cpu}"
NUM_STEPS="${NUM_STEPS:-100000}"
STEPS_PER_CALL="${STEPS_PER_CALL:-1000}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
EVAL_WORKERS="${EVAL_WORKERS:-14}"
TOTAL_S="${TOTAL_S:-525}"
TAIL_S="${TAIL_S:-120}"
# Several JAX processes share the GPU (one per domain): no preallocation.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
DOMAIN_LIST=$(echo "$DOMAINS" | tr ',' ' ')
NUM_DOMAINS=$(echo "$DOMAINS" | tr ',' '\n' | grep -c .)
. launch/gpu_common.sh     # say, left, step, install_wheels, show_devices

# ---------------------------------------------------------------------------- 1. install
install_wheels

# ---------------------------------------------------------------------------- 2. devices
show_devices

# ---------------------------------------------------------------------------- 3. data
generate() {  # generate EPISODES MAX_SECONDS: every missing domain at once
  local episodes="$1" cap="$2" missing=() pids=()
  for d in $DOMAIN_LIST; do
    [ -f "$DATA_DIR/$d-play-v0.npz" ] || missing+=("$d")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local limit; limit=$(left)
  [ "$cap" -lt "$limit" ] && limit="$cap"
  local workers=$(( GEN_WORKERS / ${#missing[@]} ))
  [ "$workers" -lt 1 ] && workers=1
  say "BEGIN generate ${missing[*]}: $episodes episodes, $workers workers each (timeout ${limit} s)"
  for d in "${missing[@]}"; do
    timeout --signal=TERM --kill-after=10 "$limit" python3 -m lps_jax.data.generate \
      --env="$d-play-v0" --episodes="$episodes" --workers="$workers" --out="$DATA_DIR" \
      --steps_per_episode="$STEPS_PER_EPISODE" --noprogress --overwrite >> "$LOG" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  say "END generate"
}
generate "$EPISODES" "$GEN_S"
generate "$FALLBACK_EPISODES" 60          # only the domains that missed the box
ls -la "$DATA_DIR" >> "$LOG" 2>&1

# ---------------------------------------------------------------------------- 4. train + eval
AGENTS="${AGENTS:-lps,qcmfql}"
[ "$DSRL" = "1" ] && AGENTS="$AGENTS,dsrl"
TRAIN_S=$(( $(left) - TAIL_S ))
[ "$TRAIN_S" -lt 10 ] && TRAIN_S=10
LIMIT=$(left)
WORKERS_EACH=$(( EVAL_WORKERS / NUM_DOMAINS ))
[ "$WORKERS_EACH" -lt 1 ] && WORKERS_EACH=1
say "BEGIN train_eval: $NUM_DOMAINS drivers at once, agents $AGENTS, training ${TRAIN_S} s," \
  "$WORKERS_EACH eval workers each (timeout ${LIMIT} s)"
mkdir -p "$OUT/runs"
RUN_DIRS=""
PIDS=()
for d in $DOMAIN_LIST; do
  timeout --signal=TERM --kill-after=10 "$LIMIT" python3 experiments/ogbench_alpha.py \
    --domains="$d" --agents="$AGENTS" \
    --agent_alphas="qcmfql=$QCMFQL_ALPHAS;lps=$LPS_ALPHAS" --seeds="0..$(( SEEDS - 1 ))" \
    --size="$SIZE" --num_steps="$NUM_STEPS" --steps_per_call="$STEPS_PER_CALL" \
    --eval_episodes="$EVAL_EPISODES" --eval_workers="$WORKERS_EACH" \
    --total_time_s="$TRAIN_S" --dataset_dir="$DATA_DIR" \
    --dataset_episodes="$FALLBACK_EPISODES" --dataset_steps_per_episode="$STEPS_PER_EPISODE" \
    --workdir="$OUT/runs/$d" > "$OUT/runs/$d.log" 2>&1 &
  PIDS+=($!)
  RUN_DIRS="$RUN_DIRS${RUN_DIRS:+,}$OUT/runs/$d"
done
wait "${PIDS[@]}"
say "END train_eval"
grep -h "agent-steps/s\|done in\|budget" "$OUT"/runs/*.log | tee -a "$LOG"

# ---------------------------------------------------------------------------- 5. merge
MERGE_DIRS=""
for d in $DOMAIN_LIST; do
  [ -f "$OUT/runs/$d/alpha.csv" ] && MERGE_DIRS="$MERGE_DIRS${MERGE_DIRS:+,}$OUT/runs/$d"
done
if [ -n "$MERGE_DIRS" ]; then
  timeout 60 python3 experiments/ogbench_alpha.py --merge="$MERGE_DIRS" --workdir="$OUT" \
    >> "$LOG" 2>&1
  say "merged rc=$?"
fi
for d in $DOMAIN_LIST; do mv "$OUT/runs/$d.log" "$OUT/runs/$d/" 2>/dev/null; done
tar czf "$OUT/runs.tar.gz" -C "$OUT" runs && rm -rf "$OUT/runs"
say "done; outputs:"
ls -la "$OUT" | tee -a "$LOG"
