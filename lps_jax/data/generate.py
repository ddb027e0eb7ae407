"""Generate OGBench-format offline datasets with OGBench's own scripted oracles.

Reproduces the logic of OGBench's published data generation scripts
(`data_gen_scripts/generate_manipspace.py` and `generate_locomaze.py`, which are not part of the
pip package):

* manipulation (`cube-*`, `scene`, `puzzle-*`): env made with
  `gymnasium.make(name, terminate_at_goal=False, mode='data_collection', max_episode_steps=...)`;
  `play` = non-Markovian plan oracles (`ogbench.manipspace.oracles.plan`, smoothed noise 0.1,
  smoothing 0.5); `noisy` = Markovian oracles (`ogbench.manipspace.oracles.markov`, min_norm 0.4)
  plus per-episode Gaussian action noise with scale xi ~ U(0, 0.1) and random actions with
  probability 0.1 (cube, scene) / 0.2 (puzzle). When the oracle finishes its sub-task a new target
  is set with `env.unwrapped.set_new_target(p_stack=...)`.
* pointmaze (`pointmaze-*-navigate-v0`, `pointmaze-*-stitch-v0`): BFS waypoint follower, action =
  unit direction to the next BFS subgoal cell + N(0, 0.5), clipped to [-1, 1]; `navigate`
  resamples a goal whenever it is reached.

Output: `<out>/<dataset>.npz` and `<out>/<dataset>-val.npz` with the official keys and dtypes
(observations/actions/qpos/qvel float32, terminals bool, button_states int64 for scene/puzzle).
`terminals` is True on the last step of every episode (the episode is cut by the time limit).

Determinism: every episode `k` gets its own seed derived from (`--seed`, k); both numpy's global
RNG (used by the OGBench oracles) and the env's RNG are re-seeded at the start of each episode,
and MuJoCo state is fully reset by `env.reset`, so the arrays do not depend on `--workers`.

Speed (docs/data_generation.md): cube envs step through `lean_cube_step`, OGBench's own calls
without the work no stored row reads (bit-identical arrays; --nolean: env.step). The val
episodes are collected first; --time_budget_s=S stops after S seconds and keeps the first train
episodes that finished; --nocompress writes plain .npz.

Bad input (flags, an unknown env id, an --out that is a file, existing outputs without
--overwrite) is one line on stderr and exit code 2, checked before any episode is generated; a
worker that fails ends the whole run at once with one line (exit 1).

Usage:
  python -m lps_jax.data.generate --env=cube-single-play-v0 --episodes=1000 \
      --out=~/.ogbench/data --workers=2
  python -m lps_jax.data.generate --env=cube-single-play-v0 --episodes=1000 --val_episodes=1 \
      --workers=16 --time_budget_s=240 --nocompress --out=/tmp/data    # a time-boxed GPU run
"""
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
import warnings

from absl import flags
import mujoco
import numpy as np

from lps_jax import cli, rundir
from lps_jax.envs import worker_env

MANIP_DOMAINS = ('cube', 'scene', 'puzzle')
MANIP_TYPES = ('play', 'noisy')
MAZE_TYPES = ('navigate', 'stitch')


class GenerateError(ValueError):
  """User-facing generation error (reported as one line, exit status 2)."""


# -------------------------------------------------------------------------------- names, settings


def parse_dataset_name(dataset_name):
  """'cube-single-play-v0' -> ('cube-single-v0', 'play'); GenerateError for unsupported names."""
  splits = dataset_name.split('-')
  if len(splits) < 3 or not splits[-1].startswith('v'):
    raise GenerateError(f'unsupported dataset name {dataset_name!r}: expected <env>-<type>-v0, '
                        'e.g. cube-single-play-v0')
  dataset_type = splits[-2]
  env_name = '-'.join(splits[:-2] + splits[-1:])
  if splits[0] in MANIP_DOMAINS:
    if dataset_type not in MANIP_TYPES:
      raise GenerateError(f'unsupported dataset type {dataset_type!r} in {dataset_name!r}: use '
                          f'one of {MANIP_TYPES}')
  elif splits[0] == 'pointmaze':
    if dataset_type not in MAZE_TYPES:
      raise GenerateError(
          f'unsupported dataset type {dataset_type!r} in {dataset_name!r}: use one of {MAZE_TYPES}')
  else:
    raise GenerateError(
        f'unsupported dataset {dataset_name!r}: only cube-*, scene, puzzle-* (play/noisy) and '
        'pointmaze-* (navigate/stitch) have scripted oracles')
  return env_name, dataset_type


def default_settings(env_name, dataset_type):
  """Defaults of OGBench's published generation commands (data_gen_scripts/commands.sh)."""
  if env_name.startswith('pointmaze'):
    return dict(noise=0.5, p_random_action=0.0)
  if dataset_type == 'play':
    return dict(noise=0.1, noise_smoothing=0.5, p_random_action=0.0)
  return dict(noise=0.1, min_norm=0.4, p_random_action=0.2 if 'puzzle' in env_name else 0.1)


def episode_seed(base_seed, episode_index):
  """Per-episode 32-bit seed, a pure function of (base_seed, episode_index)."""
  return int(np.random.SeedSequence([int(base_seed), int(episode_index)]).generate_state(1)[0])


# -------------------------------------------------------------------------------- lean step


def lean_step_applies(env) -> bool:
  """Whether lean_cube_step reproduces env.step's rows for this (unwrapped) env: OGBench's cube
  envs in data-collection mode with state observations, never terminated at the goal."""
  from ogbench.manipspace.envs.cube_env import CubeEnv  # pylint: disable=g-import-not-at-top
  return (isinstance(env, CubeEnv) and env._mode == 'data_collection'   # pylint: disable=protected-access
          and env._ob_type == 'states' and not env._terminate_at_goal)  # pylint: disable=protected-access


def lean_cube_step(env, action):
  """OGBench's ManipSpaceEnv.step for a data-collection cube env, minus what no dataset row reads.

  The same OGBench calls in the same order for everything the rows and the oracle read
  (set_control with its IK solve, mj_step, mj_rnePostConstraint, compute_ob_info,
  compute_observation), so the arrays are bit-identical (tests/test_generate.py). Left out:
  the gymnasium wrappers (the caller counts the steps), pre_step's observation dict (only scene
  and puzzle read it), post_step (target colours and the success flag: neither is stored nor read
  by the cube oracles), the reward, and two of the three compute_ob_info calls of a step (the
  observation and the info dict are built from one).

  env: the unwrapped CubeEnv (lean_step_applies); action: [5] in [-1, 1].
  Returns (next observation [O], info dict) as env.step would.
  """
  # pylint: disable=protected-access
  model, data = env._model, env._data
  env.set_control(np.array(action))
  env._prev_qpos = data.qpos.copy()
  env._prev_qvel = data.qvel.copy()
  mujoco.mj_step(model, data, nstep=env._n_steps)
  mujoco.mj_rnePostConstraint(model, data)  # contact forces (the gripper-contact feature)
  info = env.compute_ob_info()
  env.compute_ob_info = lambda: info       # compute_observation reads this step's dict ...
  try:
    ob = env.compute_observation()
  finally:
    del env.compute_ob_info                # ... and the method is the class's again
  return ob, info


# -------------------------------------------------------------------------------- collector


class _Collector:

  def __init__(self, env_name, dataset_type, max_episode_steps, settings, lean=True):
    import gymnasium

    import ogbench  # noqa: F401  (registers the envs)

    self.env_name = env_name
    self.dataset_type = dataset_type
    self.s = settings
    self.is_maze = env_name.startswith('pointmaze')
    self.lean = False      # the lean step: cube envs only (set below)
    if self.is_maze:
      self.env = gymnasium.make(
          env_name, terminate_at_goal=False, max_episode_steps=max_episode_steps)
      self._init_maze_cells()
    else:
      self.env = gymnasium.make(
          env_name,
          terminate_at_goal=False,
          mode='data_collection',
          max_episode_steps=max_episode_steps)
      self.env.reset(seed=0)  # Compile the model once.
      self.has_button_states = hasattr(self.env.unwrapped, '_cur_button_states')
      self.agents = self._make_agents()
      self.lean = lean and lean_step_applies(self.env.unwrapped)
    self.act_dim = int(np.prod(self.env.action_space.shape))
    self.max_episode_steps = int(max_episode_steps)

  # -- manipulation --------------------------------------------------------------------------------

  def _make_agents(self):
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    env, s, name = self.env, self.s, self.env_name
    if self.dataset_type == 'noisy':
      mn = s['min_norm']
      if 'cube' in name:
        return {'cube': CubeMarkovOracle(env=env, min_norm=mn)}
      if 'scene' in name:
        return {
            'cube': CubeMarkovOracle(env=env, min_norm=mn, max_step=100),
            'button': ButtonMarkovOracle(env=env, min_norm=mn),
            'drawer': DrawerMarkovOracle(env=env, min_norm=mn),
            'window': WindowMarkovOracle(env=env, min_norm=mn),
        }
      return {'button': ButtonMarkovOracle(env=env, min_norm=mn, gripper_always_closed=True)}
    kw = dict(noise=s['noise'], noise_smoothing=s['noise_smoothing'])
    if 'cube' in name:
      return {'cube': CubePlanOracle(env=env, **kw)}
    if 'scene' in name:
      return {
          'cube': CubePlanOracle(env=env, **kw),
          'button': ButtonPlanOracle(env=env, **kw),
          'drawer': DrawerPlanOracle(env=env, **kw),
          'window': WindowPlanOracle(env=env, **kw),
      }
    return {'button': ButtonPlanOracle(env=env, gripper_always_closed=True, **kw)}

  def _p_stack(self):
    name = self.env_name
    if 'single' in name:
      return 0.0
    if 'double' in name:
      return np.random.uniform(0.0, 0.25)
    if 'triple' in name:
      return np.random.uniform(0.05, 0.35)
    if 'quadruple' in name:
      return np.random.uniform(0.1, 0.5)
    if 'octuple' in name:
      return np.random.uniform(0.0, 0.35)
    return 0.5

  def _manip_episode(self, seed):
    env = self.env
    noisy = self.dataset_type == 'noisy'
    first_try = True
    while True:  # Retry loop for the rare unhealthy Scene episodes (as in OGBench's script).
      ob, info = env.reset(seed=seed if first_try else None)
      first_try = False
      p_stack = self._p_stack()
      if noisy:
        xi = np.random.uniform(0, self.s['noise'])
      agent = self.agents[info['privileged/target_task']]
      agent.reset(ob, info)

      ep = {k: [] for k in ('observations', 'actions', 'terminals', 'qpos', 'qvel')}
      if self.has_button_states:
        ep['button_states'] = []
      done = False
      num_steps = 0
      while not done:
        if np.random.rand() < self.s['p_random_action']:
          # Uniform random action (env.action_space.sample() would use an unseeded RNG here).
          action = np.random.uniform(-1.0, 1.0, size=self.act_dim)
        else:
          action = np.array(agent.select_action(ob, info))
          if noisy:
            action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
        action = np.clip(action, -1, 1)
        num_steps += 1
        if self.lean:   # the same rows as env.step (tested), without the work no row reads
          next_ob, info = lean_cube_step(env.unwrapped, action)
          done = num_steps >= self.max_episode_steps
        else:
          next_ob, _, terminated, truncated, info = env.step(action)
          done = terminated or truncated

        if agent.done:
          agent_ob, agent_info = env.unwrapped.set_new_target(p_stack=p_stack)
          agent = self.agents[agent_info['privileged/target_task']]
          agent.reset(agent_ob, agent_info)

        ep['observations'].append(ob)
        ep['actions'].append(action)
        ep['terminals'].append(done)
        ep['qpos'].append(info['prev_qpos'])
        ep['qvel'].append(info['prev_qvel'])
        if self.has_button_states:
          ep['button_states'].append(info['prev_button_states'])
        ob = next_ob

      if 'scene' in self.env_name:
        # Health check: the cube must stay visible unless it is in the drawer.
        xyz = np.array(ep['qpos'])[:, 14:17]
        off_table = (xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))
        if (xyz[:, 1] >= 0.29).any() or off_table.any():
          continue
      return ep

  # -- pointmaze -----------------------------------------------------------------------------------

  def _init_maze_cells(self):
    maze_map = self.env.unwrapped.maze_map
    self.all_cells, self.vertex_cells = [], []
    for i in range(maze_map.shape[0]):
      for j in range(maze_map.shape[1]):
        if maze_map[i, j] != 0:
          continue
        self.all_cells.append((i, j))
        # Exclude hallway cells.
        up, down = maze_map[i - 1, j], maze_map[i + 1, j]
        left, right = maze_map[i, j - 1], maze_map[i, j + 1]
        if up == 0 and down == 0 and left == 1 and right == 1:
          continue
        if left == 0 and right == 0 and up == 1 and down == 1:
          continue
        self.vertex_cells.append((i, j))

  def _stitch_goal(self, init_ij, adj_steps=4):
    maze_map = self.env.unwrapped.maze_map
    bfs = -np.ones_like(maze_map)
    bfs[init_ij] = 0
    queue, adj = [init_ij], []
    while queue:
      i, j = queue.pop(0)
      for di, dj in [(-1, 0), (0, -1), (1, 0), (0, 1)]:
        ni, nj = i + di, j + dj
        inside = 0 <= ni < bfs.shape[0] and 0 <= nj < bfs.shape[1]
        if inside and maze_map[ni, nj] == 0 and bfs[ni, nj] == -1:
          bfs[ni, nj] = bfs[i, j] + 1
          queue.append((ni, nj))
          if bfs[ni, nj] == adj_steps:
            adj.append((ni, nj))
    return adj[np.random.randint(len(adj))] if adj else init_ij

  def _maze_episode(self, seed):
    env, uw = self.env, self.env.unwrapped
    env.action_space.seed(seed)  # The reset does a few random (space-sampled) stabilising steps.
    init_ij = self.all_cells[np.random.randint(len(self.all_cells))]
    if self.dataset_type == 'stitch':
      goal_ij = self._stitch_goal(init_ij)
    else:
      goal_ij = self.vertex_cells[np.random.randint(len(self.vertex_cells))]
    ob, _ = env.reset(seed=seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))

    ep = {k: [] for k in ('observations', 'actions', 'terminals', 'qpos', 'qvel')}
    done = False
    while not done:
      xy = uw.get_xy()
      subgoal_xy, _ = uw.get_oracle_subgoal(xy, uw.cur_goal_xy)
      direction = subgoal_xy - xy
      direction = direction / (np.linalg.norm(direction) + 1e-6)
      action = np.clip(direction + np.random.normal(0, self.s['noise'], direction.shape), -1, 1)
      next_ob, _, terminated, truncated, info = env.step(action)
      done = terminated or truncated
      if info['success'] and self.dataset_type == 'navigate':
        uw.set_goal(self.vertex_cells[np.random.randint(len(self.vertex_cells))])
      ep['observations'].append(ob)
      ep['actions'].append(action)
      ep['terminals'].append(done)
      ep['qpos'].append(info['prev_qpos'])
      ep['qvel'].append(info['prev_qvel'])
      ob = next_ob
    return ep

  # -- entry ---------------------------------------------------------------------------------------

  def episode(self, seed):
    np.random.seed(seed)  # OGBench oracles and the reference script draw from numpy's global RNG.
    ep = self._maze_episode(seed) if self.is_maze else self._manip_episode(seed)
    return {k: np.asarray(v, dtype=_DTYPES.get(k, np.float32)) for k, v in ep.items()}


_DTYPES = {'terminals': bool, 'button_states': np.int64}

_WORKER = None
_WORKER_ERROR = None
_THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


class WorkerError(RuntimeError):
  """An episode (or a worker's env set-up) failed; the message is one line."""


def _worker_init(env_name, dataset_type, max_episode_steps, settings, lean=True):
  """Pool initializer: build the collector. A failure is kept and raised by the first task
  (an initializer that raises would make the pool respawn workers forever)."""
  global _WORKER, _WORKER_ERROR
  if mp.current_process().name != 'MainProcess':
    warnings.simplefilter('ignore')  # Keep worker stderr quiet (glfw/gymnasium import warnings).
  try:
    _WORKER = _Collector(env_name, dataset_type, max_episode_steps, settings, lean)
  except Exception as e:  # pylint: disable=broad-except
    _WORKER_ERROR = f'{type(e).__name__}: {cli.one_line(e)}'


def _worker_run(seed):
  if _WORKER_ERROR is not None:
    raise WorkerError(f'setting up the environment failed: {_WORKER_ERROR}')
  try:
    return _WORKER.episode(seed)
  except Exception as e:  # pylint: disable=broad-except
    where = traceback.extract_tb(e.__traceback__)[-1]
    raise WorkerError(f'episode with seed {seed} failed: {type(e).__name__}: {cli.one_line(e)} '
                      f'({os.path.basename(where.filename)}:{where.lineno})') from None


# --------------------------------------------------------------------------------------- public API
def output_paths(dataset_name, out_dir):
  out_dir = os.path.expanduser(out_dir)
  return (os.path.join(out_dir, f'{dataset_name}.npz'),
          os.path.join(out_dir, f'{dataset_name}-val.npz'))


def _concat(episodes):
  keys = episodes[0].keys()
  return {k: np.concatenate([ep[k] for ep in episodes], axis=0) for k in keys}


def check_env_registered(env_name):
  """GenerateError unless gymnasium knows `env_name` once ogbench is imported (checked in the
  parent process, before any worker starts)."""
  import gymnasium  # pylint: disable=g-import-not-at-top
  import ogbench  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  if env_name not in gymnasium.registry:
    import difflib  # pylint: disable=g-import-not-at-top
    close = difflib.get_close_matches(env_name, list(gymnasium.registry), n=3)
    hint = f'; did you mean {" or ".join(close)}?' if close else ''
    raise GenerateError(f'unknown environment {env_name!r} (not registered by ogbench){hint}')


def generate_episodes(dataset_name, num_episodes, seed=0, workers=1, steps_per_episode=1001,
                      first_index=0, progress=True, lean=True, indices=None, time_budget_s=0.0,
                      **overrides):
  """Collect `num_episodes` episodes (indices first_index, first_index+1, ..., or the given
  `indices`): a list of per-episode dicts of arrays in the official format. Deterministic in
  (seed, index), independent of `workers` and `lean` (False: every step through env.step and its
  gymnasium wrappers, the reference path). time_budget_s > 0: stop collecting once that many
  seconds have passed (a worker's start-up included) and return the episodes finished in order
  so far, a prefix of the list. Raises GenerateError (bad name / env) or WorkerError."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  start = time.perf_counter()
  env_name, dataset_type = parse_dataset_name(dataset_name)
  check_env_registered(env_name)
  settings = default_settings(env_name, dataset_type)
  settings.update({k: v for k, v in overrides.items() if v is not None})
  if indices is None:
    indices = range(first_index, first_index + num_episodes)
  seeds = [episode_seed(seed, i) for i in indices]
  left = lambda: (time_budget_s - (time.perf_counter() - start)) if time_budget_s > 0 else None
  init_args = (env_name, dataset_type, int(steps_per_episode), settings, lean)
  bar = tqdm(total=len(seeds), desc=f'generate {dataset_name}', unit='ep', disable=not progress)
  episodes = []
  if workers <= 1 or len(seeds) <= 1:
    rng_state = np.random.get_state()  # Do not leave the caller's global RNG re-seeded.
    try:
      _worker_init(*init_args)
      for s in seeds:
        if left() is not None and left() <= 0:
          break
        episodes.append(_worker_run(s))
        bar.update(1)
    finally:
      np.random.set_state(rng_state)
  else:
    ctx = mp.get_context('spawn')  # Safe even if the parent process has started threads (JAX).
    # Workers inherit the environment at spawn: one BLAS thread each (tiny IK solves).
    with worker_env.scoped_environ({k: '1' for k in _THREAD_VARS}, overwrite=False):
      pool = ctx.Pool(processes=min(workers, len(seeds)), initializer=_worker_init,
                      initargs=init_args)
    try:
      results = pool.imap(_worker_run, seeds, chunksize=1)
      for _ in seeds:
        try:
          episodes.append(results.next(timeout=None if left() is None else max(left(), 0)))
        except mp.TimeoutError:
          break                 # the budget ran out: keep the episodes finished in order
        bar.update(1)
      pool.close()
    finally:
      pool.terminate()        # a failed episode (or Ctrl-C) stops every worker at once
      pool.join()
  bar.close()
  return episodes


def check_outputs(dataset_name, out_dir, overwrite=False):
  """(train_path, val_path) if they can be written; GenerateError otherwise. Writes nothing."""
  reason = rundir.unwritable_reason(out_dir)
  if reason:
    raise GenerateError(f'--out={out_dir}: {reason}')
  train_path, val_path = output_paths(dataset_name, out_dir)
  for path in (train_path, val_path):
    if os.path.isdir(path):
      raise GenerateError(f'{path} is a directory')
    if os.path.exists(path) and not overwrite:
      raise GenerateError(f'{path} already exists; refusing to overwrite (pass --overwrite to '
                          f'replace it)')
  return train_path, val_path


def check_settings(num_episodes, steps_per_episode, val_episodes, workers=1, noise=None,
                   p_random_action=None, time_budget_s=0.0):
  """GenerateError naming the flag of the first bad value (the CLI's flag bounds, from Python)."""
  checks = [('episodes', num_episodes, num_episodes >= 1, '>= 1'),
            ('steps_per_episode', steps_per_episode, steps_per_episode >= 2, '>= 2'),
            ('val_episodes', val_episodes, val_episodes is None or val_episodes >= 1, '>= 1'),
            ('workers', workers, workers >= 1, '>= 1'),
            ('noise', noise, noise is None or 0 <= noise < math.inf, 'finite and >= 0'),
            ('p_random_action', p_random_action,
             p_random_action is None or 0 <= p_random_action <= 1, 'in [0, 1]'),
            ('time_budget_s', time_budget_s, time_budget_s >= 0, '>= 0 (0: none)')]
  for name, value, ok, bound in checks:
    if not ok:
      raise GenerateError(f'--{name} must be {bound} (got {value})')


def generate_dataset(dataset_name, num_episodes, out_dir, seed=0, workers=1, steps_per_episode=1001,
                     val_episodes=None, overwrite=False, progress=True, lean=True,
                     time_budget_s=0.0, compress=True, **overrides):
  """Generate `<out_dir>/<dataset_name>.npz` (train) and `-val.npz` (val). Returns a stats dict.

  Train episodes are indices 0..N-1, val episodes N..N+V-1 (V = val_episodes). The val episodes
  are collected first; with time_budget_s > 0, collection stops when the budget is spent and
  the train file holds the first M <= N episodes (stats['train_episodes']): the same episodes as
  a run with N episodes, cut. GenerateError if not even the val episodes and one train episode
  fit. compress=False writes plain .npz (np.savez: the same arrays, written ~10x faster, ~15%
  larger). Everything (values, dataset name, env id, output paths) is checked before
  generating."""
  check_settings(num_episodes, steps_per_episode, val_episodes, workers,
                 overrides.get('noise'), overrides.get('p_random_action'), time_budget_s)
  if val_episodes is None:
    val_episodes = max(1, num_episodes // 10)
  env_name, _ = parse_dataset_name(dataset_name)
  train_path, val_path = check_outputs(dataset_name, out_dir, overwrite)
  check_env_registered(env_name)

  t0 = time.time()
  indices = [*range(num_episodes, num_episodes + val_episodes), *range(num_episodes)]
  episodes = generate_episodes(dataset_name, len(indices), seed=seed, workers=workers,
                               steps_per_episode=steps_per_episode, progress=progress, lean=lean,
                               indices=indices, time_budget_s=time_budget_s, **overrides)
  elapsed = time.time() - t0
  if len(episodes) <= val_episodes:
    raise GenerateError(f'--time_budget_s={time_budget_s:g} is too short: {len(episodes)} '
                        f'episodes finished, {val_episodes} val + at least 1 train are needed')
  val, train = _concat(episodes[:val_episodes]), _concat(episodes[val_episodes:])

  os.makedirs(os.path.dirname(train_path) or '.', exist_ok=True)
  write_start = time.time()
  for path, data in ((train_path, train), (val_path, val)):
    tmp = path[:-len('.npz')] + '.tmp.npz'
    (np.savez_compressed if compress else np.savez)(tmp, **data)
    os.replace(tmp, path)
  steps = sum(len(ep['terminals']) for ep in episodes)
  return dict(train_path=train_path, val_path=val_path, train_steps=len(train['terminals']),
              val_steps=len(val['terminals']), train_episodes=len(episodes) - val_episodes,
              requested_episodes=num_episodes, total_steps=steps, seconds=elapsed,
              write_seconds=time.time() - write_start,
              steps_per_second=steps / max(elapsed, 1e-9))


# ---------------------------------------------------------------------------------- CLI
# Its own FlagValues: importing this module next to lps_jax.main (tests) defines no global flags.
FLAGS = flags.FlagValues()
flags.DEFINE_string('env', None, 'Dataset name, e.g. cube-single-play-v0, '
                    'pointmaze-medium-navigate-v0.', flag_values=FLAGS)
flags.DEFINE_integer('episodes', None, 'Number of training episodes.', lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_string('out', None, 'Output directory.', flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Base seed (episode k uses a seed derived from (seed, k)).',
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer('workers', 2, 'Worker processes (the output does not depend on it).',
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('steps_per_episode', 1001, 'Environment steps per episode.', lower_bound=2,
                     flag_values=FLAGS)
flags.DEFINE_integer('val_episodes', None, 'Validation episodes (default: 10% of --episodes, at '
                     'least 1).', lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.', flag_values=FLAGS)
flags.DEFINE_float('noise', None, 'Override the oracle noise level (>= 0).', lower_bound=0.0,
                   flag_values=FLAGS)
flags.DEFINE_float('p_random_action', None, 'Override the random-action probability.',
                   lower_bound=0.0, upper_bound=1.0, flag_values=FLAGS)
flags.DEFINE_float('time_budget_s', 0.0, 'Stop collecting after this many seconds (0: none) and '
                   'write the train episodes finished so far (the first M of --episodes).',
                   lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_bool('compress', True, 'Write compressed .npz (as OGBench); --nocompress: plain .npz, '
                  'the same arrays, written ~10x faster.', flag_values=FLAGS)
flags.DEFINE_bool('progress', True, 'Show a progress bar.', flag_values=FLAGS)
flags.DEFINE_bool('lean', True, 'Cube envs: step without the work no stored row reads (the same '
                  'arrays); --nolean steps through env.step and its gymnasium wrappers.',
                  flag_values=FLAGS)
flags.DEFINE_bool('no_progress', False, 'Same as --noprogress (kept for old command lines).',
                  flag_values=FLAGS)
flags.mark_flags_as_required(['env', 'episodes', 'out'], flag_values=FLAGS)


def main(argv=None) -> int:
  """The CLI; returns the exit code (0 done, 2 bad input, 1 a worker failed)."""
  argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
  if any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv[1:]):
    print(__doc__ + '\nflags:\n' + FLAGS.get_help())
    return 0
  FLAGS.unparse_flags()
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    print(f'error: {cli.one_line(e)}', file=sys.stderr)
    return cli.EXIT_USAGE
  if len(rest) > 1:
    print(f'error: unexpected arguments: {rest[1:]}', file=sys.stderr)
    return cli.EXIT_USAGE
  warnings.simplefilter('ignore')
  try:
    stats = generate_dataset(FLAGS.env, FLAGS.episodes, FLAGS.out, seed=FLAGS.seed,
                             workers=FLAGS.workers, steps_per_episode=FLAGS.steps_per_episode,
                             lean=FLAGS.lean, time_budget_s=FLAGS.time_budget_s,
                             compress=FLAGS.compress,
                             val_episodes=FLAGS.val_episodes, overwrite=FLAGS.overwrite,
                             progress=FLAGS.progress and not FLAGS.no_progress,
                             noise=FLAGS.noise, p_random_action=FLAGS.p_random_action)
  except GenerateError as e:
    print(f'error: {cli.one_line(e)}', file=sys.stderr)
    return cli.EXIT_USAGE
  except WorkerError as e:
    print(f'error: {cli.one_line(e)}', file=sys.stderr)
    return 1
  if stats['train_episodes'] < stats['requested_episodes']:
    print(f"time budget reached: {stats['train_episodes']} of {stats['requested_episodes']} "
          f"training episodes generated (the first {stats['train_episodes']})")
  print(f"wrote {stats['train_path']} ({stats['train_steps']} steps) and {stats['val_path']} "
        f"({stats['val_steps']} steps) in {stats['write_seconds']:.1f} s")
  print(f"generation speed: {stats['steps_per_second']:.1f} transitions/s "
        f"({stats['total_steps']} env steps in {stats['seconds']:.1f} s, {FLAGS.workers} workers)")
  return 0


if __name__ == '__main__':
  sys.exit(main())
