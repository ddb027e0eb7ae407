"""Run directories: one run per workdir, resumed or moved aside on request, never deleted.

    workdir/config.json    {'config': resolved run config, 'seed', 'flags', 'argv', 'created',
                            'versions', 'resumes': [...]}: written when the run starts
    workdir/final.json     {'step', 'train', 'eval', ...}: written when the run completes

A workdir that holds a run (config.json) is only used again with
  --resume     continue it from its last checkpoint; the config and seed must be the same,
               except RESUMABLE_KEYS, which do not change the training trajectory;
  --overwrite  move the old run aside to <workdir>.old-<timestamp> and start afresh.
A directory that exists but holds no run must be empty (launcher *.log files are allowed).

`check` only reads; `prepare` is the first call that writes (call it after everything else has
been validated, so that bad input leaves the disk untouched).
"""
import dataclasses
import datetime
import json
import os
import socket
import sys
from typing import Any, Dict, List, Optional

CONFIG_FILE = 'config.json'
FINAL_FILE = 'final.json'
# Keys that may differ on --resume: they change how long the run is and what it logs, not the
# parameters it computes at a given step.
RESUMABLE_KEYS = ('num_steps', 'log_interval', 'eval_interval', 'eval_episodes',
                  'checkpoint_interval', 'checkpoint_max_to_keep')
IGNORED_ENTRIES_SUFFIX = '.log'


class RunDirError(ValueError):
  """A workdir that cannot be used as asked; the message is one line."""


def jsonable(value) -> Any:
  """Config dict -> plain JSON types (tuples become lists), as stored in config.json."""
  return json.loads(json.dumps(value, default=str))


def _flatten(d, prefix=''):
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def config_diff(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
  """['agent.lr: 0.0003 -> 0.001', ...] for the leaves that differ (flattened, dotted keys)."""
  old, new = _flatten(jsonable(old)), _flatten(jsonable(new))
  missing = object()
  diffs = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, missing), new.get(key, missing)
    if a != b:
      fmt = lambda v: '<absent>' if v is missing else json.dumps(v)
      diffs.append(f'{key}: {fmt(a)} -> {fmt(b)}')
  return diffs


def read_run(workdir: str) -> Optional[Dict[str, Any]]:
  """The saved config.json of a workdir, or None if it holds no run."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise RunDirError(f'{path} is unreadable ({type(e).__name__}); fix it or pass '
                      f'--overwrite') from None


@dataclasses.dataclass
class RunDir:
  path: str
  mode: str                              # 'new', 'resume' (a run exists) or 'overwrite'
  saved: Optional[Dict[str, Any]] = None # the existing config.json (resume / overwrite)
  changed: List[str] = dataclasses.field(default_factory=list)  # RESUMABLE_KEYS that differ

  @property
  def resuming(self) -> bool:
    return self.mode == 'resume'


def check(workdir: str, config, seed: int, resume: bool = False,
          overwrite: bool = False) -> RunDir:
  """Decide how to use `workdir`; RunDirError if it cannot be used as asked. Writes nothing."""
  if not workdir:
    raise RunDirError('--workdir is required')
  if resume and overwrite:
    raise RunDirError('--resume and --overwrite are mutually exclusive')
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise RunDirError(f'workdir {workdir} exists and is not a directory')
  saved = read_run(path) if os.path.isdir(path) else None
  if saved is None:
    if os.path.isdir(path) and not overwrite:
      others = [n for n in os.listdir(path) if not n.endswith(IGNORED_ENTRIES_SUFFIX)]
      if others:
        raise RunDirError(f'workdir {workdir} is not empty and holds no run (found '
                          f'{sorted(others)[:3]}); choose another --workdir or pass --overwrite '
                          f'to move it aside')
    mode = 'overwrite' if overwrite and os.path.isdir(path) else 'new'
    return RunDir(path, mode)
  if overwrite:
    return RunDir(path, 'overwrite', saved)
  if not resume:
    raise RunDirError(f'workdir {workdir} already holds a run; pass --resume to continue it, '
                      f'--overwrite to move it aside, or choose another --workdir')
  new = {'config': jsonable(config.to_dict()), 'seed': seed}
  old = {'config': saved.get('config'), 'seed': saved.get('seed')}
  diffs = config_diff(old, new)
  changed = [d for d in diffs if d.split(':')[0] in [f'config.{k}' for k in RESUMABLE_KEYS]]
  blocking = [d for d in diffs if d not in changed]
  if blocking:
    raise RunDirError(f'--resume: the config differs from the run in {workdir}: '
                      + '; '.join(blocking) + ' (use the same config, or --overwrite)')
  return RunDir(path, 'resume', saved, changed)


def _versions() -> Dict[str, str]:
  versions = {'python': sys.version.split()[0]}
  for name in ('jax', 'flax', 'optax', 'orbax.checkpoint'):
    module = sys.modules.get(name)
    if module is not None:
      versions[name] = getattr(module, '__version__', '?')
  return versions


def move_aside(path: str) -> str:
  """Rename `path` to <path>.old-<timestamp> (a fresh name); returns the new path."""
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  target, i = f'{path.rstrip(os.sep)}.old-{stamp}', 1
  while os.path.exists(target):
    target, i = f'{path.rstrip(os.sep)}.old-{stamp}-{i}', i + 1
  os.rename(path, target)
  return target


def write_json(path: str, value) -> None:
  """Atomic JSON write (tmp + rename)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(jsonable(value), f, indent=2)
  os.replace(tmp, path)


def prepare(run: RunDir, config, seed: int,
            flags: Optional[Dict[str, Any]] = None) -> Optional[str]:
  """Create / move aside / update the run directory and write config.json.

  Returns the path the old run was moved to (--overwrite), else None.
  """
  moved = None
  if run.mode == 'overwrite' and os.path.isdir(run.path):
    moved = move_aside(run.path)
    print(f'--overwrite: moved the old {run.path} to {moved}', file=sys.stderr)
  os.makedirs(run.path, exist_ok=True)
  now = datetime.datetime.now().isoformat(timespec='seconds')
  record = {'config': config.to_dict(), 'seed': seed, 'flags': flags or {}, 'argv': sys.argv,
            'host': socket.gethostname(), 'versions': _versions()}
  if run.resuming:
    record['created'] = run.saved.get('created', now)
    record['resumes'] = run.saved.get('resumes', []) + [{'time': now, 'changed': run.changed}]
  else:
    record['created'] = now
    record['resumes'] = []
  write_json(os.path.join(run.path, CONFIG_FILE), record)
  return moved


def read_final(workdir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(workdir, FINAL_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
