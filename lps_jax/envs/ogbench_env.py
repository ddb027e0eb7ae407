"""OGBench single-task environments: construction and open-loop action-chunk evaluation.

Single-task envs (e.g. 'cube-single-singletask-task1-v0', or the dataset-style name
'cube-single-play-singletask-task1-v0') are registered by OGBench with success_timing='pre' and
terminate_at_goal=True: env.step(a) taken in state s returns reward/success of s and terminates the episode when s
solves the task. The episode time limits are OGBench's (cube-single 200, cube-double 500, scene 750, puzzle-3x3 500,
puzzle-4x4 500, pointmaze-medium 1000 steps).
"""

import numpy as np


def env_id(env_name):
    """Gym id of an OGBench single-task env; accepts dataset-style names ('cube-single-play-singletask-task1-v0')."""
    splits = env_name.split('-')
    if 'singletask' in splits:
        pos = splits.index('singletask')
        if pos >= 2 and splits[pos - 1] in ('play', 'noisy', 'navigate', 'stitch', 'explore'):
            return '-'.join(splits[: pos - 1] + splits[pos:])
    return env_name


def make_env(env_name, seed=None, **env_kwargs):
    """Make an OGBench env (single-task for evaluation). If seed is given, the env is reset once with it."""
    import gymnasium

    import ogbench  # noqa: F401  (registers the envs)

    env = gymnasium.make(env_id(env_name), **env_kwargs)
    if seed is not None:
        env.reset(seed=int(seed))
    return env


def evaluate(env_name, policy_fn, num_episodes, horizon, action_dim, seed=0, env=None):
    """Roll out a deterministic chunked policy.

    policy_fn(obs[obs_dim]) -> flat array [horizon * action_dim]; each chunk is executed open-loop for `horizon` env
    steps (stopping early at episode end), then the policy is queried again. Episode e is reset with seed `seed + e`.
    Actions are clipped to the env's action bounds.

    Returns {'success': mean info['success'] at episode end, 'return': mean undiscounted return,
             'episode_length': mean length, 'num_episodes': n}.
    """
    if env is None:
        env = make_env(env_name)
    low = np.asarray(env.action_space.low, dtype=np.float64)
    high = np.asarray(env.action_space.high, dtype=np.float64)
    if low.shape != (action_dim,):
        raise ValueError(f'action_dim={action_dim} but {env_name} has action shape {low.shape}')

    successes, returns, lengths = [], [], []
    for ep in range(num_episodes):
        ob, info = env.reset(seed=int(seed) + ep)
        done, ret, length, success = False, 0.0, 0, 0.0
        while not done:
            chunk = np.asarray(policy_fn(np.asarray(ob, dtype=np.float32)), dtype=np.float64)
            if chunk.size != horizon * action_dim:
                raise ValueError(f'policy_fn returned {chunk.size} values, expected horizon*action_dim='
                                 f'{horizon * action_dim}')
            for a in chunk.reshape(horizon, action_dim):
                ob, reward, terminated, truncated, info = env.step(np.clip(a, low, high))
                ret += float(reward)
                length += 1
                if terminated or truncated:
                    done = True
                    break
        success = float(info.get('success', 0.0))
        successes.append(success)
        returns.append(ret)
        lengths.append(length)
    return {
        'success': float(np.mean(successes)),
        'return': float(np.mean(returns)),
        'episode_length': float(np.mean(lengths)),
        'num_episodes': int(num_episodes),
    }
