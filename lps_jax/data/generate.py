"""Generate OGBench-format offline datasets with OGBench's own scripted oracles.

Reproduces the logic of OGBench's published data generation scripts
(`data_gen_scripts/generate_manipspace.py` and `generate_locomaze.py`, which are not part of the pip package):

* manipulation (`cube-*`, `scene`, `puzzle-*`): env made with
  `gymnasium.make(name, terminate_at_goal=False, mode='data_collection', max_episode_steps=...)`;
  `play` = non-Markovian plan oracles (`ogbench.manipspace.oracles.plan`, smoothed noise 0.1, smoothing 0.5);
  `noisy` = Markovian oracles (`ogbench.manipspace.oracles.markov`, min_norm 0.4) plus per-episode Gaussian action
  noise with scale xi ~ U(0, 0.1) and random actions with probability 0.1 (cube, scene) / 0.2 (puzzle).
  When the oracle finishes its sub-task a new target is set with `env.unwrapped.set_new_target(p_stack=...)`.
* pointmaze (`pointmaze-*-navigate-v0`, `pointmaze-*-stitch-v0`): BFS waypoint follower, action = unit direction to
  the next BFS subgoal cell + N(0, 0.5), clipped to [-1, 1]; `navigate` resamples a goal whenever it is reached.

Output: `<out>/<dataset>.npz` and `<out>/<dataset>-val.npz` with the official keys and dtypes
(observations/actions/qpos/qvel float32, terminals bool, button_states int64 for scene/puzzle). `terminals` is True on
the last step of every episode (the episode is cut by the time limit).

Determinism: every episode `k` gets its own seed derived from (`--seed`, k); both numpy's global RNG (used by the
OGBench oracles) and the env's RNG are re-seeded at the start of each episode, and MuJoCo state is fully reset by
`env.reset`, so the arrays do not depend on `--workers`.

Usage:
    python -m lps_jax.data.generate --env=cube-single-play-v0 --episodes=1000 --out=~/.ogbench/data --workers=2
"""

import argparse
import multiprocessing as mp
import os
import sys
import time
import warnings

import numpy as np

MANIP_DOMAINS = ('cube', 'scene', 'puzzle')
MANIP_TYPES = ('play', 'noisy')
MAZE_TYPES = ('navigate', 'stitch')


class GenerateError(ValueError):
    """User-facing generation error (reported as one line, exit status 2)."""


# ----------------------------------------------------------------------------------------------------------------------
# Names and settings.
# ----------------------------------------------------------------------------------------------------------------------


def parse_dataset_name(dataset_name):
    """'cube-single-play-v0' -> ('cube-single-v0', 'play'). Raises GenerateError for unsupported names."""
    splits = dataset_name.split('-')
    if len(splits) < 3 or not splits[-1].startswith('v'):
        raise GenerateError(
            f'unsupported dataset name {dataset_name!r}: expected <env>-<type>-v0, e.g. cube-single-play-v0'
        )
    dataset_type = splits[-2]
    env_name = '-'.join(splits[:-2] + splits[-1:])
    if splits[0] in MANIP_DOMAINS:
        if dataset_type not in MANIP_TYPES:
            raise GenerateError(f'unsupported dataset type {dataset_type!r} in {dataset_name!r}: use one of {MANIP_TYPES}')
    elif splits[0] == 'pointmaze':
        if dataset_type not in MAZE_TYPES:
            raise GenerateError(f'unsupported dataset type {dataset_type!r} in {dataset_name!r}: use one of {MAZE_TYPES}')
    else:
        raise GenerateError(
            f'unsupported dataset {dataset_name!r}: only cube-*, scene, puzzle-* (play/noisy) and pointmaze-* '
            '(navigate/stitch) have scripted oracles'
        )
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


# ----------------------------------------------------------------------------------------------------------------------
# Per-process collector.
# ----------------------------------------------------------------------------------------------------------------------


class _Collector:
    def __init__(self, env_name, dataset_type, max_episode_steps, settings):
        import gymnasium

        import ogbench  # noqa: F401  (registers the envs)

        self.env_name = env_name
        self.dataset_type = dataset_type
        self.s = settings
        self.is_maze = env_name.startswith('pointmaze')
        if self.is_maze:
            self.env = gymnasium.make(env_name, terminate_at_goal=False, max_episode_steps=max_episode_steps)
            self._init_maze_cells()
        else:
            self.env = gymnasium.make(
                env_name, terminate_at_goal=False, mode='data_collection', max_episode_steps=max_episode_steps
            )
            self.env.reset(seed=0)  # Compile the model once.
            self.has_button_states = hasattr(self.env.unwrapped, '_cur_button_states')
            self.agents = self._make_agents()
        self.act_dim = int(np.prod(self.env.action_space.shape))

    # -- manipulation ----------------------------------------------------------------------------------------------

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
            while not done:
                if np.random.rand() < self.s['p_random_action']:
                    # Uniform random action (env.action_space.sample() would use an unseeded RNG here).
                    action = np.random.uniform(-1.0, 1.0, size=self.act_dim)
                else:
                    action = np.array(agent.select_action(ob, info))
                    if noisy:
                        action = action + np.random.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
                action = np.clip(action, -1, 1)
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
                if (xyz[:, 1] >= 0.29).any() or ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any():
                    continue
            return ep

    # -- pointmaze -------------------------------------------------------------------------------------------------

    def _init_maze_cells(self):
        maze_map = self.env.unwrapped.maze_map
        self.all_cells, self.vertex_cells = [], []
        for i in range(maze_map.shape[0]):
            for j in range(maze_map.shape[1]):
                if maze_map[i, j] != 0:
                    continue
                self.all_cells.append((i, j))
                # Exclude hallway cells.
                if maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1:
                    continue
                if maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1:
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
                if 0 <= ni < bfs.shape[0] and 0 <= nj < bfs.shape[1] and maze_map[ni, nj] == 0 and bfs[ni, nj] == -1:
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

    # -- entry ------------------------------------------------------------------------------------------------------

    def episode(self, seed):
        np.random.seed(seed)  # OGBench oracles and the reference script draw from numpy's global RNG.
        ep = self._maze_episode(seed) if self.is_maze else self._manip_episode(seed)
        return {k: np.asarray(v, dtype=_DTYPES.get(k, np.float32)) for k, v in ep.items()}


_DTYPES = {'terminals': bool, 'button_states': np.int64}

_WORKER = None
_THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')


def _worker_init(env_name, dataset_type, max_episode_steps, settings):
    global _WORKER
    if mp.current_process().name != 'MainProcess':
        warnings.simplefilter('ignore')  # Keep worker stderr quiet (glfw/gymnasium import warnings).
    _WORKER = _Collector(env_name, dataset_type, max_episode_steps, settings)


def _worker_run(seed):
    return _WORKER.episode(seed)


# ----------------------------------------------------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------------------------------------------------


def output_paths(dataset_name, out_dir):
    out_dir = os.path.expanduser(out_dir)
    return os.path.join(out_dir, f'{dataset_name}.npz'), os.path.join(out_dir, f'{dataset_name}-val.npz')


def _concat(episodes):
    keys = episodes[0].keys()
    return {k: np.concatenate([ep[k] for ep in episodes], axis=0) for k in keys}


def generate_episodes(dataset_name, num_episodes, seed=0, workers=1, steps_per_episode=1001, first_index=0,
                      progress=True, **overrides):
    """Collect `num_episodes` episodes (indices first_index, first_index+1, ...) and return a list of per-episode
    dicts of arrays in the official format. Deterministic in (seed, index), independent of `workers`."""
    from tqdm import tqdm

    env_name, dataset_type = parse_dataset_name(dataset_name)
    settings = default_settings(env_name, dataset_type)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    seeds = [episode_seed(seed, first_index + i) for i in range(num_episodes)]
    init_args = (env_name, dataset_type, int(steps_per_episode), settings)
    bar = tqdm(total=num_episodes, desc=f'generate {dataset_name}', unit='ep', disable=not progress)
    episodes = []
    if workers <= 1 or num_episodes <= 1:
        rng_state = np.random.get_state()  # Do not leave the caller's global RNG re-seeded.
        try:
            _worker_init(*init_args)
            for s in seeds:
                episodes.append(_worker_run(s))
                bar.update(1)
        finally:
            np.random.set_state(rng_state)
    else:
        ctx = mp.get_context('spawn')  # Safe even if the parent process has started threads (e.g. JAX).
        # Workers inherit the environment at spawn: one BLAS thread each (the IK solves are tiny matrices).
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        for k in _THREAD_VARS:
            os.environ.setdefault(k, '1')
        try:
            pool = ctx.Pool(processes=min(workers, num_episodes), initializer=_worker_init, initargs=init_args)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        with pool:
            for ep in pool.imap(_worker_run, seeds, chunksize=1):
                episodes.append(ep)
                bar.update(1)
    bar.close()
    return episodes


def generate_dataset(dataset_name, num_episodes, out_dir, seed=0, workers=1, steps_per_episode=1001,
                     val_episodes=None, overwrite=False, progress=True, **overrides):
    """Generate `<out_dir>/<dataset_name>.npz` (train) and `-val.npz` (val). Returns a stats dict."""
    if num_episodes < 1:
        raise GenerateError(f'--episodes must be >= 1 (got {num_episodes})')
    if steps_per_episode < 2:
        raise GenerateError(f'--steps_per_episode must be >= 2 (got {steps_per_episode})')
    if val_episodes is None:
        val_episodes = max(1, num_episodes // 10)
    if val_episodes < 1:
        raise GenerateError(f'--val_episodes must be >= 1 (got {val_episodes})')
    parse_dataset_name(dataset_name)
    train_path, val_path = output_paths(dataset_name, out_dir)
    if not overwrite:
        for p in (train_path, val_path):
            if os.path.exists(p):
                raise GenerateError(f'{p} already exists; refusing to overwrite (pass --overwrite to replace it)')

    t0 = time.time()
    episodes = generate_episodes(dataset_name, num_episodes + val_episodes, seed=seed, workers=workers,
                                 steps_per_episode=steps_per_episode, progress=progress, **overrides)
    elapsed = time.time() - t0
    train, val = _concat(episodes[:num_episodes]), _concat(episodes[num_episodes:])

    os.makedirs(os.path.dirname(train_path) or '.', exist_ok=True)
    for path, data in ((train_path, train), (val_path, val)):
        tmp = path[: -len('.npz')] + '.tmp.npz'
        np.savez_compressed(tmp, **data)
        os.replace(tmp, path)
    steps = sum(len(ep['terminals']) for ep in episodes)
    return dict(train_path=train_path, val_path=val_path, train_steps=len(train['terminals']),
                val_steps=len(val['terminals']), total_steps=steps, seconds=elapsed,
                steps_per_second=steps / max(elapsed, 1e-9))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--env', required=True, help='dataset name, e.g. cube-single-play-v0, pointmaze-medium-navigate-v0')
    p.add_argument('--episodes', type=int, required=True, help='number of training episodes')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--steps_per_episode', type=int, default=1001)
    p.add_argument('--val_episodes', type=int, default=None, help='default: 10%% of --episodes, at least 1')
    p.add_argument('--overwrite', action='store_true')
    p.add_argument('--noise', type=float, default=None, help='override the oracle noise level')
    p.add_argument('--p_random_action', type=float, default=None, help='override the random-action probability')
    p.add_argument('--no_progress', action='store_true')
    args = p.parse_args(argv)
    warnings.simplefilter('ignore')
    try:
        stats = generate_dataset(args.env, args.episodes, args.out, seed=args.seed, workers=args.workers,
                                 steps_per_episode=args.steps_per_episode, val_episodes=args.val_episodes,
                                 overwrite=args.overwrite, progress=not args.no_progress, noise=args.noise,
                                 p_random_action=args.p_random_action)
    except GenerateError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f"wrote {stats['train_path']} ({stats['train_steps']} steps) and {stats['val_path']} "
          f"({stats['val_steps']} steps)")
    print(f"generation speed: {stats['steps_per_second']:.1f} transitions/s "
          f"({stats['total_steps']} env steps in {stats['seconds']:.1f} s, {args.workers} workers)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
