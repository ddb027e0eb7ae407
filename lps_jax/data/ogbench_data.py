"""OGBench offline datasets -> lps_jax transition dicts (validated).

Output format (all float32 numpy arrays, N rows = transitions):
  observations [N, obs_dim], actions [N, act_dim] in [-1, 1], next_observations [N, obs_dim],
  rewards [N], masks [N] (0 = do not bootstrap), terminals [N] (1 on the last row of each
  stored episode).

The conversion is OGBench's own (`ogbench.utils.load_dataset`, non-compact path:
next_observations are made by shifting inside each episode and the last row of every episode
is dropped) and the single-task reward relabelling is OGBench's own
(`ogbench.relabel_utils.relabel_dataset`, as in `ogbench.make_env_and_datasets`).

OGBench reward/mask convention (identical to what ogbench and FQL use): rewards[i] and masks[i]
are computed from the simulator state of observations[i] (s_i, via the qpos/button_states of
row i): rewards[i] = (#satisfied sub-goals in s_i) - (#sub-goals) and masks[i] = 0 iff s_i
satisfies the whole task. This matches the single-task envs themselves, which are registered
with success_timing='pre': env.step(a) in state s returns the reward/success of s (before the
action) and terminates when s is a success.

CLI (validate a file and print a summary; bad input: one line on stderr, exit 2):
  python -m lps_jax.data.ogbench_data --env=cube-single-play-singletask-task1-v0 \
      --dataset_dir=~/.ogbench/data
"""
import os
import sys
import zipfile

from absl import app, flags
from absl import logging as absl_logging
import numpy as np

from lps_jax.data import dataset as dataset_lib
from lps_jax.envs import quiet

DEFAULT_DATASET_DIR = '~/.ogbench/data'
ACTION_TOL = 1e-4
BASE_KEYS = ('observations', 'actions', 'terminals')
EXPECTED_NDIM = {'observations': 2, 'actions': 2, 'terminals': 1, 'qpos': 2, 'qvel': 2,
                 'button_states': 2}
EXIT_USAGE = 2


class DatasetError(dataset_lib.DatasetError):
  """A missing or malformed dataset file. The message is one line and names the file."""

  def __init__(self, path, problem=None):
    self.path = str(path)
    self.problem = ' '.join(str(problem).split()) if problem is not None else ''  # one line
    super().__init__(f'{self.path}: {self.problem}' if self.problem else self.path)


# ---------------------------------------------------------------------------------- names
def parse_env_name(name):
  """Split an OGBench name exactly like `ogbench.make_env_and_datasets`.

  'cube-single-play-singletask-task1-v0' -> ('cube-single-singletask-task1-v0',
                                             'cube-single-play-v0', True)
  'cube-single-play-v0'                  -> ('cube-single-v0', 'cube-single-play-v0', False)
  Returns (gym env id, dataset file stem, is_singletask).
  """
  splits = name.split('-')
  if 'singletask' in splits:
    pos = splits.index('singletask')
    env_name = '-'.join(splits[:pos - 1] + splits[pos:])
    dataset_name = '-'.join(splits[:pos] + splits[-1:])
    return env_name, dataset_name, True
  if len(splits) < 3:
    raise ValueError(f'unrecognised OGBench name {name!r}')
  return '-'.join(splits[:-2] + splits[-1:]), name, False


def dataset_paths(dataset_name, dataset_dir):
  """(train .npz path, validation .npz path) of `dataset_name` in `dataset_dir`."""
  directory = os.path.expanduser(dataset_dir)
  return (os.path.join(directory, f'{dataset_name}.npz'),
          os.path.join(directory, f'{dataset_name}-val.npz'))


def _needs_button_states(env_name):
  return 'scene' in env_name or 'puzzle' in env_name


# ---------------------------------------------------------------------------------- files
def read_npz_headers(path):
  """{key: (shape, dtype)} of the arrays in an .npz, from the .npy headers (no decompression)."""
  headers = {}
  try:
    with zipfile.ZipFile(path) as archive:
      for name in archive.namelist():
        if not name.endswith('.npy'):
          continue
        with archive.open(name) as f:
          version = np.lib.format.read_magic(f)
          if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
          else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        headers[name[:-len('.npy')]] = (tuple(shape), dtype)
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise DatasetError(path, f'not a readable .npz file ({type(e).__name__}: {e})') from None
  return headers


def _check_finite(path, key, array):
  if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
    bad = np.argwhere(~np.isfinite(array))[0]
    kind = 'NaN' if np.isnan(array[tuple(bad)]) else 'Inf'
    raise DatasetError(path, f"'{key}' contains {kind} values (first at index "
                             f'{tuple(int(b) for b in bad)})')


def _missing_file_error(path):
  directory = os.path.dirname(path) or '.'
  where = ('dataset file not found' if os.path.isdir(directory)
           else f'dataset directory {directory} does not exist')
  stem = os.path.basename(path)[:-len('.npz')].removesuffix('-val')
  return DatasetError(path, f'{where}; download it (--download) or create it with '
                            f'`python -m lps_jax.data.generate --env={stem} --episodes=1000 '
                            f'--out={directory}`')


def validate_ogbench_file(path, required_keys=BASE_KEYS, obs_dim=None, act_dim=None):
  """Structural checks on an official-format .npz. Returns (headers, raw terminals)."""
  path = os.path.expanduser(str(path))
  if not os.path.exists(path):
    raise _missing_file_error(path)
  headers = read_npz_headers(path)
  missing = [k for k in required_keys if k not in headers]
  if missing:
    raise DatasetError(path, f'missing keys {missing} (found {sorted(headers)})')
  n = headers['observations'][0][0] if len(headers['observations'][0]) else None
  for key in required_keys:
    shape = headers[key][0]
    if len(shape) != EXPECTED_NDIM.get(key, len(shape)):
      raise DatasetError(path, f"'{key}' has shape {shape}, expected {EXPECTED_NDIM[key]} "
                               'dimensions')
  lengths = {k: headers[k][0][0] for k in required_keys}
  if len(set(lengths.values())) != 1:
    raise DatasetError(path, f'mismatched lengths {lengths}')
  if n < 2:
    raise DatasetError(path, f'only {n} rows; need at least one full transition')
  if obs_dim is not None and headers['observations'][0][1] != obs_dim:
    raise DatasetError(path, f"observation size {headers['observations'][0][1]} does not "
                             f"match the environment's {obs_dim}")
  if act_dim is not None and headers['actions'][0][1] != act_dim:
    raise DatasetError(path, f"action size {headers['actions'][0][1]} does not match the "
                             f"environment's {act_dim}")
  with np.load(path) as f:
    terminals = np.asarray(f['terminals'])
  if not np.isin(terminals, (0, 1)).all():
    raise DatasetError(path, "'terminals' must contain only 0/1 values")
  if not terminals[-1]:
    raise DatasetError(path, 'the last row is not an episode end (terminals[-1] == 0): file '
                             'truncated?')
  return headers, terminals


def load_ogbench_file(path, add_info=False, required_info=(), obs_dim=None, act_dim=None):
  """Load and validate one official OGBench .npz, converted like
  `ogbench.utils.load_dataset(compact_dataset=False)`.

  Returns float32 'observations', 'actions', 'next_observations', 'terminals' (1 on the last
  transition of each episode) and, with add_info, the raw 'qpos', 'qvel', 'button_states' rows
  aligned with 'observations'. Raises DatasetError (one line, names the file) on any problem.
  """
  from ogbench.utils import load_dataset  # pylint: disable=g-import-not-at-top
  path = os.path.expanduser(str(path))
  required = BASE_KEYS + (('qpos', 'qvel') + tuple(required_info) if add_info else ())
  validate_ogbench_file(path, required_keys=required, obs_dim=obs_dim, act_dim=act_dim)
  try:
    data = load_dataset(path, ob_dtype=np.float32, action_dtype=np.float32,
                        compact_dataset=False, add_info=add_info)
  except Exception as e:  # pylint: disable=broad-except  (any decoding failure: a bad file)
    raise DatasetError(path, f'could not be read by ogbench.utils.load_dataset '
                             f'({type(e).__name__}: {e})') from None
  for key in ('observations', 'next_observations', 'actions', 'qpos', 'qvel'):
    if key in data:
      _check_finite(path, key, data[key])
  max_abs = np.abs(data['actions']).max()
  if max_abs > 1.0 + ACTION_TOL:
    row = int(np.argmax(np.abs(data['actions']).max(axis=1)))
    raise DatasetError(path, f'actions outside [-1, 1]: max |a| = {max_abs:.4g} '
                             f'(transition {row})')
  data['actions'] = np.clip(data['actions'], -1.0, 1.0)
  data['terminals'] = data['terminals'].astype(np.float32)
  return data


def _make_gym_env(gym_name):
  quiet.silence_known_env_warnings()
  import gymnasium  # pylint: disable=g-import-not-at-top
  import ogbench  # pylint: disable=g-import-not-at-top,unused-import  (registers the envs)
  return gymnasium.make(gym_name)


def _download(dataset_name, dataset_dir):
  from ogbench.utils import download_datasets  # pylint: disable=g-import-not-at-top
  download_datasets([dataset_name], os.path.expanduser(dataset_dir))


def load_ogbench_dataset(env_name, dataset_dir=DEFAULT_DATASET_DIR, split='train', sparse=False,
                         download=False, env=None):
  """Load a single-task OGBench dataset, e.g. 'cube-single-play-singletask-task1-v0'.

  Reads `<dataset_dir>/<dataset>.npz` (split='train') or `<dataset>-val.npz` (split='val'),
  validates it, and relabels rewards/masks with `ogbench.relabel_utils.relabel_dataset` for the
  fixed task. sparse=True: rewards := -1 if r != 0 else 0 (FQL convention for scene/puzzle).
  download=True: fetch missing files with `ogbench.download_datasets` (network).
  Returns (transitions, info); transitions holds only float32 arrays with the framework keys.
  """
  if split not in ('train', 'val'):
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")
  gym_name, dataset_name, singletask = parse_env_name(env_name)
  if not singletask:
    raise ValueError(f'{env_name!r} is not a single-task name (rewards are defined only for '
                     "e.g. 'cube-single-play-singletask-task1-v0'); use load_ogbench_file for "
                     'goal-conditioned data')
  train_path, val_path = dataset_paths(dataset_name, dataset_dir)
  path = train_path if split == 'train' else val_path
  if download and not os.path.exists(path):
    _download(dataset_name, dataset_dir)
  if not os.path.exists(path):
    raise _missing_file_error(path)       # before the (slow) env construction
  if env is None:
    env = _make_gym_env(gym_name)
  from ogbench.relabel_utils import relabel_dataset  # pylint: disable=g-import-not-at-top
  obs_dim = int(np.prod(env.observation_space.shape))
  act_dim = int(np.prod(env.action_space.shape))
  required_info = ('button_states',) if _needs_button_states(gym_name) else ()
  data = load_ogbench_file(path, add_info=True, required_info=required_info, obs_dim=obs_dim,
                           act_dim=act_dim)
  relabel_dataset(gym_name, env, data)
  rewards = data['rewards'].astype(np.float32)
  if sparse:
    rewards = ((rewards != 0.0) * -1.0).astype(np.float32)
  transitions = {
      'observations': data['observations'],
      'actions': data['actions'],
      'next_observations': data['next_observations'],
      'rewards': rewards,
      'masks': data['masks'].astype(np.float32),
      'terminals': data['terminals'],
  }
  transitions = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in transitions.items()}
  num_episodes = int(transitions['terminals'].sum())
  info = dict(
      env_name=env_name,
      gym_env_name=gym_name,
      dataset_name=dataset_name,
      path=path,
      split=split,
      obs_dim=obs_dim,
      act_dim=act_dim,
      num_transitions=len(rewards),
      num_episodes=num_episodes,
      mean_episode_length=len(rewards) / max(num_episodes, 1),
      eval_max_episode_steps=getattr(env.spec, 'max_episode_steps', None),
      sparse=sparse,
      success_fraction=float((transitions['masks'] == 0).mean()),
  )
  return transitions, info


def load_structure_only(env_name, dataset_dir=DEFAULT_DATASET_DIR, split='train',
                        download=False):
  """A goal-conditioned (not single-task) dataset name: structural checks only.
  Returns (arrays, info)."""
  gym_name, dataset_name, _ = parse_env_name(env_name)
  env = _make_gym_env(gym_name)
  obs_dim = int(np.prod(env.observation_space.shape))
  act_dim = int(np.prod(env.action_space.shape))
  train_path, val_path = dataset_paths(dataset_name, dataset_dir)
  path = train_path if split == 'train' else val_path
  if download and not os.path.exists(path):
    _download(dataset_name, dataset_dir)
  arrays = load_ogbench_file(path, obs_dim=obs_dim, act_dim=act_dim)
  info = dict(path=path, obs_dim=obs_dim, act_dim=act_dim,
              num_transitions=len(arrays['actions']),
              num_episodes=int(arrays['terminals'].sum()))
  return arrays, info


# ---------------------------------------------------------------------------------- CLI
FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string('env', None, 'e.g. cube-single-play-singletask-task1-v0 (or a dataset '
                      'name like cube-single-play-v0 for a structure-only check).')
  flags.DEFINE_string('dataset_dir', DEFAULT_DATASET_DIR, 'Folder holding the .npz files.')
  flags.DEFINE_enum('split', 'train', ['train', 'val'], 'Which file to read.')
  flags.DEFINE_bool('sparse', False, 'Sparse rewards: -1 if r != 0 else 0.')
  flags.DEFINE_bool('download', False, 'Fetch missing official files (network).')


def _fail(message):
  print(f'error: {" ".join(str(message).split())}', file=sys.stderr)
  sys.exit(EXIT_USAGE)


def _parse_flags(argv):
  """absl flag parsing with every error as one line on stderr and exit 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(e)


def summary_lines(arrays, info):
  """The CLI's report: OK <path>, the info, and one line per array (shape, dtype, ranges)."""
  lines = [f"OK {info['path']}"]
  lines += [f'  {k}: {v}' for k, v in info.items() if k != 'path']
  for key, value in arrays.items():
    line = f'  {key:18s} {str(value.shape):14s} {value.dtype}'
    if key in ('rewards', 'masks'):
      line += f'  min {value.min():.3g} mean {value.mean():.4g} max {value.max():.3g}'
    lines.append(line)
  return lines


def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)   # stderr holds only a real error
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.env:
    _fail('--env is required, e.g. --env=cube-single-play-singletask-task1-v0')
  try:
    _, _, singletask = parse_env_name(FLAGS.env)
    if singletask:
      arrays, info = load_ogbench_dataset(FLAGS.env, FLAGS.dataset_dir, split=FLAGS.split,
                                          sparse=FLAGS.sparse, download=FLAGS.download)
    else:
      arrays, info = load_structure_only(FLAGS.env, FLAGS.dataset_dir, split=FLAGS.split,
                                         download=FLAGS.download)
  except (DatasetError, ValueError) as e:
    _fail(e)
  print('\n'.join(summary_lines(arrays, info)))


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=_parse_flags)
