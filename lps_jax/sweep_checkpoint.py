"""Checkpointed, exactly resumable vmapped sweeps: the sweep directory and its rules.

    workdir/sweep.json            {'sweep_id', 'members', 'config', 'argv', 'resume_command',
                                   'created', 'resumes': [{'time', 'changed'}]}
    workdir/checkpoints/<step>/   the stacked agents [N, ...] (lps_jax.checkpoint): every
                                  member's params, optimiser state (with its injected lr),
                                  target params, hparams, rng and step counters; saved every
                                  config.checkpoint_interval steps, at the end, and on SIGTERM
    workdir/member_###/           config.json (run_id, member, sweep_index), train.csv,
                                  eval.csv, metrics.jsonl; final.json when the sweep completes
    <workdir>.lock                one writer per sweep directory (rundir.RunLock)

A directory that holds a sweep is only used again with resume=True (--resume); the members and
the config must be the ones in sweep.json, except rundir.RESUMABLE_KEYS (num_steps, intervals,
eval_episodes). The latest readable checkpoint S is restored into freshly created agents laid
out for this process's devices (a checkpoint written on another device count restores too);
every member's rows after S are set aside, never deleted (metrics_log.truncate_after); an
evaluation at S that a kill interrupted is redone, and training goes on. Members and their
logged rows end bit-identical to an uninterrupted sweep (tests/test_sweep_resume.py).

`check_dir` only reads; `prepare_dir` is the first call that writes.
"""
import dataclasses
import datetime
import os
import shlex
import socket
import sys
from typing import Any, Dict, List, Optional, Sequence

from lps_jax import checkpoint, metrics_log, rundir

SWEEP_FILE = rundir.SWEEP_FILE
FINAL_FILE = rundir.FINAL_FILE


def member_dir(workdir: str, index: int) -> str:
  return os.path.join(workdir, f'member_{index:03d}')


def resume_command(program: str, argv: Sequence[str], add_resume: bool = True) -> str:
  """The command line that continues this sweep: `python -m <program>` (or `python <program>`
  for a .py path) with argv[1:] minus any --[no]resume / --[no]overwrite, plus --resume
  when add_resume."""
  drop = ('--resume', '--noresume', '--overwrite', '--nooverwrite')
  args = [a for a in argv[1:] if a.split('=', 1)[0] not in drop]
  head = ['python', program] if program.endswith('.py') else ['python', '-m', program]
  return shlex.join(head + args + (['--resume'] if add_resume else []))


@dataclasses.dataclass
class SweepDir:
  path: str
  saved: Optional[Dict[str, Any]] = None     # sweep.json when resuming a sweep
  changed: List[str] = dataclasses.field(default_factory=list)   # RESUMABLE_KEYS that differ

  @property
  def resuming(self) -> bool:
    return self.saved is not None

  @property
  def checkpoint_dir(self) -> str:
    return os.path.join(self.path, checkpoint.CHECKPOINT_DIR)


def _read_sweep(path: str) -> Optional[Dict[str, Any]]:
  """sweep.json of directory `path`, or None if it holds no sweep."""
  file = os.path.join(path, SWEEP_FILE)
  record = rundir.read_json_record(file, 'choose another --workdir')
  if record is not None and (not isinstance(record, dict)
                             or not isinstance(record.get('members'), list)):
    raise rundir.RunDirError(f'{file} is not a sweep record; choose another --workdir')
  return record


def check_dir(workdir: str, config, members: Sequence[dict], resume: bool) -> SweepDir:
  """How to use `workdir` for this sweep; RunDirError (one line) if it cannot be used as asked.
  Writes nothing."""
  if not workdir:
    raise rundir.RunDirError('--workdir is required')
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise rundir.RunDirError(f'workdir {workdir} exists and is not a directory')
  saved = _read_sweep(path) if os.path.isdir(path) else None
  if saved is None:
    others = sorted(n for n in (os.listdir(path) if os.path.isdir(path) else [])
                    if not n.endswith(rundir.IGNORED_ENTRIES_SUFFIX))
    if others:
      what = ('holds a run, not a sweep' if rundir.CONFIG_FILE in others
              else f'is not empty and holds no sweep (found {others[:3]})')
      raise rundir.RunDirError(f'workdir {workdir} {what}; choose another --workdir')
    return SweepDir(path)
  if not resume:
    raise rundir.RunDirError(f'workdir {workdir} already holds a sweep; pass --resume to '
                             f'continue it, or choose another --workdir')
  old = {'config': saved.get('config'), 'members': saved.get('members')}
  new = {'config': rundir.jsonable(config.to_dict()), 'members': rundir.jsonable(list(members))}
  diffs = rundir.config_diff(old, new)
  resumable = [f'config.{k}' for k in rundir.RESUMABLE_KEYS]
  changed = [d for d in diffs if d.split(':')[0] in resumable]
  blocking = [d for d in diffs if d not in changed]
  if blocking:
    raise rundir.RunDirError(f'--resume: this sweep differs from the one in {workdir}: '
                             + '; '.join(blocking) + ' (use the same --config, --seeds and '
                             '--sweep, or another --workdir)')
  sweep = SweepDir(path, saved, changed)
  on_disk = checkpoint.latest_step_on_disk(sweep.checkpoint_dir)
  if on_disk is not None and on_disk > config.num_steps:
    raise rundir.RunDirError(f'the last checkpoint of the sweep (step {on_disk}) is beyond '
                             f'config.num_steps={config.num_steps}; pass --num_steps >= {on_disk}')
  for index in range(len(members)):
    rundir.refuse_logs_without_checkpoints(member_dir(path, index), sweep.checkpoint_dir,
                                           'choose another --workdir')
  return sweep


def prepare_dir(sweep: SweepDir, config, members: Sequence[dict], member_configs,
                command: Optional[str] = None) -> List[str]:
  """Create or update the sweep directory: sweep.json and each member's config.json (a
  resumed sweep keeps its id, creation time and member run ids). Returns the run ids."""
  os.makedirs(sweep.path, exist_ok=True)
  now = datetime.datetime.now().isoformat(timespec='seconds')
  saved = sweep.saved or {}
  record = {'sweep_id': saved.get('sweep_id') or rundir.new_run_id(),
            'members': list(members), 'config': config.to_dict(), 'argv': sys.argv,
            'resume_command': command or saved.get('resume_command'),
            'host': socket.gethostname(), 'created': saved.get('created', now),
            'resumes': saved.get('resumes', []) + ([{'time': now, 'changed': sweep.changed}]
                                                   if sweep.resuming else [])}
  rundir.write_json(os.path.join(sweep.path, SWEEP_FILE), record)
  run_ids = []
  for index, (member, member_cfg) in enumerate(zip(members, member_configs)):
    path = member_dir(sweep.path, index)
    os.makedirs(path, exist_ok=True)
    old = (rundir.read_run(path) if sweep.resuming else None) or {}
    run_ids.append(old.get('run_id') or rundir.new_run_id())
    rundir.write_json(os.path.join(path, rundir.CONFIG_FILE), {
        'run_id': run_ids[-1], 'config': member_cfg.to_dict(), 'seed': member['seed'],
        'member': member, 'sweep_index': index, 'sweep': sweep.path,
        'created': old.get('created', now),
        'resumes': old.get('resumes', []) + ([{'time': now, 'changed': sweep.changed}]
                                             if sweep.resuming else [])})
  return run_ids


def open_member_logs(sweep: SweepDir, run_ids: Sequence[str], step: Optional[int]):
  """One MetricsLogger per member; resuming from step S sets every member's rows after S
  aside. Returns (loggers, rows set aside, one example set-aside directory or None)."""
  loggers, moved, where = [], 0, None
  for index, run_id in enumerate(run_ids):
    logger = metrics_log.MetricsLogger(member_dir(sweep.path, index), run_id=run_id,
                                       resume_step=step if sweep.resuming else None)
    loggers.append(logger)
    if logger.dropped_rows:
      moved, where = moved + logger.dropped_rows, where or logger.set_aside
  return loggers, moved, where


def write_member_finals(sweep: SweepDir, step: int, train_rows, eval_rows,
                        checkpoint_path: Optional[str]) -> None:
  """member_###/final.json of a completed sweep (what launch/results.py reads for a run)."""
  for index, (train, evaluation) in enumerate(zip(train_rows, eval_rows)):
    rundir.write_json(os.path.join(member_dir(sweep.path, index), FINAL_FILE), {
        'step': step, 'train': train, 'eval': evaluation, 'checkpoint': checkpoint_path,
        'sweep': sweep.path, 'sweep_index': index})
