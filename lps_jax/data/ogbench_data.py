"""OGBench offline datasets -> lps_jax transition dicts (validated).

Output format (all float32 numpy arrays, N rows = transitions):
    observations [N, obs_dim], actions [N, act_dim] in [-1, 1], next_observations [N, obs_dim],
    rewards [N], masks [N] (0 = do not bootstrap), terminals [N] (1 on the last row of each stored episode).

The conversion is OGBench's own (`ogbench.utils.load_dataset`, non-compact path: next_observations are made by
shifting inside each episode and the last row of every episode is dropped) and the single-task reward relabelling is
OGBench's own (`ogbench.relabel_utils.relabel_dataset`, as in `ogbench.make_env_and_datasets`).

OGBench reward/mask convention (identical to what ogbench and FQL use): rewards[i] and masks[i] are computed from the
simulator state of observations[i] (s_i, via the qpos/button_states of row i):
rewards[i] = (#satisfied sub-goals in s_i) - (#sub-goals) and masks[i] = 0 iff s_i satisfies the whole task.
This matches the single-task envs themselves, which are registered with success_timing='pre': env.step(a) in state s
returns the reward/success of s (before the action) and terminates when s is a success.

CLI:  python -m lps_jax.data.ogbench_data --env=cube-single-play-singletask-task1-v0 --dataset_dir=~/.ogbench/data
"""

import argparse
import os
import sys
import warnings
import zipfile

import numpy as np

from lps_jax.data import dataset as dataset_lib

DEFAULT_DATASET_DIR = '~/.ogbench/data'
ACTION_TOL = 1e-4
BASE_KEYS = ('observations', 'actions', 'terminals')


class DatasetError(dataset_lib.DatasetError):
    """A missing or malformed dataset file. The message is one line and names the file."""

    def __init__(self, path, problem=None):
        self.path = str(path)
        self.problem = ' '.join(str(problem).split()) if problem is not None else ''  # Force a single line.
        super().__init__(f'{self.path}: {self.problem}' if self.problem else self.path)


# ----------------------------------------------------------------------------------------------------------------------
# Names.
# ----------------------------------------------------------------------------------------------------------------------


def parse_env_name(name):
    """Split an OGBench name exactly like `ogbench.make_env_and_datasets`.

    'cube-single-play-singletask-task1-v0' -> ('cube-single-singletask-task1-v0', 'cube-single-play-v0', True)
    'cube-single-play-v0'                  -> ('cube-single-v0', 'cube-single-play-v0', False)
    Returns (gym env id, dataset file stem, is_singletask).
    """
    splits = name.split('-')
    if 'singletask' in splits:
        pos = splits.index('singletask')
        env_name = '-'.join(splits[: pos - 1] + splits[pos:])
        dataset_name = '-'.join(splits[:pos] + splits[-1:])
        return env_name, dataset_name, True
    if len(splits) < 3:
        raise ValueError(f'unrecognised OGBench name {name!r}')
    return '-'.join(splits[:-2] + splits[-1:]), name, False


def dataset_paths(dataset_name, dataset_dir):
    d = os.path.expanduser(dataset_dir)
    return os.path.join(d, f'{dataset_name}.npz'), os.path.join(d, f'{dataset_name}-val.npz')


def _needs_button_states(env_name):
    return 'scene' in env_name or 'puzzle' in env_name


# ----------------------------------------------------------------------------------------------------------------------
# File loading + validation.
# ----------------------------------------------------------------------------------------------------------------------


def _read_headers(path):
    """{key: (shape, dtype)} of the arrays in an .npz, read from the .npy headers without decompressing the data."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith('.npy'):
                    continue
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                headers[name[: -len('.npy')]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DatasetError(path, f'not a readable .npz file ({type(e).__name__}: {e})') from None
    return headers


def _check_finite(path, key, arr):
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        kind = 'NaN' if np.isnan(arr[tuple(bad)]) else 'Inf'
        raise DatasetError(path, f"'{key}' contains {kind} values (first at index {tuple(int(b) for b in bad)})")


def validate_ogbench_file(path, required_keys=BASE_KEYS, obs_dim=None, act_dim=None):
    """Structural checks on an official-format .npz. Returns (headers, raw terminals)."""
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        d = os.path.dirname(path) or '.'
        where = 'dataset file not found' if os.path.isdir(d) else f'dataset directory {d} does not exist'
        stem = os.path.basename(path)[: -len('.npz')].removesuffix('-val')
        raise DatasetError(
            path,
            f'{where}; download it (--download) or create it with '
            f'`python -m lps_jax.data.generate --env={stem} --episodes=1000 --out={d}`',
        )
    headers = _read_headers(path)
    missing = [k for k in required_keys if k not in headers]
    if missing:
        raise DatasetError(path, f'missing keys {missing} (found {sorted(headers)})')

    n = headers['observations'][0][0] if len(headers['observations'][0]) else None
    expected_ndim = {'observations': 2, 'actions': 2, 'terminals': 1, 'qpos': 2, 'qvel': 2, 'button_states': 2}
    for k in required_keys:
        shape = headers[k][0]
        if len(shape) != expected_ndim.get(k, len(shape)):
            raise DatasetError(path, f"'{k}' has shape {shape}, expected {expected_ndim[k]} dimensions")
    lengths = {k: headers[k][0][0] for k in required_keys}
    if len(set(lengths.values())) != 1:
        raise DatasetError(path, f'mismatched lengths {lengths}')
    if n < 2:
        raise DatasetError(path, f'only {n} rows; need at least one full transition')
    if obs_dim is not None and headers['observations'][0][1] != obs_dim:
        raise DatasetError(
            path, f"observation size {headers['observations'][0][1]} does not match the environment's {obs_dim}"
        )
    if act_dim is not None and headers['actions'][0][1] != act_dim:
        raise DatasetError(path, f"action size {headers['actions'][0][1]} does not match the environment's {act_dim}")

    with np.load(path) as f:
        terminals = np.asarray(f['terminals'])
    if not np.isin(terminals, (0, 1)).all():
        raise DatasetError(path, "'terminals' must contain only 0/1 values")
    if not terminals[-1]:
        raise DatasetError(path, "the last row is not an episode end (terminals[-1] == 0): file truncated?")
    return headers, terminals


def load_ogbench_file(path, add_info=False, required_info=(), obs_dim=None, act_dim=None):
    """Load and validate one official OGBench .npz; convert like `ogbench.utils.load_dataset(compact_dataset=False)`.

    Returns float32 'observations', 'actions', 'next_observations', 'terminals' (1 on the last transition of each
    episode) and, with add_info, the raw 'qpos', 'qvel', 'button_states' rows aligned with 'observations'.
    Raises DatasetError (one line, names the file) on any problem.
    """
    from ogbench.utils import load_dataset

    path = os.path.expanduser(str(path))
    required = BASE_KEYS + (('qpos', 'qvel') + tuple(required_info) if add_info else ())
    validate_ogbench_file(path, required_keys=required, obs_dim=obs_dim, act_dim=act_dim)
    try:
        ds = load_dataset(path, ob_dtype=np.float32, action_dtype=np.float32, compact_dataset=False, add_info=add_info)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a malformed file
        raise DatasetError(path, f'could not be read by ogbench.utils.load_dataset ({type(e).__name__}: {e})') from None

    for k in ('observations', 'next_observations', 'actions', 'qpos', 'qvel'):
        if k in ds:
            _check_finite(path, k, ds[k])
    amax = np.abs(ds['actions']).max()
    if amax > 1.0 + ACTION_TOL:
        row = int(np.argmax(np.abs(ds['actions']).max(axis=1)))
        raise DatasetError(path, f'actions outside [-1, 1]: max |a| = {amax:.4g} (transition {row})')
    ds['actions'] = np.clip(ds['actions'], -1.0, 1.0)
    ds['terminals'] = ds['terminals'].astype(np.float32)
    return ds


def load_ogbench_dataset(env_name, dataset_dir=DEFAULT_DATASET_DIR, split='train', sparse=False, download=False,
                         env=None):
    """Load a single-task OGBench dataset, e.g. 'cube-single-play-singletask-task1-v0'.

    Reads `<dataset_dir>/<dataset>.npz` (split='train') or `<dataset>-val.npz` (split='val'), validates it, and
    relabels rewards/masks with `ogbench.relabel_utils.relabel_dataset` for the fixed task.
    sparse=True: rewards := -1 if r != 0 else 0 (FQL convention for scene/puzzle).
    download=True: fetch missing files with `ogbench.download_datasets` (network).
    Returns (transitions, info); transitions holds only float32 arrays with the framework keys.
    """
    import gymnasium

    import ogbench  # noqa: F401  (registers envs)
    from ogbench.relabel_utils import relabel_dataset

    if split not in ('train', 'val'):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    gym_name, dataset_name, singletask = parse_env_name(env_name)
    if not singletask:
        raise ValueError(
            f'{env_name!r} is not a single-task name (rewards are defined only for e.g. '
            "'cube-single-play-singletask-task1-v0'); use load_ogbench_file for goal-conditioned data"
        )
    train_path, val_path = dataset_paths(dataset_name, dataset_dir)
    path = train_path if split == 'train' else val_path
    if download and not os.path.exists(path):
        from ogbench.utils import download_datasets

        download_datasets([dataset_name], os.path.expanduser(dataset_dir))
    if not os.path.exists(path):
        validate_ogbench_file(path)  # Raises the 'not found' DatasetError before the (slow) env construction.

    if env is None:
        env = gymnasium.make(gym_name)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    required_info = ('button_states',) if _needs_button_states(gym_name) else ()
    ds = load_ogbench_file(path, add_info=True, required_info=required_info, obs_dim=obs_dim, act_dim=act_dim)

    relabel_dataset(gym_name, env, ds)
    rewards = ds['rewards'].astype(np.float32)
    if sparse:
        rewards = ((rewards != 0.0) * -1.0).astype(np.float32)

    transitions = {
        'observations': ds['observations'],
        'actions': ds['actions'],
        'next_observations': ds['next_observations'],
        'rewards': rewards,
        'masks': ds['masks'].astype(np.float32),
        'terminals': ds['terminals'],
    }
    transitions = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in transitions.items()}
    n_eps = int(transitions['terminals'].sum())
    info = dict(
        env_name=env_name,
        gym_env_name=gym_name,
        dataset_name=dataset_name,
        path=path,
        split=split,
        obs_dim=obs_dim,
        act_dim=act_dim,
        num_transitions=len(rewards),
        num_episodes=n_eps,
        mean_episode_length=len(rewards) / max(n_eps, 1),
        eval_max_episode_steps=getattr(env.spec, 'max_episode_steps', None),
        sparse=sparse,
        success_fraction=float((transitions['masks'] == 0).mean()),
    )
    return transitions, info


# ----------------------------------------------------------------------------------------------------------------------
# CLI.
# ----------------------------------------------------------------------------------------------------------------------


def main(argv=None):
    p = argparse.ArgumentParser(description='Validate an OGBench dataset and print a summary.')
    p.add_argument('--env', required=True, help="e.g. cube-single-play-singletask-task1-v0 (or a dataset name "
                                                 "like cube-single-play-v0 for a structure-only check)")
    p.add_argument('--dataset_dir', default=DEFAULT_DATASET_DIR)
    p.add_argument('--split', default='train', choices=['train', 'val'])
    p.add_argument('--sparse', action='store_true')
    p.add_argument('--download', action='store_true')
    args = p.parse_args(argv)
    warnings.simplefilter('ignore')  # Keep stderr to the single error line (gymnasium/glfw warnings otherwise).
    try:
        gym_name, dataset_name, singletask = parse_env_name(args.env)
        if singletask:
            tr, info = load_ogbench_dataset(args.env, args.dataset_dir, split=args.split, sparse=args.sparse,
                                            download=args.download)
        else:
            import gymnasium

            import ogbench  # noqa: F401

            env = gymnasium.make(gym_name)
            obs_dim = int(np.prod(env.observation_space.shape))
            act_dim = int(np.prod(env.action_space.shape))
            train_path, val_path = dataset_paths(dataset_name, args.dataset_dir)
            path = train_path if args.split == 'train' else val_path
            if args.download and not os.path.exists(path):
                from ogbench.utils import download_datasets

                download_datasets([dataset_name], os.path.expanduser(args.dataset_dir))
            tr = load_ogbench_file(path, obs_dim=obs_dim, act_dim=act_dim)
            info = dict(path=path, obs_dim=obs_dim, act_dim=act_dim, num_transitions=len(tr['actions']),
                        num_episodes=int(tr['terminals'].sum()))
    except DatasetError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f"OK {info['path']}")
    for k, v in info.items():
        if k != 'path':
            print(f'  {k}: {v}')
    for k, v in tr.items():
        line = f'  {k:18s} {str(v.shape):14s} {v.dtype}'
        if k in ('rewards', 'masks'):
            line += f'  min {v.min():.3g} mean {v.mean():.4g} max {v.max():.3g}'
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
