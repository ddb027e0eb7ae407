"""Command-line plumbing shared by every CLI: bad input is one line on stderr and exit code 2.

  one_line(error)                 an exception (even a traceback text) as one line
  fail(error, code)               print 'error: <one line>' and exit
  define_config_file(...)         config_flags.DEFINE_config_file whose errors wait for parse_flags
  parse_flags(argv, flag_values)  absl parsing with every error (incl. config_flags') as one line;
                                  then the config file must load, a tuple key must be given a
                                  tuple, and absl logs nothing below WARNING (no INFO lines)
  run(main, ...)                  app.run(main) with parse_flags, and stray positional arguments
                                  refused in one line (exit 2) before main starts
  unknown_config_key(...)         '--config.agent.lrr' -> 'unknown config key ...; did you mean ...'
  seed_error(seed, name)          why a seed is out of the PRNG's range (one line), or None
  seeds_error(seeds, name)        the first seed_error of a list, or None
  workdir_error(path, flag)       why `path` cannot be an output folder (one line), or None
"""
import ast
import difflib
import os
import re
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags
from absl import logging as absl_logging

EXIT_USAGE = 2
# jax.random.PRNGKey keeps 32 bits of a seed: 2**32 gives the key of seed 0, and from 2**63 on it
# raises OverflowError. Every CLI refuses seeds outside [0, MAX_SEED].
MAX_SEED = 2**32 - 1
_PENDING = {}   # flag name -> one-line error raised while defining it (define_config_file)


def one_line(error) -> str:
  """An exception as one line: multi-line messages (tracebacks) keep their last line."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  if len(lines) > 1 and any(line.startswith('Traceback') for line in lines):
    return lines[-1]
  return ' '.join(lines)


def fail(error, code: int = EXIT_USAGE, prefix: str = 'error'):
  print(f'{prefix}: {one_line(error)}', file=sys.stderr)
  sys.exit(code)


def first_error(*errors: Optional[str]) -> Optional[str]:
  """The first message of checks listed in the order they should be reported, or None."""
  return next(filter(None, errors), None)


def seed_error(seed, name: str = '--seed') -> Optional[str]:
  """Why `seed` cannot seed a run (one line), or None for an integer in [0, MAX_SEED]."""
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
    return (f'{name} must be an integer in [0, {MAX_SEED}] (the PRNG takes 32-bit seeds), '
            f'got {seed!r}')
  return None


def seeds_error(seeds, name: str = '--seeds') -> Optional[str]:
  """The first seed of `seeds` that cannot seed a run, as seed_error's line; or None."""
  return first_error(*(seed_error(s, name) for s in seeds))


def workdir_error(path, flag: str = '--workdir') -> Optional[str]:
  """Why `path` cannot be the output folder (one line), or None: unset, or not creatable or
  writable (e.g. under a regular file). Writes nothing."""
  if not path:
    return f'{flag} is required'
  from lps_jax import rundir  # pylint: disable=g-import-not-at-top
  reason = rundir.unwritable_reason(path)
  return f'{flag}={path}: {reason}' if reason else None


# ---------------------------------------------------------------------------------- config keys
def _config_arg(argv: Sequence[str], name: str, default: Optional[str]) -> Optional[str]:
  for arg in argv[1:]:
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
  return default


def close_keys(config, dotted: str) -> Tuple[List[str], bool]:
  """(names, close) for the unknown `dotted` key ('agent.lrr'): its parent's keys that are close
  to it (close=True), else all of the parent's keys (close=False); dotted."""
  parent, parts = config, dotted.split('.')
  prefix = []
  for part in parts[:-1]:
    if not hasattr(parent, 'keys') or part not in parent.keys():
      break
    parent, prefix = parent[part], prefix + [part]
  if not hasattr(parent, 'keys'):
    return [], False
  wanted = parts[len(prefix)]
  names = sorted(parent.keys())
  close = (difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
           or [n for n in names if wanted in n or n in wanted])
  return ['.'.join(prefix + [n]) for n in (close or names)], bool(close)


def unknown_config_key(error, argv: Sequence[str], flag_name: str = 'config',
                       default_config: Optional[str] = None) -> str:
  """ConfigDict's KeyError/AttributeError for --config.a.b=... as one line with suggestions."""
  inner = error.args[0] if error.args else error
  text = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
  lines = str(text).splitlines() or ['']
  key = lines[0].strip('\'"')
  given = [a.split('=')[0] for a in argv[1:]
           if a.startswith(f'--{flag_name}.') and key in a.split('=')[0].split('.')[1:]]
  if not given:
    return f'bad --{flag_name}: {one_line(text)}'
  parts = given[0].split('.')[1:]
  dotted = '.'.join(parts[:parts.index(key) + 1])     # up to the first unknown key
  names, close = [], False
  config_arg = _config_arg(argv, flag_name, default_config)
  if config_arg:
    try:
      from lps_jax import config_lib  # pylint: disable=g-import-not-at-top
      names, close = close_keys(config_lib.load_config_file(config_arg), dotted)
    except Exception:  # pylint: disable=broad-except  (the config file's own errors come later)
      names = []
  hint = ''
  if names and close:
    hint = '; did you mean ' + ' or '.join(f'--{flag_name}.{n}' for n in names) + '?'
  elif names:
    parent = '.'.join([flag_name] + dotted.split('.')[:-1])
    hint = f'; the keys of {parent} are: ' + ', '.join(n.split('.')[-1] for n in names)
  return f'unknown config key {given[0]}{hint}'


def define_config_file(name: str, default: str, help_string: str,
                       flag_values=flags.FLAGS, **kwargs) -> None:
  """config_flags.DEFINE_config_file that never raises at import time.

  With no --<name>=... on the command line, config_flags loads `default` and applies the
  --<name>.key=value overrides while the flag is being defined (at import): a mistyped key
  would be a traceback there. The error is kept and reported by parse_flags as one line.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  try:
    config_flags.DEFINE_config_file(name, default, help_string, flag_values=flag_values,
                                    **kwargs)
  except (KeyError, AttributeError) as e:
    _PENDING[name] = unknown_config_key(e, sys.argv, name, default)
  except Exception as e:  # pylint: disable=broad-except  (a broken default config file)
    _PENDING[name] = f'cannot load --{name}={default}: {one_line(e)}'


def config_load_error(flag_values, name: str = 'config') -> Optional[str]:
  """Why the --<name> config file did not load (config_flags defers the error to first use), or
  None. A relative path is read from the current directory, which the message names."""
  try:
    flag_values[name].value.keys()
  except Exception as e:  # pylint: disable=broad-except
    filename = getattr(flag_values[name], 'config_filename', None) or '?'
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    path = filename.split(':')[0]
    hint = ''
    if not os.path.isabs(path) and not os.path.exists(path):
      hint = (f' (a relative path is read from the current directory {os.getcwd()}: run from '
              f'the repository root or give an absolute path)')
    return f'cannot load --{name}={filename}: {lines[-1]}{hint}'
  return None


def _dotted(config, key: str):
  for part in key.split('.'):
    config = config[part]
  return config


def tuple_override_error(argv: Sequence[str], config, name: str = 'config') -> Optional[str]:
  """'--config.agent.critic_hidden_dims=5': config_flags turns a scalar given for a tuple key
  into a one-element tuple (5,) without a word. A tuple key must be given a tuple (or list)."""
  for arg in argv[1:]:
    if not arg.startswith(f'--{name}.') or '=' not in arg:
      continue
    key, value = arg[len(name) + 3:].split('=', 1)
    try:
      current = _dotted(config, key)
      given = ast.literal_eval(value.strip())
    except (KeyError, AttributeError, TypeError, ValueError, SyntaxError):
      continue
    if isinstance(current, tuple) and not isinstance(given, (tuple, list)):
      example = repr((given,)).replace(' ', '')
      return (f"--{name}.{key}={value}: config.{key} is a tuple; give a tuple, e.g. "
              f"--{name}.{key}='{example}' for one element")
  return None


def parse_flags(argv, flag_values=flags.FLAGS, config_flag: Optional[str] = 'config',
                default_config: Optional[str] = None):
  """flag_values(argv) with every error as one line on stderr, exit 2 (an absl flags_parser)."""
  for name, message in _PENDING.items():
    if any(re.match(rf'--{name}\.', a) for a in argv[1:]) or name not in flag_values:
      fail(message)
  try:
    rest = flag_values(argv)
  except (KeyError, AttributeError) as e:   # config_flags: a --config.<key> that does not exist
    fail(unknown_config_key(e, argv, config_flag or 'config', default_config))
  except Exception as e:  # pylint: disable=broad-except  (flags.Error, config file errors)
    fail(e)
  if config_flag and config_flag in flag_values:
    error = (config_load_error(flag_values, config_flag)
             or tuple_override_error(argv, flag_values[config_flag].value, config_flag))
    if error:
      fail(error)
  if 'verbosity' in flags.FLAGS and flags.FLAGS['verbosity'].using_default_value:
    absl_logging.set_verbosity(absl_logging.WARNING)   # no INFO lines (jax's TPU probe, ...)
  return rest


def run(main, flag_values=flags.FLAGS, config_flag: Optional[str] = None,
        default_config: Optional[str] = None):
  """app.run(main) for a CLI without positional arguments: a bad or unknown flag and a stray
  argument are each one line on stderr and exit 2 (absl's own handling prints the usage text
  or a second line, and exits 1)."""
  from absl import app  # pylint: disable=g-import-not-at-top

  def parser(argv):
    rest = parse_flags(argv, flag_values, config_flag, default_config)
    if len(rest) > 1:
      fail(f'unexpected arguments: {rest[1:]}')
    return rest

  app.run(main, flags_parser=parser)
