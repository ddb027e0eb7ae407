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
  config.num_steps, config.steps_per_call = 4, 2
  config.log_interval, config.eval_interval, config.eval_episodes = 2, 4, 1
  config.checkpoint_interval = 4
  assert config.agent.horizon == 5 and config.task == 'cube-single-play-singletask-task1-v0'
  _, train_metrics, eval_metrics = main_lib.train_and_evaluate(config, str(tmp_path / 'run'), seed=0)
  assert set(eval_metrics) >= {'success', 'return', 'episode_length'}
  assert 0 < eval_metrics['episode_length'] <= 200          # cube-single's time limit
  assert -200 <= eval_metrics['return'] <= 0                 # reward -1 per unsolved step
  rows = list(csv.DictReader(open(tmp_path / 'run' / 'train.csv')))
  assert [int(r['step']) for r in rows] == [2, 4]
