#!/usr/bin/env bash
# Rebuild the Python 3.12 manylinux wheels that launch/gpu_check.sh installs on a GPU machine
# without a package index (it has jax+CUDA, flax, optax, orbax, chex, absl, numpy, scipy, lxml,
# protobuf, requests, tqdm, etils, setuptools, typing-extensions, cloudpickle, matplotlib, h5py).
# dm_control is repacked without its suite / locomotion / test assets (ogbench imports only
# dm_control.mjcf and dm_control.viewer.user_input), which takes it from 56 MB to ~2 MB.
#
#   bash launch/make_gpu_wheels.sh [DIR]     # default DIR: ./.whl (git-ignored; copy it with
#                                            # the repository to the GPU machine, docs/gpu.md)
# PYVER=3.11 bash launch/make_gpu_wheels.sh /tmp/w311 builds the same set for a local check.
set -euo pipefail
DIR="${1:-.whl}"
RAW="$(mktemp -d)"
mkdir -p "$DIR"
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64 --platform any)
PACKAGES=(mujoco==4.0.0 mujoco-core==4.0.0 ogbench==1.2.2 dm-control==1.0.50 dm-env==1.6
          dm-tree==0.1.10 labmaze==1.0.6 glfw==2.11.0 gymnasium==1.4.0
          farama-notifications==0.0.6 pyopengl==3.1.10 ml-collections==1.1.0 attrs==26.1.0
          wrapt==2.5.2 pyyaml==6.0.4)
for spec in "${PACKAGES[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
    --implementation cp "${PLATFORMS[@]}" -d "$RAW" "$spec"
done
python3 - "$RAW" "$DIR" <<'PY'
"""Copy the wheels into DIR; repack dm_control without its large unused subpackages."""
import base64, hashlib, os, shutil, sys, zipfile

raw, out = sys.argv[1:3]
DROP = ('dm_control/suite/', 'dm_control/locomotion/', 'dm_control/mujoco/testing/',
        'dm_control/blender/', 'dm_control/manipulation/', 'dm_control/entities/')


def record_line(name, data):
  digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
  return f'{name},sha256={digest},{len(data)}'


for name in sorted(os.listdir(raw)):
  src = os.path.join(raw, name)
  if not name.startswith('dm_control-'):
    shutil.copy(src, os.path.join(out, name))
    continue
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(os.path.join(out, name), 'w',
                                                    zipfile.ZIP_DEFLATED) as zout:
    record_name = next(n for n in zin.namelist() if n.endswith('.dist-info/RECORD'))
    lines = []
    for info in zin.infolist():
      if info.filename == record_name or info.filename.startswith(DROP):
        continue
      data = zin.read(info.filename)
      zout.writestr(info, data)
      lines.append(record_line(info.filename, data))
    lines.append(f'{record_name},,')
    zout.writestr(record_name, '\n'.join(lines) + '\n')
PY
rm -rf "$RAW"
du -ch "$DIR"/*.whl | tail -1
