"""Known-harmless warnings of the simulator stack, silenced at the env boundary.

Without a display, `import mujoco` (through ogbench) warns that GLFW found no X11 DISPLAY; and
gymnasium warns when an env declares float64 Box bounds for a float32 space. Neither matters
for state-based training or evaluation (nothing is rendered), and ~6 such lines on stderr would
hide a real error. Call `silence_known_env_warnings()` before importing or building an env.
Everything else still warns.
"""
import warnings

KNOWN_HARMLESS = (
    r'.*The DISPLAY environment variable is missing',       # glfw, at `import mujoco`
    r".*Box (low|high)'s precision lowered by casting to",   # gymnasium.spaces.Box
)


def silence_known_env_warnings() -> None:
  """Install ignore filters for KNOWN_HARMLESS (idempotent; process-wide)."""
  for pattern in KNOWN_HARMLESS:
    warnings.filterwarnings('ignore', message=pattern)
