# Shared pieces of the one-command GPU scripts (sourced by launch/gpu_check.sh,
# launch/gpu_paper_row.sh and launch/gpu_alpha.sh; not run on its own).
#
# The sourcing script sets, before calling these:
#   START     $(date +%s) at its start        LOG       its log file
#   TOTAL_S   its hard wall-clock limit       RESERVE_S seconds kept back for a final step (0)
#
#   say MSG                       "[elapsed s] MSG" to stdout and the log
#   left                          seconds before TOTAL_S, less RESERVE_S
#   step NAME MAX_S CMD...        CMD under `timeout` min(MAX_S, left), output into the log
#   install_wheels                pip-install .whl/*.whl into /tmp/site (SKIP_INSTALL=1: skip)
#   show_devices                  nvidia-smi and the jax / mujoco versions into the log

export MUJOCO_GL=disable PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$LOG"; }

left() { echo $(( TOTAL_S - ${RESERVE_S:-0} - ($(date +%s) - START) )); }

step() {
  local name="$1" cap="$2"; shift 2
  local limit; limit=$(left)
  [ "$cap" -lt "$limit" ] && limit="$cap"
  if [ "$limit" -lt 5 ]; then say "SKIP $name (no time left)"; return 1; fi
  say "BEGIN $name (timeout ${limit} s)"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  say "END $name rc=$rc"
  return $rc
}

install_wheels() {
  if [ "${SKIP_INSTALL:-0}" != "1" ]; then
    step install 90 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl
  fi
}

show_devices() {
  step devices 60 bash -c 'nvidia-smi || true; nproc; python3 -c "
import jax, ogbench, mujoco, dm_control, ml_collections
print(\"jax\", jax.__version__, jax.devices(), \"mujoco\", mujoco.__version__)"'
}
