"""--config.task=minari:<id> on a tiny Minari dataset built inside the test (nothing downloaded)."""
import os
import shutil
import sys

import numpy as np
import pytest

minari = pytest.importorskip('minari')
import gymnasium  # pylint: disable=g-import-not-at-top

from experiments.configs import lps as lps_config
from lps_jax import config_lib, main, tasks
from lps_jax.data import dataset as dataset_lib
from lps_jax.data import minari_task

ENV_ID = 'InvertedPendulum-v5'       # Box actions in [-3, 3]: exercises the rescaling
DATASET_ID = 'test/pendulum/random-v0'
NO_ENV_ID = 'test/pendulum/buffers-v0'
STEPS = 300


@pytest.fixture(scope='module')
def minari_root(tmp_path_factory):
  """MINARI_DATASETS_PATH -> a tmp root holding two datasets: one collected with
  DataCollector in InvertedPendulum (episodes end by termination and by a 20-step time limit),
  one created from plain buffers with no env recorded."""
  root = str(tmp_path_factory.mktemp('minari'))
  patch = pytest.MonkeyPatch()
  patch.setenv('MINARI_DATASETS_PATH', root)
  env = minari.DataCollector(gymnasium.make(ENV_ID, max_episode_steps=20))
  env.reset(seed=0)
  env.action_space.seed(0)
  for _ in range(STEPS):
    # Small actions keep the pole up for a while, so some episodes are truncated at 20.
    _, _, terminated, truncated, _ = env.step(0.1 * env.action_space.sample())
    if terminated or truncated:
      env.reset()
  env.create_dataset(DATASET_ID, algorithm_name='random', author='test',
                     author_email='test@example.com', code_permalink='none',
                     description='tiny test dataset')
  env.close()
  rng = np.random.default_rng(0)
  buffers = []
  for length in (7, 9):
    buffers.append({'observations': rng.standard_normal((length + 1, 4)).astype(np.float32),
                    'actions': rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                    'rewards': rng.standard_normal(length), 'terminations':
                    np.eye(length, dtype=bool)[-1], 'truncations': np.zeros(length, bool)})
  minari.create_dataset_from_buffers(
      NO_ENV_ID, [minari.data_collector.EpisodeBuffer(**b) for b in buffers],
      action_space=gymnasium.spaces.Box(-1, 1, (2,)),
      observation_space=gymnasium.spaces.Box(-np.inf, np.inf, (4,)), algorithm_name='none',
      author='test',
      author_email='test@example.com', code_permalink='none', description='no env')
  yield root
  patch.undo()


def run_config(task_name):
  config = lps_config.get_config('test')
  config.task = task_name
  config.num_steps, config.steps_per_call = 2, 2
  config.log_interval = config.eval_interval = config.checkpoint_interval = 2
  config.eval_episodes = 1
  return config


def test_episodes_map_to_transitions_row_by_row(minari_root):
  del minari_root
  task = tasks.make_task(run_config(f'minari:{DATASET_ID}'))
  episodes = list(minari.load_dataset(DATASET_ID).iterate_episodes())
  got = task.transitions
  assert task.observation_dim == 4 and task.action_dim == 1
  assert len(got['rewards']) == sum(len(e.rewards) for e in episodes) == STEPS
  seen_termination = seen_truncation = False
  row = 0
  for episode in episodes:
    steps = len(episode.rewards)
    for t in range(steps):
      np.testing.assert_allclose(got['observations'][row], episode.observations[t], rtol=1e-6)
      np.testing.assert_allclose(got['next_observations'][row], episode.observations[t + 1],
                                 rtol=1e-6)
      np.testing.assert_allclose(got['actions'][row], episode.actions[t] / 3.0, rtol=1e-5,
                                 atol=1e-7)             # [-3, 3] -> [-1, 1]
      assert got['rewards'][row] == np.float32(episode.rewards[t])
      assert got['masks'][row] == (0.0 if episode.terminations[t] else 1.0)
      assert got['terminals'][row] == (1.0 if t == steps - 1 else 0.0)
      row += 1
    seen_termination |= bool(episode.terminations[-1])
    seen_truncation |= bool(episode.truncations[-1]) and not episode.terminations[-1]
  assert seen_termination and seen_truncation       # both kinds of episode end were mapped


def test_trains_two_steps_and_evaluates_one_episode(minari_root, tmp_path):
  del minari_root
  _, train_metrics, eval_metrics = main.train_and_evaluate(
      run_config(f'minari:{DATASET_ID}'), str(tmp_path / 'run'), seed=0)
  assert np.isfinite(train_metrics['critic/loss'])
  assert eval_metrics['num_episodes'] == 1
  # The recorded env is the one evaluated in: its 20-step limit, reward 1 per step alive
  # (0 on the step that drops the pole).
  assert 1 <= eval_metrics['episode_length'] <= 20
  assert eval_metrics['return'] in (eval_metrics['episode_length'],
                                    eval_metrics['episode_length'] - 1)


def test_dataset_without_env_trains_with_no_evaluation(minari_root, tmp_path):
  del minari_root
  task = tasks.make_task(run_config(f'minari:{NO_ENV_ID}'))
  assert task.evaluate is None and not task.has_evaluation
  np.testing.assert_array_equal(np.flatnonzero(task.transitions['terminals']), [6, 15])
  np.testing.assert_array_equal(np.flatnonzero(task.transitions['masks'] == 0), [6, 15])
  _, _, eval_metrics = main.train_and_evaluate(run_config(f'minari:{NO_ENV_ID}'),
                                               str(tmp_path / 'run'), seed=0)
  assert eval_metrics == {} and not os.path.exists(tmp_path / 'run' / 'eval.csv')
  assert os.path.exists(tmp_path / 'run' / 'train.csv')


def test_actions_outside_bounds_are_rejected_in_one_line():
  box = gymnasium.spaces.Box(-np.inf, np.inf, (2,))
  with pytest.raises(dataset_lib.DatasetError, match=r'outside \[-1, 1\] \(max \|a\| = 2.5\) '
                     r'and the action space .* has no finite bounds'):
    minari_task.action_maps(box, np.array([[0.0, 2.5]]), 'minari:x')
  with pytest.raises(dataset_lib.DatasetError, match='outside the action space bounds'):
    minari_task.action_maps(gymnasium.spaces.Box(-3, 3, (1,)), np.array([[0.0], [3.5]]), 'x')
  to_unit, from_unit = minari_task.action_maps(gymnasium.spaces.Box(-3, 1, (1,)),
                                               np.array([[-3.0], [1.0]]), 'x')
  np.testing.assert_allclose(to_unit(np.array([[-3.0], [-1.0], [1.0]])), [[-1.0], [0.0], [1.0]])
  np.testing.assert_allclose(from_unit(np.array([[-1.0], [0.0], [1.0]])), [[-3.0], [-1.0], [1.0]])


def test_missing_dataset_and_missing_package_are_config_errors(minari_root, monkeypatch):
  with pytest.raises(config_lib.ConfigError, match=f"Minari dataset 'nope/none-v0' not found "
                     f'under {minari_root}'):
    tasks.check_config(run_config('minari:nope/none-v0'))
  tasks.check_config(run_config(f'minari:{DATASET_ID}'))
  monkeypatch.setitem(sys.modules, 'minari', None)          # import minari -> ImportError
  with pytest.raises(config_lib.ConfigError,
                     match=r"needs the minari package: pip install -e '\.\[minari\]'"):
    tasks.check_config(run_config(f'minari:{DATASET_ID}'))


def test_corrupted_dataset_file_is_a_one_line_dataset_error(minari_root, tmp_path,
                                                            monkeypatch):
  """A copy of the no-env dataset whose hdf5 file is cut in half (h5py's OSError today)."""
  shutil.copytree(os.path.join(minari_root, NO_ENV_ID), tmp_path / NO_ENV_ID)
  data_file = tmp_path / NO_ENV_ID / 'data' / 'main_data.hdf5'
  data = data_file.read_bytes()
  data_file.write_bytes(data[:len(data) // 2])
  monkeypatch.setenv('MINARI_DATASETS_PATH', str(tmp_path))
  config = run_config(f'minari:{NO_ENV_ID}')
  tasks.check_config(config)
  with pytest.raises(dataset_lib.DatasetError, match=r'cannot be read \(OSError: .*truncated '
                     r'file.*\); is .*/data corrupted\?') as error:
    tasks.make_task(config)
  assert '\n' not in str(error.value)
