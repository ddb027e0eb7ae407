"""SIGTERM (preemption) handling shared by the CLIs: runs, vmapped sweeps, the OGBench grid.

A program has two phases:

  start-up   from install() (the first thing a CLI does, before its heavy imports) until the
             first training call has returned (end_startup()): there is nothing new to save,
             so a SIGTERM ends the process at once with exit 75, even while the main thread
             is inside a long XLA compile or a dataset load. A watchdog thread wakes on the
             signal (signal.set_wakeup_fd), runs the registered cleanups (e.g. the workdir
             lock), prints one line (startup_message) and exits.
  training   a SIGTERM sets StopSignal.requested; the loop saves a checkpoint at the next
             step boundary, then exits 75.

Ending a process in its start-up phase is never worse than kill -9, which every writer already
survives (atomic renames, orbax commits a checkpoint by renaming it, metric rows after the
restored step are set aside on resume): the exit only comes sooner and tidier. `holding()`
defers such an exit until a block ends (a metric row is written whole).

Nothing here imports JAX: install() runs before the heavy imports.
"""
import contextlib
import os
import signal
import sys
import threading
import time

EXIT_PREEMPTED = 75           # sysexits EX_TEMPFAIL: "try again later"
FAULT_ENV = 'LPS_JAX_FAULT_AT_STEP'   # tests only: 'POINT:SIG', e.g. '14:TERM', 'built:KILL'
DEFAULT_STARTUP_MESSAGE = ('SIGTERM while starting up: nothing to save (nothing was written); '
                           'rerun the same command')


class Preempted(RuntimeError):
  """SIGTERM received; the message says what was saved and how to continue."""


_seen = []                    # SIGTERMs received since install()
_lock = threading.RLock()     # held by the watchdog while it exits, and by holding()
_state = {'installed': False, 'armed': False, 'message': DEFAULT_STARTUP_MESSAGE,
          'cleanups': []}


def _note(signum, frame):
  del frame
  _seen.append(signum)


def seen() -> bool:
  """Whether a SIGTERM arrived since install() (False when install() was never called)."""
  return bool(_seen)


def install(message: str = DEFAULT_STARTUP_MESSAGE) -> bool:
  """Note SIGTERMs and end the process on one while starting up. Call from the main thread
  of a CLI, before the heavy imports. Returns False (and does nothing) off the main thread."""
  if threading.current_thread() is not threading.main_thread():
    return False
  signal.signal(signal.SIGTERM, _note)
  if not _state['installed']:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name='sigterm-watchdog',
                     daemon=True).start()
    _state['installed'] = True
  _state.update(armed=True, message=message)
  return True


def arm(message: str) -> None:
  """From now on (again) a SIGTERM exits at once with `message`: call once everything worth
  keeping is on disk (e.g. training done, evaluations still running). No-op without
  install()."""
  if _state['installed']:
    _state.update(armed=True, message=message)


def set_startup_message(message: str) -> None:
  """What a SIGTERM during start-up prints (after 'preempted: ')."""
  _state['message'] = message


def add_cleanup(fn) -> None:
  """Run fn() before a start-up exit (e.g. release the workdir lock)."""
  _state['cleanups'].append(fn)


def remove_cleanup(fn) -> None:
  if fn in _state['cleanups']:
    _state['cleanups'].remove(fn)


def end_startup() -> None:
  """From now on a SIGTERM is handled by the training loop (StopSignal). Blocks while a
  start-up exit is under way (the process then ends before this returns)."""
  with _lock:
    _state['armed'] = False


def exit_preempted(error) -> None:
  """A CLI's ending on Preempted: 'preempted: <message>' on stderr, exit 75 (one line: a
  start-up exit under way wins)."""
  end_startup()
  print(f'preempted: {error}', file=sys.stderr)
  sys.exit(EXIT_PREEMPTED)


@contextlib.contextmanager
def holding():
  """A start-up exit waits until this block has finished (e.g. a metric row being written)."""
  with _lock:
    yield


def _exit_now() -> None:
  for fn in list(_state['cleanups']):
    try:
      fn()
    except Exception:  # pylint: disable=broad-except  (exiting anyway)
      pass
  if 'multiprocessing' in sys.modules:     # worker pools (dataset generation, evaluation)
    for child in sys.modules['multiprocessing'].active_children():
      try:
        child.terminate()
      except Exception:  # pylint: disable=broad-except
        pass
  os.write(2, f'preempted: {_state["message"]}\n'.encode())
  os._exit(EXIT_PREEMPTED)   # pylint: disable=protected-access


def _watch(read_fd: int) -> None:
  while True:
    try:
      data = os.read(read_fd, 64)
    except OSError:
      return
    if not data:
      return
    if signal.SIGTERM in data:
      with _lock:
        if _state['armed']:
          _exit_now()


class StopSignal:
  """Context manager: SIGTERM sets `requested` instead of killing the process (a SIGTERM that
  came before, while the CLI was starting up, counts too)."""

  def __init__(self, signum=signal.SIGTERM):
    self.signum, self._previous = signum, None
    self.requested = signum == signal.SIGTERM and seen()

  def _handler(self, signum, frame):
    _note(signum, frame)
    self.requested = True

  def __enter__(self):
    try:
      self._previous = signal.signal(self.signum, self._handler)
    except ValueError:      # not the main thread: leave the default behaviour
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(self.signum, self._previous)


def inject_fault(point) -> None:
  """Tests only: deliver a real signal to this process at `point` (a step, or a named point
  such as 'start' or 'built'). LPS_JAX_FAULT_AT_STEP='POINT:SIG' with SIG one of KILL, TERM,
  STOP, or TERM+HANG (SIGTERM, then block the main thread for 10 minutes, as a long compile
  would)."""
  spec = os.environ.get(FAULT_ENV)
  if not spec:
    return
  at, name = spec.rsplit(':', 1)
  if at != str(point):
    return
  hang = name.endswith('+HANG')
  os.kill(os.getpid(), getattr(signal, f'SIG{name.split("+")[0]}'))
  if hang:
    time.sleep(600)
