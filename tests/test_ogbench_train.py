"""A short LPS run on a generated cube-single dataset, evaluation in the OGBench env included."""
import csv
import os

import pytest

from lps_jax import config_lib
from lps_jax import main as main_lib
from lps_jax.data import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def cube_dataset_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp('ogbench')
  generate.generate_dataset('cube-single-play-v0', num_episodes=3, out_dir=str(out), seed=0,
                            workers=1, steps_per_episode=60, val_episodes=1, progress=False)
  return str(out)


def test_lps_trains_and_evaluates_on_generated_cube_single(cube_dataset_dir, tmp_path):
  config = config_lib.load_config_file(
      os.path.join(REPO, 'experiments/configs/lps.py') + ':ogbench_small')
  config.dataset_dir = cube_dataset_dir
  config.agent.batch_size = 16
  config.agent.flow_hidden_dims = config.agent.critic_hidden_dims = (16, 16)
  config.agent.actor_hidden_dims = (16,)
  config.agent.lr = 1e-3
  # 300 steps of the compiled 2-step scan (~150 calls): long enough to see the critic learn.
  config.num_steps, config.steps_per_call = 300, 2
  config.log_interval, config.eval_interval, config.eval_episodes = 50, 300, 1
  config.checkpoint_interval = 300
  assert config.agent.horizon == 5 and config.task == 'cube-single-play-singletask-task1-v0'
  _, train_metrics, eval_metrics = main_lib.train_and_evaluate(config, str(tmp_path / 'run'), seed=0)
  assert set(eval_metrics) >= {'success', 'return', 'episode_length'}
  assert 0 < eval_metrics['episode_length'] <= 200          # cube-single's time limit
  assert -200 <= eval_metrics['return'] <= 0                 # reward -1 per unsolved step
  rows = list(csv.DictReader(open(tmp_path / 'run' / 'train.csv')))
  assert [int(r['step']) for r in rows] == [50, 100, 150, 200, 250, 300]
  # A learning signal, not only ranges: the critic's TD error falls, and its value moves toward
  # the discounted sum of the -1 rewards (seeds 0 / 1 measured: loss 8.2 -> 1.6 / 5.3 -> 1.0,
  # mean Q -2.6 -> -8.6 / -3.5 -> -9.1).
  critic_loss = [float(r['critic/loss']) for r in rows]
  q_mean = [float(r['critic/q_mean']) for r in rows]
  assert critic_loss[-1] < 0.5 * critic_loss[0], critic_loss
  assert q_mean[-1] < q_mean[0] - 2.0, q_mean
