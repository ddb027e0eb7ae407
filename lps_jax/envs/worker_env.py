"""Environment variables for worker processes started inside a block, restored afterwards."""
import contextlib
import os
from typing import Mapping


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str], overwrite: bool = True):
  """Set `values` in os.environ (only the unset ones if not overwrite) for the block.

  Spawned or forked workers started inside the block inherit them; the parent's environment
  is exactly as before once the block ends.
  """
  saved = {k: os.environ.get(k) for k in values}
  for k, v in values.items():
    if overwrite or k not in os.environ:
      os.environ[k] = v
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
