"""One writer per run directory: the <workdir>.lock rules, in process (no training)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from lps_jax import main, rundir


def dead_pid() -> int:
  """The pid of a process that has exited (and been reaped)."""
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def holding_process(workdir):
  """A live child process that holds the lock of `workdir` until its stdin closes."""
  code = ('import sys; from lps_jax import rundir; lock = rundir.RunLock.acquire(sys.argv[1]); '
          'print("locked", flush=True); sys.stdin.read(); lock.release()')
  proc = subprocess.Popen([sys.executable, '-c', code, workdir], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, 'PYTHONPATH': os.getcwd()})
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_lock_holds_pid_and_host_and_is_removed_on_release(tmp_path):
  workdir = str(tmp_path / 'run')
  lock = rundir.RunLock.acquire(workdir)
  info = rundir.read_lock(workdir)
  assert info['pid'] == os.getpid() and info['host'] == socket.gethostname()
  assert os.path.exists(workdir + '.lock') and not os.path.exists(workdir)
  lock.release()
  assert not os.path.exists(workdir + '.lock')


def test_second_writer_is_refused_naming_the_live_process(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = holding_process(workdir)
  try:
    with pytest.raises(rundir.RunDirError, match=f'in use by pid {holder.pid} on host'):
      rundir.RunLock.acquire(workdir)
  finally:
    holder.stdin.close()
    holder.wait(timeout=60)
  rundir.RunLock.acquire(workdir).release()       # free again once the holder is gone


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  pid = dead_pid()
  with open(workdir + '.lock', 'w') as f:
    json.dump({'pid': pid, 'host': socket.gethostname(), 'started': 'earlier'}, f)
  lock = rundir.RunLock.acquire(workdir)
  err = capsys.readouterr().err
  assert 'taking over the stale lock' in err and f'pid {pid}' in err
  assert rundir.read_lock(workdir)['pid'] == os.getpid()
  lock.release()


def test_lock_of_another_host_is_not_taken_over(tmp_path):
  workdir = str(tmp_path / 'run')
  with open(workdir + '.lock', 'w') as f:
    json.dump({'pid': 1, 'host': 'some-other-host', 'started': 'earlier'}, f)
  with pytest.raises(rundir.RunDirError, match='on another host'):
    rundir.RunLock.acquire(workdir)
  assert rundir.read_lock(workdir)['host'] == 'some-other-host'


def test_uncreatable_workdirs_are_refused_and_nothing_is_written(tmp_path):
  (tmp_path / 'afile').write_text('x')
  with pytest.raises(rundir.RunDirError, match='is a regular file'):
    rundir.RunLock.acquire(str(tmp_path / 'afile' / 'run'))
  with pytest.raises(rundir.RunDirError, match='cannot be created'):
    rundir.RunLock.acquire('/proc/lps_jax_no_such_dir/run')
  # Parents created for the lock are removed again when the run leaves them empty.
  lock = rundir.RunLock.acquire(str(tmp_path / 'a' / 'b' / 'run'))
  assert os.path.isdir(tmp_path / 'a' / 'b')
  lock.release()
  assert sorted(os.listdir(tmp_path)) == ['afile']


def test_non_main_process_of_a_multi_host_run_does_not_take_the_lock(tmp_path):
  """Process 0 holds the lock; the other processes of the same run must not trip over it."""
  workdir = str(tmp_path / 'run')
  holder = holding_process(workdir)
  try:
    other = main._lock_workdir(workdir, main_process=False)
    assert not other.held
    other.release()
    assert rundir.read_lock(workdir)['pid'] == holder.pid     # untouched
    with pytest.raises(rundir.RunDirError, match='in use by'):
      main._lock_workdir(workdir, main_process=True)
  finally:
    holder.stdin.close()
    holder.wait(timeout=60)
