#!/usr/bin/env bash
# The toy-task studies on a GPU (launch/gpu_check.sh runs this in the background while the
# OGBench data is generated on the CPU cores). Every program is one vmapped run of all its seeds
# (x alphas), at the default toy config. Writes into $1 (default ./gpu_out/toy):
#   alpha/          paper Fig. 2: FQL, ReBRAC x alpha {0.1..1000} x 3 seeds, LPS, DSRL x 3 seeds
#   variant_*/      FQL x alpha and LPS on toy variants (does FQL's best alpha move?)
#   latent_grad/    paper Fig. 3 on the toy: cos(grad_z Q^W, grad_z Q^A(pi_beta(z)))
#   plants.log      the LPS gate (tests/test_toy_gates.py) with each bug of launch/plants planted
# Env: TOY_STEPS (4000), TOY_SEEDS (0,1,2), PLANTS (1), VARIANTS ("support_band=0.12 peak_width=60")
set -u
OUT_DIR="${1:-./gpu_out/toy}"
STEPS="${TOY_STEPS:-4000}"
SEEDS="${TOY_SEEDS:-0,1,2}"
VARIANTS="${VARIANTS:-support_band=0.12 peak_width=60}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
REPO="$PWD"
say() { echo "[toy $(date +%T)] $*"; }

say "alpha study (default toy)"
python3 experiments/alpha_sensitivity.py --workdir="$OUT_DIR/alpha" --alphas=0.1,1,10,100,1000 \
  --seeds="$SEEDS" --agents=lps,fql,rebrac,dsrl --num_steps="$STEPS"
say "alpha study rc=$?"

if [ "${PLANTS:-1}" = "1" ] && [ -d launch/plants ]; then
  for patch in launch/plants/*.patch; do
    name=$(basename "$patch" .patch)
    copy="/tmp/plant_$name"
    rm -rf "$copy"; mkdir -p "$copy"
    cp -r lps_jax tests experiments "$copy"/
    # Apply the one-line patch: each '-' line of the hunk becomes the '+' line that follows it.
    python3 - "$patch" "$copy" <<'EOF'
import sys
patch, root = sys.argv[1], sys.argv[2]
path, old, new = None, [], []
for line in open(patch):
  if line.startswith('+++ b/'):
    path = line[6:].strip()
  elif line.startswith('-') and not line.startswith('---'):
    old.append(line[1:])
  elif line.startswith('+') and not line.startswith('+++'):
    new.append(line[1:])
text = open(f'{root}/{path}').read()
assert ''.join(old) in text, path
open(f'{root}/{path}', 'w').write(text.replace(''.join(old), ''.join(new), 1))
print('planted', path)
EOF
    say "plant $name: LPS gate"
    (cd "$copy" && PYTHONPATH="$copy:${PYTHONPATH:-}" python3 -m pytest -q -p no:cacheprovider \
      tests/test_toy_gates.py -k lps_every 2>&1 | tail -n 15) > "$OUT_DIR/plant_$name.log"
    say "plant $name: $(tail -n 1 "$OUT_DIR/plant_$name.log")"
  done
fi
say "latent-gradient study"
python3 experiments/latent_grad_study.py --workdir="$OUT_DIR/latent_grad" --num_steps="$STEPS"
say "latent-gradient study rc=$?"

for variant in $VARIANTS; do
  key="${variant%%=*}"; value="${variant#*=}"
  say "variant $key=$value"
  python3 experiments/alpha_sensitivity.py --workdir="$OUT_DIR/variant_${key}_${value}" \
    --alphas=0.1,1,10,100,1000 --seeds="$SEEDS" --agents=lps,fql --num_steps="$STEPS" \
    --toy_"$key"="$value"
  say "variant $key=$value rc=$?"
done

say "done"
