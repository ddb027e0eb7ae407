"""Command-line plumbing shared by every CLI: bad input is one line on stderr and exit code 2.

  one_line(error)                 an exception (even a traceback text) as one line
  fail(error, code)               print 'error: <one line>' and exit
  define_config_file(...)         config_flags.DEFINE_config_file whose errors wait for parse_flags
  parse_flags(argv, flag_values)  absl parsing with every error (incl. config_flags') as one line
  unknown_config_key(...)         '--config.agent.lrr' -> 'unknown config key ...; did you mean ...'
"""
import difflib
import re
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags

EXIT_USAGE = 2
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


def parse_flags(argv, flag_values=flags.FLAGS, config_flag: Optional[str] = 'config',
                default_config: Optional[str] = None):
  """flag_values(argv) with every error as one line on stderr, exit 2 (an absl flags_parser)."""
  for name, message in _PENDING.items():
    if any(re.match(rf'--{name}\.', a) for a in argv[1:]) or name not in flag_values:
      fail(message)
  try:
    return flag_values(argv)
  except (KeyError, AttributeError) as e:   # config_flags: a --config.<key> that does not exist
    fail(unknown_config_key(e, argv, config_flag or 'config', default_config))
  except Exception as e:  # pylint: disable=broad-except  (flags.Error, config file errors)
    fail(e)
