"""Run a sweep spec (launch/spec.py) locally, as one vmapped program, or as SLURM/TPU scripts.

    python -m launch.launcher --spec=launch/examples/toy_grid.py --out=runs/toy_grid --mode=local

  --mode=local    one `python -m lps_jax.main` process per run, at most --parallel at a time
                  (default: one per GPU in --gpus, else one per CPU core); each run's workdir
                  and log are out/runs/<name>/ (launch.log). Runs always get --resume, so
                  re-running the same command resumes interrupted runs and skips finished ones
                  (--rerun re-launches those too). SIGTERM/Ctrl-C is forwarded to the runs as
                  SIGTERM: each saves a checkpoint and stops (exit 75).
  --mode=vmap     the whole grid x seeds as ONE vmapped program
                  (lps_jax.vmap_sweep.run_vmapped_sweep); only leaf hyperparameters (lr,
                  hparams such as tau/alpha) may vary. Member logs in out/vmap/member_###/,
                  checkpoints in out/vmap/checkpoints/. Re-running the same command resumes
                  the sweep from its last checkpoint (a finished one is only collected);
                  SIGTERM saves a checkpoint and exits 75 (--overwrite: start afresh).
  --mode=slurm    write out/slurm/sweep.sbatch (a job array, one task per run, requeued after
                  preemption) and out/slurm/commands.tsv; nothing is submitted.
  --mode=tpu      write out/tpu/launch.sh: every run in turn on all hosts of a TPU pod slice
                  (gcloud ... ssh --worker=all, jax.distributed env vars); nothing is executed.
  --mode=collect  (re)collect out/results.csv and out/results.png from the run directories.

Local and vmap sweeps end by collecting out/results.csv (run name, overrides, seed, status,
final train/eval metrics) and out/results.png (the final eval metric per run).
Exit codes: 0 all runs done, 1 some run failed, 2 bad spec/flags (one line), 75 interrupted.
"""
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from absl import app, flags

from launch import results as results_lib
from launch import spec as spec_lib
from launch.spec import LaunchError

MODES = ('local', 'vmap', 'slurm', 'tpu', 'collect')
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 75

FLAGS = flags.FLAGS


def define_flags():
  """The CLI flags (defined only when run as a program, so importing this module is free)."""
  flags.DEFINE_string('spec', None, 'Sweep spec: a .py (SPEC = {...}) or .json file.')
  flags.DEFINE_enum('mode', 'local', MODES, 'How to run the sweep.')
  flags.DEFINE_string('out', None, 'Sweep output directory.')
  flags.DEFINE_integer('parallel', 0, 'local: runs at a time (0: one per --gpus entry, else '
                       'one per CPU core); slurm: the array task limit (%N, 0: none).',
                       lower_bound=0)
  flags.DEFINE_list('gpus', [], 'local: GPU ids; each run gets one (CUDA_VISIBLE_DEVICES).')
  flags.register_validator('gpus', lambda ids: all(i.strip().isdigit() for i in ids),
                           '--gpus must be GPU ids (integers >= 0), e.g. 0,1')
  flags.DEFINE_bool('rerun', False, 'local: also re-launch runs that already finished.')
  flags.DEFINE_bool('validate', True, 'Validate every run config before launching anything.')
  flags.DEFINE_bool('overwrite', False, 'vmap: move an existing out/vmap aside first.')
  flags.DEFINE_string('python', None, 'Interpreter for the runs (default: this one for local, '
                      '"python" in generated scripts).')


# ---------------------------------------------------------------------------------- helpers
def _command(spec, run, workdir: str, python: str) -> List[str]:
  return [python, '-m', 'lps_jax.main', *spec_lib.main_args(spec, run, workdir)]


def validate_runs(spec, runs) -> None:
  """Every run's resolved config through config_lib.validate and its task's own checks
  (tasks.check_config), one line naming the run."""
  from lps_jax import config_lib, tasks  # pylint: disable=g-import-not-at-top
  from lps_jax.data import dataset as dataset_lib  # pylint: disable=g-import-not-at-top
  for run in runs:
    try:
      config = spec_lib.run_config(spec, run)
      config_lib.validate(config, num_devices=1)
      tasks.check_config(config)
    except (LaunchError, config_lib.ConfigError, dataset_lib.DatasetError) as e:
      raise LaunchError(f'run {run.name}: {e}') from None


def write_manifest(spec, runs, out: str, mode: str) -> None:
  os.makedirs(out, exist_ok=True)
  manifest = {'spec': spec.to_dict(), 'mode': mode, 'argv': sys.argv,
              'time': datetime.datetime.now().isoformat(timespec='seconds'),
              'runs': [{'name': r.name, 'seed': r.seed, 'overrides': r.overrides,
                        'group': r.group} for r in runs]}
  with open(os.path.join(out, 'sweep.json'), 'w') as f:
    json.dump(manifest, f, indent=2, default=str)


def _finish(spec, runs, out, statuses=None, workdirs=None) -> List[Dict]:
  rows = results_lib.collect(spec, runs, out, statuses, workdirs)
  metric = results_lib.pick_metric(rows, spec.metric)
  print('\n'.join(results_lib.summary_lines(rows, metric)))
  print(f'results: {os.path.join(out, "results.csv")}'
        + (f', {os.path.join(out, "results.png")}'
           if os.path.exists(os.path.join(out, 'results.png')) else ''))
  return rows


# ---------------------------------------------------------------------------------- local
class _Interrupt:
  """SIGTERM / SIGINT -> stop launching and forward SIGTERM to the running runs."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def run_local(spec, runs, out: str, parallel: int, gpus: List[str], rerun: bool,
              python: str) -> int:
  os.makedirs(os.path.join(out, 'runs'), exist_ok=True)
  slots = list(gpus) if gpus else [None] * (parallel or os.cpu_count() or 1)
  if gpus and parallel:
    slots = [gpus[i % len(gpus)] for i in range(parallel)]  # several runs per GPU
  pending, statuses = [], {}
  for run in runs:
    if not rerun and os.path.exists(os.path.join(results_lib.run_dir(out, run.name), 'final.json')):
      statuses[run.name] = 'done'
      print(f'[skip] {run.name}: already finished (--rerun to launch it again)')
    else:
      pending.append(run)
  total, started, running = len(pending), 0, {}
  with _Interrupt() as interrupt:
    while pending or running:
      if interrupt.requested and pending:
        print(f'interrupted: not launching {len(pending)} pending runs; stopping the running '
              f'ones (they checkpoint)', file=sys.stderr)
        for run in pending:
          statuses[run.name] = 'not started'
        pending = []
        for proc in running:
          proc.send_signal(signal.SIGTERM)
      while pending and slots:
        run, slot = pending.pop(0), slots.pop(0)
        workdir = os.path.abspath(results_lib.run_dir(out, run.name))
        os.makedirs(workdir, exist_ok=True)
        command = _command(spec, run, workdir, python)
        log = open(os.path.join(workdir, 'launch.log'), 'a')
        log.write(f'# {datetime.datetime.now().isoformat(timespec="seconds")} '
                  f'{shlex.join(command)}\n')
        log.flush()
        env = dict(os.environ)
        if slot is not None:
          env['CUDA_VISIBLE_DEVICES'] = str(slot)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)   # Ctrl-C reaches only the launcher
        started += 1
        running[proc] = (run, slot, time.time(), log)
        print(f'[{started}/{total}] start {run.name}' + (f' (GPU {slot})' if slot else ''))
      time.sleep(0.1)
      for proc in list(running):
        rc = proc.poll()
        if rc is None:
          continue
        run, slot, start, log = running.pop(proc)
        log.close()
        slots.append(slot)
        statuses[run.name] = results_lib.STATUS.get(rc, f'failed (exit {rc})')
        print(f'[{statuses[run.name]}] {run.name} in {time.time() - start:.1f} s'
              + ('' if rc == 0 else
                 f': see {os.path.join(results_lib.run_dir(out, run.name), "launch.log")}'))
  _finish(spec, runs, out, statuses)
  if interrupt.requested:
    print('sweep interrupted; run the same command again to resume it', file=sys.stderr)
    return EXIT_INTERRUPTED
  failed = [name for name, status in statuses.items() if status != 'done']
  if failed:
    print(f'{len(failed)} of {len(runs)} runs did not finish: {failed}', file=sys.stderr)
    return EXIT_FAILED
  return 0


# ---------------------------------------------------------------------------------- vmap
def run_vmap(spec, runs, out: str, overwrite: bool, spec_path: Optional[str] = None) -> int:
  try:
    from lps_jax import vmap_sweep as sweep_lib  # pylint: disable=g-import-not-at-top
    run_vmapped_sweep = sweep_lib.run_vmapped_sweep
  except (ImportError, AttributeError):
    raise LaunchError('--mode=vmap needs lps_jax.vmap_sweep.run_vmapped_sweep, which this checkout '
                      'does not have; use --mode=local') from None
  from lps_jax import parallel, preemption, rundir  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  loop_flags = {k: v for k, v in spec.flags.items()
                if k in ('num_steps', 'log_interval', 'eval_interval')}
  ignored = sorted(set(spec.flags) - set(loop_flags))
  if ignored:
    print(f"--mode=vmap: ignoring spec flags {ignored} (lps_jax.main options)", file=sys.stderr)
  workdir = os.path.join(out, 'vmap')
  if os.path.exists(workdir) and overwrite:
    print(f'--overwrite: moved {workdir} to {rundir.move_aside(workdir)}', file=sys.stderr)
  config = spec_lib.apply_overrides(spec_lib.load_config(spec.config),
                                    {**loop_flags, **spec.overrides})
  members = [{'seed': run.seed, **run.overrides} for run in runs]
  mesh = parallel.make_mesh(1) if jax.device_count() > 1 else None
  command = spec_path and shlex.join(['python', '-m', 'launch.launcher', f'--spec={spec_path}',
                                      f'--out={out}', '--mode=vmap'])
  try:      # always resume: the same command continues an interrupted vmapped sweep
    run_vmapped_sweep(config, members, workdir, progress=True, mesh=mesh, resume=True,
                      resume_command=command)
  except (sweep_lib.SweepError, parallel.ShardingError, rundir.RunDirError,
          sweep_lib.checkpoint.CheckpointError) as e:
    raise LaunchError(f'--mode=vmap: {e}') from None
  except preemption.Preempted as e:
    preemption.end_startup()      # one line: never both this and a start-up exit
    print(f'preempted: {e}', file=sys.stderr)
    return EXIT_INTERRUPTED
  workdirs = {run.name: sweep_lib.member_dir(workdir, i) for i, run in enumerate(runs)}
  _finish(spec, runs, out, {run.name: 'done' for run in runs}, workdirs)
  return 0


# ---------------------------------------------------------------------------------- scripts
def write_slurm(spec, runs, out: str, parallel: int, python: str) -> str:
  directory = os.path.abspath(os.path.join(out, 'slurm'))
  os.makedirs(os.path.join(directory, 'logs'), exist_ok=True)
  lines = []
  for run in runs:
    workdir = os.path.abspath(results_lib.run_dir(out, run.name))
    lines.append(f'{workdir}\t{shlex.join(_command(spec, run, workdir, python))}')
  with open(os.path.join(directory, 'commands.tsv'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  opts = dict(spec.slurm)
  setup = opts.pop('setup', '')
  grace = opts.pop('signal_seconds', 120)
  extra = opts.pop('extra', [])
  options = {'job-name': spec.name, 'time': '24:00:00', 'cpus-per-task': 8, **opts}
  sbatch = [f'#SBATCH --{k.replace("_", "-")}={v}' for k, v in options.items()] + list(extra)
  limit = f'%{parallel}' if parallel else ''
  script = f"""#!/bin/bash
#SBATCH --array=0-{len(runs) - 1}{limit}
#SBATCH --output={directory}/logs/%A_%a.out
#SBATCH --requeue
#SBATCH --signal=TERM@{grace}
{chr(10).join(sbatch)}
# Generated by `python -m launch.launcher --mode=slurm` for sweep {spec.name!r} ({len(runs)} runs).
# Submit: sbatch {directory}/sweep.sbatch
# One array task per line of commands.tsv (workdir <TAB> command). SLURM sends SIGTERM {grace} s
# before the time limit (and on preemption): the run checkpoints and exits 75, and the task is
# requeued (also on 143: SIGTERM during start-up); the command has --resume, so the requeued
# task continues from that checkpoint.
# Collect afterwards: python -m launch.launcher --mode=collect --spec=<spec> --out={os.path.abspath(out)}
set -uo pipefail
cd {shlex.quote(os.getcwd())}
{setup}
LINE=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {directory}/commands.tsv)
WORKDIR="${{LINE%%$'\\t'*}}"
CMD="${{LINE#*$'\\t'}}"
mkdir -p "$WORKDIR"
echo "# $(date -Is) job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}: $CMD" >> "$WORKDIR/launch.log"
eval "srun $CMD" >> "$WORKDIR/launch.log" 2>&1
rc=$?
if [ "$rc" -eq 75 ] || [ "$rc" -eq 143 ]; then    # checkpointed on SIGTERM / killed by it
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit "$rc"
"""
  path = os.path.join(directory, 'sweep.sbatch')
  with open(path, 'w') as f:
    f.write(script)
  os.chmod(path, 0o755)
  return path


def write_tpu(spec, runs, out: str, python: str) -> str:
  directory = os.path.abspath(os.path.join(out, 'tpu'))
  os.makedirs(directory, exist_ok=True)
  opts = spec.tpu
  root = opts.get('out', os.path.abspath(out))
  calls = []
  for run in runs:
    workdir = os.path.join(root, 'runs', run.name)
    command = shlex.join(_command(spec, run, workdir, python))
    calls.append(f'run {shlex.quote(command)}  # {run.name}')
  script = f"""#!/bin/bash
# Generated by `python -m launch.launcher --mode=tpu` for sweep {spec.name!r} ({len(runs)} runs).
# Runs each run in turn on ALL hosts of a TPU pod slice: every host executes the same command and
# jax.distributed joins them (LPS_COORDINATOR_ADDRESS / LPS_NUM_PROCESSES / LPS_PROCESS_ID, read
# by lps_jax.parallel). The run directories ({root}) must be on storage every host sees.
# Every command has --resume: after a preemption, run this script again to continue.
set -euo pipefail
TPU_NAME="${{TPU_NAME:-{opts.get('name', 'my-tpu')}}}"
ZONE="${{ZONE:-{opts.get('zone', 'us-central2-b')}}}"
REPO="${{REPO:-{opts.get('repo', '~/lps_jax')}}}"
SETUP="${{SETUP:-{opts.get('setup', 'true')}}}"
PORT="${{PORT:-8476}}"
COORD_IP=$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" \\
    --format='value(networkEndpoints[0].ipAddress)')
NUM_HOSTS=$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" \\
    --format='value(networkEndpoints[].ipAddress)' | tr ';,' '\\n\\n' | grep -c .)
WORKER_ID='$(curl -s -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number)'

run() {{
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="\\
cd $REPO && $SETUP && export LPS_COORDINATOR_ADDRESS=$COORD_IP:$PORT LPS_NUM_PROCESSES=$NUM_HOSTS \\
LPS_PROCESS_ID=$WORKER_ID && $1"
}}

{chr(10).join(calls)}
"""
  path = os.path.join(directory, 'launch.sh')
  with open(path, 'w') as f:
    f.write(script)
  os.chmod(path, 0o755)
  return path


# ---------------------------------------------------------------------------------- CLI
def sweep(spec_path: str, mode: str, out: str, parallel: int = 0, gpus=(), rerun=False,
          validate=True, overwrite=False, python: Optional[str] = None) -> int:
  """Library entry point of the CLI; returns the exit code (raises LaunchError on bad input)."""
  if not out:
    raise LaunchError('--out is required')
  if mode not in MODES:
    raise LaunchError(f'--mode must be one of {MODES}, got {mode!r}')
  if parallel < 0:
    raise LaunchError(f'--parallel must be >= 0, got {parallel}')
  spec = spec_lib.load_spec(spec_path)
  runs = spec_lib.expand(spec)
  if mode == 'collect':
    vmap_dir = os.path.join(out, 'vmap')
    workdirs = None
    if not os.path.isdir(os.path.join(out, 'runs')) and os.path.isdir(vmap_dir):
      from lps_jax import vmap_sweep as sweep_lib  # pylint: disable=g-import-not-at-top
      workdirs = {r.name: sweep_lib.member_dir(vmap_dir, i) for i, r in enumerate(runs)}
    _finish(spec, runs, out, None, workdirs)
    return 0
  if validate:
    validate_runs(spec, runs)
  write_manifest(spec, runs, out, mode)
  if mode == 'local':
    return run_local(spec, runs, out, parallel, list(gpus), rerun, python or sys.executable)
  if mode == 'vmap':
    return run_vmap(spec, runs, out, overwrite, spec_path)
  if mode == 'slurm':
    path = write_slurm(spec, runs, out, parallel, python or 'python')
    print(f'wrote {path} ({len(runs)} array tasks); submit with: sbatch {path}')
    return 0
  path = write_tpu(spec, runs, out, python or 'python')
  print(f'wrote {path} ({len(runs)} runs); run it from a machine with gcloud access')
  return 0


def _fail(message: str, code: int = EXIT_USAGE):
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr)
  sys.exit(code)


def parse_flags(argv):
  from lps_jax import cli  # pylint: disable=g-import-not-at-top
  return cli.parse_flags(argv, FLAGS, config_flag=None)


def main(argv):
  if FLAGS.mode == 'vmap':        # one program: a SIGTERM while it starts up exits 75 at once
    from lps_jax import preemption  # pylint: disable=g-import-not-at-top
    preemption.install()
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]}')
  try:
    code = sweep(FLAGS.spec, FLAGS.mode, FLAGS.out, FLAGS.parallel, FLAGS.gpus, FLAGS.rerun,
                 FLAGS.validate, FLAGS.overwrite, FLAGS.python)
  except LaunchError as e:
    _fail(e)
  sys.exit(code)


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=parse_flags)
