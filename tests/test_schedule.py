"""Any num_steps runs (a shorter last call); intervals fire at the first call boundary after
they fall due; resume stays exact across the shorter call; the progress bar's fields."""
import csv
import os

import jax
import numpy as np

from experiments.configs import lawr as lawr_config
from experiments.configs import lps as lps_config
from lps_jax import agents, checkpoint, engine, main, tasks
from lps_jax.data import dataset as dataset_lib


def test_call_lengths_and_falls_due():
  lengths = lambda *args: list(engine.call_lengths(*args))
  assert lengths(0, 10, 4) == [4, 4, 2]
  assert lengths(0, 8, 4) == [4, 4]
  assert lengths(8, 10, 4) == [2]
  assert lengths(5, 9, 2) == [2, 2]
  assert lengths(10, 10, 4) == [] and lengths(0, 3, 500) == [3]
  # Lazy: 10^15 calls of K = 1 cost nothing until they run.
  assert next(iter(engine.call_lengths(0, 10 ** 15, 1))) == 1
  boundaries = [0, 2, 4, 6, 8, 10, 11]
  fired = lambda interval: [b for a, b in zip(boundaries, boundaries[1:])
                            if engine.falls_due(a, b, interval)]
  assert fired(3) == [4, 6, 10]                 # 3 -> 4, 6 -> 6, 9 -> 10
  assert fired(2) == [2, 4, 6, 8, 10]
  assert fired(11) == [11] and fired(0) == []


def _config(num_steps):
  config = lps_config.get_config('test')       # K = 2
  config.num_steps = num_steps
  config.log_interval, config.eval_interval, config.checkpoint_interval = 3, 4, 3
  return config


def _steps(workdir, stream):
  with open(os.path.join(workdir, f'{stream}.csv')) as f:
    return [int(row['step']) for row in csv.DictReader(f)]


def _assert_close(a, b):
  """Same updates, possibly grouped into other calls: XLA may round differently (measured:
  <= 6e-7 relative on a few leaves), so this is equality up to float rounding."""
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), a, b)


def test_any_num_steps_runs_and_resumes(tmp_path):
  ref, run = str(tmp_path / 'ref'), str(tmp_path / 'run')
  agent, _, _ = main.train_and_evaluate(_config(5), run)           # calls 2, 2, 1
  assert int(agent.flow.step) == 5
  assert _steps(run, 'train') == [4, 5]         # log 3 falls due in (2, 4]; 5 is the end
  assert _steps(run, 'eval') == [4, 5]
  assert sorted(os.listdir(os.path.join(run, 'checkpoints')), key=int) == ['4', '5']
  # The same 5 updates one at a time: the shorter call changes nothing.
  config = _config(5)
  task = tasks.make_task(config)
  data = dataset_lib.to_device(task.transitions, 1)
  solo = agents.get_agent_class('lps').create(0, task.observation_dim, task.action_dim,
                                              config.agent)
  step_fn = engine.make_train_fn(1)
  for _ in range(5):
    solo, _ = step_fn(solo, data)
  _assert_close(jax.device_get(agent.params()), jax.device_get(solo.params()))
  # Resume 5 -> 9 (calls 2, 2) equals an uninterrupted 9 (calls 2, 2, 2, 2, 1). (Resuming at a
  # multiple of K keeps the grouping, and is bit-identical: tests/test_checkpoint.py.)
  main.train_and_evaluate(_config(9), run, resume=True)
  main.train_and_evaluate(_config(9), ref)
  got, step = checkpoint.load_state_dict(os.path.join(run, 'checkpoints'))
  expected, _ = checkpoint.load_state_dict(os.path.join(ref, 'checkpoints'))
  assert step == 9
  _assert_close(got, expected)
  assert _steps(ref, 'train') == [4, 6, 9]      # boundaries 2 4 6 8 9: 3 -> 4, 6, 9
  assert _steps(run, 'train') == [4, 5, 7, 9]


def test_progress_bar_shows_the_agents_own_losses():
  config = lawr_config.get_config('test')
  task = tasks.make_task(config)
  agent = agents.get_agent_class('lawr').create(0, task.observation_dim, task.action_dim,
                                                config.agent)
  _, metrics = engine.make_train_fn(1)(agent, dataset_lib.to_device(task.transitions, 1))
  metrics = {k: float(v) for k, v in metrics.items()}
  metrics['steps_per_second'] = 123.0
  postfix = main.progress_postfix(metrics)
  assert 'critic' not in postfix                 # L-AWR has no critic/loss ...
  assert {'flow', 'critic/q_loss', 'critic/v_loss', 'planner'} <= set(postfix)   # ... but these
  assert postfix['sps'] == '123' and 'nan' not in postfix.values()
  assert main.progress_postfix({'steps_per_second': 1.0, 'loss': 2.0}) == {'sps': '1',
                                                                           'loss': '2'}
