"""Run directories: one run per workdir, resumed or moved aside on request, never deleted.

    workdir/config.json    {'run_id', 'config': resolved run config, 'seed', 'flags', 'argv',
                            'created', 'versions', 'resumes': [...]}: written when the run starts
    workdir/final.json     {'step', 'train', 'eval', ...}: written when the run completes

A workdir that holds a run (config.json) is only used again with
  --resume     continue it from its last checkpoint; the config and seed must be the same,
               except RESUMABLE_KEYS, which do not change the training trajectory;
  --overwrite  move the old run aside to <workdir>.old-<timestamp> and start afresh.
A directory that exists but holds no run must be empty (launcher *.log files are allowed).

One writer per workdir: `RunLock.acquire` takes <workdir>.lock (beside the workdir, so that it
survives --overwrite moving the workdir aside) before anything is written. The lock file holds
{pid, host, started, argv} and an exclusive flock for as long as the process lives; a
second writer (a fresh run, --resume or --overwrite) is refused while that process is alive.
A lock left by a dead process on this host is taken over with a message; one from another host
is refused (delete it by hand once that run is gone). The lock file is removed on exit.

Every run has a run id (config.json 'run_id', kept across --resume; a new one after
--overwrite); the metric logger writes it into every metrics.jsonl row.

`check` only reads; `prepare` is the first call that writes (call it after everything else has
been validated, so that bad input leaves the disk untouched).
"""
import dataclasses
import datetime
import errno
import fcntl
import importlib.metadata
import json
import os
import socket
import sys
import uuid
from typing import Any, Dict, List, Optional

CONFIG_FILE = 'config.json'
FINAL_FILE = 'final.json'
LOCK_SUFFIX = '.lock'
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


def read_json_record(path: str, remedy: str) -> Optional[Any]:
  """The JSON in file `path`, None if there is no such file; RunDirError (one line ending in
  `remedy`) if it cannot be read or parsed."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise RunDirError(f'{path} is unreadable ({type(e).__name__}); {remedy}') from None


def read_run(workdir: str) -> Optional[Dict[str, Any]]:
  """The saved config.json of a workdir, or None if it holds no run."""
  return read_json_record(os.path.join(workdir, CONFIG_FILE), 'fix it or pass --overwrite')


def is_run_record(saved) -> bool:
  """Is this config.json a run's (written by prepare), rather than some other config.json?"""
  return isinstance(saved, dict) and isinstance(saved.get('config'), dict) and 'seed' in saved


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
  refuse_sweep_member(workdir, path, saved)
  if saved is not None and not is_run_record(saved) and not overwrite:
    raise RunDirError(f'workdir {workdir} holds a {CONFIG_FILE} that is not a run record (no '
                      f"'config' and 'seed'); choose another --workdir or pass --overwrite to "
                      f'move it aside')
  if overwrite and os.path.isdir(path):
    check_aside_name(path)
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


SWEEP_FILE = 'sweep.json'       # a vmapped sweep's directory (lps_jax.vmap_sweep)


def refuse_sweep_member(workdir: str, path: str, saved: Optional[Dict[str, Any]]) -> None:
  """RunDirError if `saved` (the config.json in `path`) is a member of a vmapped sweep: such a
  directory has no checkpoints of its own (they are the sweep's, stacked), so it is resumed
  with its sweep (the sweep.json 'resume_command'), never as a run."""
  if not isinstance(saved, dict) or 'sweep_index' not in saved:
    return
  sweep = os.path.dirname(path.rstrip(os.sep))
  command = None
  try:
    with open(os.path.join(sweep, SWEEP_FILE)) as f:
      command = json.load(f).get('resume_command')
  except (OSError, ValueError, AttributeError):
    pass
  command = command or (f'python -m lps_jax.vmap_sweep --workdir={sweep} --resume with the '
                        f'--config, --seeds and --sweep it was started with')
  raise RunDirError(f'workdir {workdir} is member {saved["sweep_index"]} of the vmapped sweep '
                    f'{sweep}, not a run of its own; resume the whole sweep: {command}')


def refuse_logs_without_checkpoints(workdir: str, checkpoint_dir: str, remedy: str) -> None:
  """RunDirError when resuming `workdir` would start from step 0 although it holds logged
  metric rows and has no `checkpoint_dir` at all (deleted, or never copied with the logs):
  its rows match no checkpoint. Nothing is changed; `remedy` says what the user may do."""
  if os.path.isdir(checkpoint_dir):
    return                 # a run killed before its first checkpoint: rows are set aside
  from lps_jax import metrics_log  # pylint: disable=g-import-not-at-top
  rows = metrics_log.read_rows(workdir, 'train') + metrics_log.read_rows(workdir, 'eval')
  if not rows:
    return
  last = max(int(row['step']) for row in rows)
  raise RunDirError(f'--resume: {workdir} holds {len(rows)} logged rows (up to step {last}) but '
                    f'no {os.path.basename(checkpoint_dir)}/ directory, so no checkpoint '
                    f'matches them; nothing was changed; restore {checkpoint_dir}, or {remedy}')


def new_run_id() -> str:
  return uuid.uuid4().hex[:12]


def run_id_of(run: RunDir) -> str:
  """The run id that prepare() writes: the saved one when resuming, else a fresh one."""
  if run.resuming and run.saved and run.saved.get('run_id'):
    return run.saved['run_id']
  return new_run_id()


# ---------------------------------------------------------------------------------- lock
def unwritable_reason(path: str) -> Optional[str]:
  """Why directory `path` cannot be created or written (one line), or None. Writes nothing."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    return f'{path} exists and is not a directory'
  ancestor = path
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    return f'cannot create {path}: {ancestor} is a regular file, not a directory'
  if not os.access(ancestor, os.W_OK | os.X_OK):
    return f'cannot create {path}: {ancestor} is not writable'
  return None


def lock_path(workdir: str) -> str:
  return os.path.abspath(os.path.expanduser(workdir)).rstrip(os.sep) + LOCK_SUFFIX


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def read_lock(workdir: str) -> Optional[Dict[str, Any]]:
  """The holder recorded in <workdir>.lock ({pid, host, started, argv}), or None."""
  try:
    with open(lock_path(workdir)) as f:
      return json.loads(f.read() or 'null')
  except (OSError, ValueError):
    return None


def _holder(info: Optional[Dict[str, Any]]) -> str:
  if not info:
    return 'another process'
  return f'pid {info.get("pid")} on host {info.get("host")} (started {info.get("started")})'


class RunLock:
  """The exclusive writer lock of one workdir (see the module docstring)."""

  def __init__(self, workdir: str, fd: Optional[int], created: List[str]):
    self.workdir, self.path = workdir, lock_path(workdir)
    self._fd, self._created = fd, created

  @property
  def held(self) -> bool:
    return self._fd is not None

  @classmethod
  def acquire(cls, workdir: str, enabled: bool = True) -> 'RunLock':
    """Take the lock or raise RunDirError naming the live holder. enabled=False (the non-main
    processes of a multi-host run, which never write run files): a no-op lock."""
    if not enabled:
      return cls(workdir, None, [])
    if not workdir:
      raise RunDirError('--workdir is required')
    reason = unwritable_reason(workdir)
    if reason:
      raise RunDirError(f'workdir {workdir}: {reason}')
    path = lock_path(workdir)
    created = []
    parent = os.path.dirname(path)
    try:
      missing = []
      while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
      for directory in reversed(missing):
        os.mkdir(directory)
        created.append(directory)
      for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
          os.close(fd)
          if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
          raise RunDirError(f'workdir {workdir} is in use by {_holder(read_lock(workdir))}; '
                            f'wait for it to finish or stop it (lock: {path})') from None
        try:
          same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
          same = False
        if same:
          break
        os.close(fd)     # the holder removed the file between our open and flock: retry
      else:
        raise RunDirError(f'workdir {workdir}: could not take the lock {path}')
      lock = cls(workdir, fd, created)
      lock._take_over(os.read(fd, 1 << 16))
      return lock
    except OSError as e:
      _remove_dirs(created)
      raise RunDirError(f'workdir {workdir} cannot be created ({e.strerror}: '
                        f'{e.filename or path})') from None
    except RunDirError:
      _remove_dirs(created)
      raise

  def _take_over(self, previous: bytes) -> None:
    """Write our holder record; a leftover record is a stale lock (or another host's)."""
    try:
      info = json.loads(previous.decode() or 'null')
    except ValueError:
      info = None
    host = socket.gethostname()
    if isinstance(info, dict) and info.get('pid') is not None:
      same_host = info.get('host') == host
      if not same_host or (_pid_alive(int(info['pid'])) and int(info['pid']) != os.getpid()):
        self._close()
        where = 'on this host and is still running' if same_host else 'on another host'
        raise RunDirError(f'workdir {self.workdir} is locked by {_holder(info)}, which is '
                          f'{where}; if that run is really gone, delete {self.path}')
      print(f'taking over the stale lock {self.path} of {_holder(info)}: that process is no '
            f'longer running', file=sys.stderr)
    record = {'pid': os.getpid(), 'host': host,
              'started': datetime.datetime.now().isoformat(timespec='seconds'),
              'argv': sys.argv}
    os.lseek(self._fd, 0, os.SEEK_SET)
    os.ftruncate(self._fd, 0)
    os.write(self._fd, json.dumps(record).encode())
    os.fsync(self._fd)

  def _close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def release(self) -> None:
    """Remove the lock file (still holding the flock), then let go; idempotent."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except OSError:
      pass
    self._close()
    _remove_dirs(self._created)      # parents created for the lock, if the run left them empty

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def _remove_dirs(created: List[str]) -> None:
  for directory in reversed(created):
    try:
      os.rmdir(directory)
    except OSError:
      break


def _versions() -> Dict[str, str]:
  """The installed versions of python and the numeric stack (read from package metadata:
  orbax is only imported once a checkpoint is written)."""
  versions = {'python': sys.version.split()[0]}
  for module, distribution in (('jax', 'jax'), ('flax', 'flax'), ('optax', 'optax'),
                               ('orbax.checkpoint', 'orbax-checkpoint')):
    try:
      versions[module] = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


ASIDE_SUFFIX_MAX = len('.old-20000101-000000-99')     # move_aside's suffix, with a counter


def check_aside_name(path: str) -> None:
  """RunDirError if move_aside(path) could not name the old run (its name would be too long
  for the file system); writes nothing, so --overwrite fails before any work."""
  parent, name = os.path.split(os.path.abspath(path).rstrip(os.sep))
  try:
    name_max = os.pathconf(parent, 'PC_NAME_MAX')
  except (OSError, ValueError):
    name_max = 255
  if len(name.encode()) + ASIDE_SUFFIX_MAX > name_max:
    raise RunDirError(f'--overwrite cannot move {path} aside: its name plus .old-<timestamp> '
                      f'would be longer than the file system allows ({name_max} bytes); move '
                      f'it yourself, or choose a shorter --workdir')


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


def prepare(run: RunDir, config, seed: int, flags: Optional[Dict[str, Any]] = None,
            run_id: Optional[str] = None) -> Optional[str]:
  """Create / move aside / update the run directory and write config.json (with run_id).

  Returns the path the old run was moved to (--overwrite), else None.
  """
  moved = None
  if run.mode == 'overwrite' and os.path.isdir(run.path):
    moved = move_aside(run.path)
    print(f'--overwrite: moved the old {run.path} to {moved}', file=sys.stderr)
  os.makedirs(run.path, exist_ok=True)
  now = datetime.datetime.now().isoformat(timespec='seconds')
  record = {'run_id': run_id or run_id_of(run), 'config': config.to_dict(), 'seed': seed,
            'flags': flags or {}, 'argv': sys.argv, 'host': socket.gethostname(),
            'versions': _versions()}
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
