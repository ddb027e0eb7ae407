"""Metric sinks: CSV/JSONL (+ rewrite on resume), TensorBoard, wandb; progress bar; NaN stop."""
import csv
import glob
import importlib.util
import json
import os
import pathlib
import struct
import subprocess
import sys
import types

import pytest
from tensorboardX.proto import event_pb2

from lps_jax import metrics_log
from conftest import cli_env

REPO = pathlib.Path(__file__).resolve().parents[1]




def read_events(directory):
  """All tensorboard Event protos under `directory` (TFRecord framing: len, crc, data, crc)."""
  events = []
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[offset + 12:offset + 12 + length])
      events.append(event)
      offset += 12 + length + 4
  return events


def scalars(events):
  return {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value}


# ---------------------------------------------------------------------------------- files
def test_csv_jsonl_rows_and_truncate_on_resume(tmp_path):
  logger = metrics_log.MetricsLogger(str(tmp_path))
  for step in (2, 4, 6):
    logger.write('train', step, {'loss': step / 10, 'q': -step})
  logger.write('eval', 4, {'reward': 0.5})
  logger.close()
  with open(tmp_path / 'train.csv', 'a') as f:
    f.write('8,0.8')                                  # a half-written row from a killed run
  assert [r['step'] for r in metrics_log.read_rows(str(tmp_path), 'train')] == [2, 4, 6, 8]

  # Resume from a checkpoint at step 4: rows after it go, the header is reused.
  resumed = metrics_log.MetricsLogger(str(tmp_path), resume_step=4)
  assert resumed.dropped_rows == 2 + 1               # train 6, the partial 8; jsonl train 6
  # ... to a side directory, never deleted.
  assert os.path.dirname(resumed.set_aside) == str(tmp_path / 'set_aside')
  with open(os.path.join(resumed.set_aside, 'train.csv')) as f:
    assert f.read() == 'step,loss,q\n6,0.6,-6.0\n8,0.8\n'
  with open(os.path.join(resumed.set_aside, 'metrics.jsonl')) as f:
    assert [(r['stream'], r['step']) for r in map(json.loads, f)] == [('train', 6)]
  assert sorted(os.listdir(resumed.set_aside)) == ['metrics.jsonl', 'train.csv']
  resumed.write('train', 6, {'q': -6.0, 'loss': 0.6})  # column order from the file, not the dict
  resumed.close()
  with open(tmp_path / 'train.csv') as f:
    rows = list(csv.reader(f))
  assert rows == [['step', 'loss', 'q'], ['2', '0.2', '-2.0'], ['4', '0.4', '-4.0'],
                  ['6', '0.6', '-6.0']]
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [(l['stream'], l['step']) for l in lines] == [('train', 2), ('train', 4), ('eval', 4),
                                                       ('train', 6)]
  assert resumed.has_row('eval', 4) and not resumed.has_row('eval', 6)
  assert resumed.last_row('train') == {'loss': 0.6, 'q': -6.0}


def test_every_jsonl_row_carries_the_run_id(tmp_path):
  """Rows of two runs written into one file can be told apart."""
  for run_id in ('aaaa', 'bbbb'):
    logger = metrics_log.MetricsLogger(str(tmp_path), run_id=run_id)
    logger.write('train', 2, {'loss': 1.0})
    logger.write('eval', 2, {'reward': 0.0})
    logger.close()
  lines = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  assert [(l['run'], l['stream']) for l in lines] == [('aaaa', 'train'), ('aaaa', 'eval'),
                                                      ('bbbb', 'train'), ('bbbb', 'eval')]


def test_first_nonfinite_prefers_losses():
  assert metrics_log.first_nonfinite({'a': 1.0, 'b': 2.0}) is None
  key, value = metrics_log.first_nonfinite({'actor/q': float('nan'), 'critic/loss': float('inf')})
  assert key == 'critic/loss' and value == float('inf')


# ---------------------------------------------------------------------------------- sinks
def test_tensorboard_scalars_and_purge_on_resume(tmp_path):
  logger = metrics_log.MetricsLogger(str(tmp_path), tensorboard=True)
  for step in (2, 4, 6):
    logger.write('train', step, {'critic/loss': float(step)})
  logger.close()
  logger = metrics_log.MetricsLogger(str(tmp_path), resume_step=4, tensorboard=True)
  logger.write('train', 6, {'critic/loss': 60.0})
  logger.close()
  events = read_events(str(tmp_path / 'tensorboard'))
  values = [(e.step, v.simple_value) for e in events for v in e.summary.value]
  assert values == [(2, 2.0), (4, 4.0), (6, 6.0), (6, 60.0)]
  # TensorBoard drops the old step-6 point: the resumed writer starts with a purge marker.
  starts = [e.step for e in events if e.session_log.status == event_pb2.SessionLog.START]
  assert starts == [5]


def test_wandb_sink_with_a_stand_in_module(tmp_path, monkeypatch):
  calls = []

  class Run:
    def log(self, data, step):
      calls.append(('log', data, step))

    def finish(self):
      calls.append(('finish',))

  fake = types.ModuleType('wandb')
  fake.util = types.SimpleNamespace(generate_id=lambda: 'abc123')
  fake.init = lambda **kwargs: calls.append(('init', kwargs)) or Run()
  monkeypatch.setitem(sys.modules, 'wandb', fake)
  run = metrics_log.init_wandb(str(tmp_path), {'agent': {'lr': 1e-3}}, 'proj')
  logger = metrics_log.MetricsLogger(str(tmp_path), wandb_run=run)
  logger.write('eval', 4, {'reward': 0.5})
  logger.close()
  assert calls[0][1]['id'] == 'abc123' and calls[0][1]['resume'] == 'allow'
  assert calls[0][1]['config'] == {'agent': {'lr': 1e-3}} and calls[0][1]['project'] == 'proj'
  assert calls[1] == ('log', {'eval/reward': 0.5}, 4) and calls[2] == ('finish',)
  fake.util.generate_id = lambda: 'other'          # a resumed workdir keeps its wandb run id
  metrics_log.init_wandb(str(tmp_path), {}, 'proj')
  assert calls[-1][1]['id'] == 'abc123'


# ---------------------------------------------------------------------------------- CLI
@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('logging')
  base = [sys.executable, '-m', 'lps_jax.main', '--config=experiments/configs/lps.py:test']
  commands = {
      'ok': base + [f'--workdir={root / "ok"}', '--progress=true', '--tensorboard=true'],
      # lr = 1e8: finite loss at step 1, params ~1e8 after it, NaN at step 2.
      'nan': base + [f'--workdir={root / "nan"}', '--config.steps_per_call=1', '--num_steps=4',
                     '--config.checkpoint_interval=1', '--log_interval=1',
                     '--config.agent.lr=1e8', '--progress=false'],
      'wandb': base + [f'--workdir={root / "wandb"}', '--wandb'],
  }
  procs = {name: subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
           for name, cmd in commands.items()}
  return root, {name: (p.wait(timeout=180), *p.communicate()) for name, p in procs.items()}


def test_run_writes_tensorboard_and_shows_progress(cli_runs):
  root, results = cli_runs
  rc, _, err = results['ok']
  assert rc == 0, err
  assert '4/4' in err and ('step/s' in err or 's/step' in err)     # tqdm bar with the rate
  tags = scalars(read_events(str(root / 'ok' / 'tensorboard')))
  assert ('train/critic/loss', 2) in tags and ('train/critic/loss', 4) in tags
  assert ('eval/reward', 4) in tags and ('train/steps_per_second', 4) in tags


def test_nan_loss_stops_with_exit_3_naming_last_good_checkpoint(cli_runs):
  root, results = cli_runs
  rc, _, err = results['nan']
  lines = [line for line in err.splitlines() if line.strip()]
  assert rc == 3, err
  assert len(lines) == 1 and 'Traceback' not in err
  assert lines[0].startswith('error: ') and 'nan' in lines[0] and 'at step 2' in lines[0]
  assert f'last good checkpoint: {root / "nan" / "checkpoints" / "1"} (step 1)' in lines[0]
  assert os.listdir(root / 'nan' / 'checkpoints') == ['1']       # the NaN state is not saved
  assert not os.path.exists(root / 'nan' / 'final.json')


@pytest.mark.skipif(importlib.util.find_spec('wandb') is not None, reason='wandb is installed')
def test_wandb_flag_without_wandb_is_a_clear_error(cli_runs):
  root, results = cli_runs
  rc, _, err = results['wandb']
  assert rc == 2 and err.strip() == ('error: --wandb needs the wandb package: pip install wandb '
                                     '(or run without --wandb)')
  assert not os.path.exists(root / 'wandb')
