#!/usr/bin/env bash
# Install NNCodec 2.1.3 (MPEG NNC reference codec) as an optional lossy baseline for fzpack,
# without ever replacing the installed torch or numpy. Idempotent: rerunning is a quick no-op.
#
#   bash benchmarks/install_nncodec.sh          # uses python3; PYTHON=/path/to/python overrides
#
# Why each step exists: docs/nncodec.md.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
NNCODEC_VERSION="2.1.3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

die() { echo "install_nncodec.sh: ERROR: $*" >&2; exit 1; }
say() { echo "install_nncodec.sh: $*"; }

# The same check fzpack uses at run time (torchvision shim included), plus a 2-tensor round trip.
check() {
    PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'EOF'
import sys, torch
from fzpack.baselines import nncodec_row as r
why = r.available()
if why is not None:
    print(why); sys.exit(1)
sd = {"fc.weight": torch.linspace(-1, 1, 300).reshape(20, 15), "fc.bias": torch.linspace(-.1, .1, 20)}
out = r.decode(r.encode(sd, qp=-38), sd)
err = max(float((out[k] - sd[k]).abs().max()) for k in sd)
if err > 0.05:
    print(f"round trip error {err} too large"); sys.exit(1)
from importlib.metadata import version
print(f"nncodec {version('nncodec')} OK (round-trip max abs err {err:.2e})")
EOF
}

command -v "$PYTHON" >/dev/null || die "python not found: $PYTHON (set PYTHON=...)"
TORCH_V="$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    || die "torch is not importable with $PYTHON; install fzpack's dependencies first"
NUMPY_V="$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null)" \
    || die "numpy is not importable with $PYTHON"
say "keeping torch $TORCH_V and numpy $NUMPY_V"

if [ "$("$PYTHON" -m pip show nncodec 2>/dev/null | sed -n 's/^Version: //p' || true)" = "$NNCODEC_VERSION" ] \
    && OK="$(check 2>&1)"; then
    say "nncodec $NNCODEC_VERSION already installed and working; nothing to do"
    echo "$OK"
    exit 0
fi

# Pins for every pip call below: any resolution that would change torch or numpy fails
# instead of silently installing (e.g.) a CUDA torch.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CONSTRAINTS="$WORK/constraints.txt"
printf 'torch==%s\nnumpy==%s\n' "$TORCH_V" "$NUMPY_V" >"$CONSTRAINTS"
PIP=("$PYTHON" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")

# 1. torchvision: nncodec imports it (dataset helpers only) at import time. It must match torch
#    (torch 2.N <-> torchvision 0.(N+15)); --no-deps so it can never pull another torch. From PyPI
#    this is a CUDA build whose C++ ops do not load beside CPU torch; nncodec_row.py handles that.
TV_WANT="$("$PYTHON" -c 'import torch; a, b = torch.__version__.split("+")[0].split(".")[:2]; print(f"0.{int(b) + 15}")')"
TV_HAVE="$("$PYTHON" -m pip show torchvision 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ -z "$TV_HAVE" ]; then
    say "installing torchvision==$TV_WANT.* (--no-deps)"
    "${PIP[@]}" --no-deps "torchvision==$TV_WANT.*" || die "could not install torchvision==$TV_WANT.*"
elif [ "${TV_HAVE%.*}" != "$TV_WANT" ]; then
    say "WARNING: torchvision $TV_HAVE is installed but torch $TORCH_V wants $TV_WANT.*; leaving it"
fi

# 2. nncodec's import-time dependencies, one at a time, under the pins (their own deps such as
#    scipy/joblib/pandas' dateutil may come along, torch/numpy may not change). opencv-python-headless
#    instead of the declared opencv-python: same cv2 module without the libGL runtime dependency.
#    Not installed (not needed to import or to code tensors): ptflops, torchmetrics, pybind11
#    (build-time only: pip's isolated build env fetches it).
for req in "pillow" "h5py>=3.1.0" "pandas>=1.0.5" "scikit-learn>=0.23.1" \
           "opencv-python-headless>=4.4.0.46" "tqdm>=4.32.2" "click>=7.0"; do
    say "installing $req"
    "${PIP[@]}" "$req" || die "could not install $req without changing torch/numpy"
done

# 3. nncodec itself: sdist with a C++ extension (deepCABAC, pybind11) built by the C++ compiler.
#    --no-deps: its metadata asks for numpy<2 and an unpinned torchvision (which would replace
#    torch); it runs fine with numpy 2.x.
command -v "${CXX:-c++}" >/dev/null || command -v g++ >/dev/null \
    || die "no C++ compiler found (nncodec builds a C++ extension): apt-get install g++"
INC="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
[ -f "$INC/Python.h" ] || die "Python headers missing ($INC/Python.h): apt-get install python3-dev"
say "building nncodec==$NNCODEC_VERSION (C++ extension, ~2 min)"
"${PIP[@]}" --no-deps "nncodec==$NNCODEC_VERSION" >"$WORK/build.log" 2>&1 || {
    tail -n 40 "$WORK/build.log" >&2
    die "building nncodec==$NNCODEC_VERSION failed (log tail above)"
}

# 4. Belt and braces: the pins must have held.
[ "$("$PYTHON" -c 'import torch; print(torch.__version__)')" = "$TORCH_V" ] || die "torch changed!"
[ "$("$PYTHON" -c 'import numpy; print(numpy.__version__)')" = "$NUMPY_V" ] || die "numpy changed!"

check || die "nncodec installed but not usable (see the message above)"
say "done"
