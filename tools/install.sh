#!/usr/bin/env bash
# One-step install of the pinned OpenMMLab stack into a virtual environment.
#
#   bash tools/install.sh            # or: make install
#
# Environment:
#   VENV=path          virtual environment to create or reuse (default: <repo>/.venv)
#   PYTHON=python3.11  interpreter used to create it (default: python3)
#   WHEELHOUSE=path    where the built mmcv wheel is cached (default: ~/.cache/posfield-wheels)
#   MAX_JOBS=N         parallel compile jobs for mmcv (default: number of cores)
#   SKIP_OPTIONAL=1    skip requirements/optional.txt (Grad-CAM, EfficientNet-Lite0 baseline)
#
# Idempotent: a second run only checks what is there. mmcv 2.1.0 has no wheel on PyPI for
# CPython 3.11 + torch 2.14, so it is built from the sdist (about 11 minutes on 2 cores, peak ~3 GB),
# with two fixes that docs/install.md explains: setuptools < 81 and -std=c++20.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
WHEELHOUSE="${WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/posfield-wheels}"
MAX_JOBS="${MAX_JOBS:-$(nproc)}"
MMCV_VERSION=2.1.0
LOG_DIR="$VENV/build-logs"

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[install] error:\033[0m %s\n' "$*" >&2; exit 1; }

# ---- early checks -------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "interpreter '$PYTHON' not found; set PYTHON=/path/to/python3.11"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$PYVER" in
  3.10|3.11|3.12) ;;
  *) die "Python $PYVER is not supported: mmcv $MMCV_VERSION / mmdet 3.3.0 need 3.10-3.12 (set PYTHON=...)";;
esac
command -v c++ >/dev/null || command -v g++ >/dev/null || \
  die "no C++ compiler found: mmcv's ops are compiled (Debian/Ubuntu: apt-get install -y g++)"
mkdir -p "$(dirname "$VENV")"
FREE_MB="$(df -Pm "$(dirname "$VENV")" | awk 'NR==2 {print $4}')"
if [ ! -x "$VENV/bin/python" ] && [ "${FREE_MB:-0}" -lt 9000 ]; then
  die "only ${FREE_MB} MB free under $(dirname "$VENV"); the environment needs about 9 GB (torch's CUDA wheel is 5.5 GB)"
fi

# Headless Chromium renders the default job's report.html in its test. Under CI it must be there; elsewhere a
# missing Chromium (no root, no apt) only skips that test.
ensure_chromium() {
  if [ "${CI:-}" = true ]; then
    bash "$ROOT/tools/ci/install_chromium.sh" || die "could not install chromium (needed by the report test under CI)"
  else
    bash "$ROOT/tools/ci/install_chromium.sh" \
      || say "warning: chromium not installed; the report rendering test will be skipped"
  fi
}

# ---- virtual environment ------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV (Python $PYVER)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
mkdir -p "$LOG_DIR"

if "$PY" - <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
need = {"torch": "2.14.1", "mmengine": "0.10.7", "mmcv": "2.1.0", "mmdet": "3.3.0", "mmpretrain": "1.2.0"}
ok = all(md.version(k).split("+")[0] == v for k, v in need.items())
import mmcv.ops, mmdet.models, mmpretrain.models  # noqa: E401,F401
sys.exit(0 if ok else 1)
EOF
then
  say "stack already installed in $VENV; checking the remaining requirements"
  "${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
  [ "${SKIP_OPTIONAL:-0}" = 1 ] || "${PIP[@]}" install -q -r "$ROOT/requirements/optional.txt"
  ensure_chromium
  say "ok"
  exit 0
fi

say "installing build requirements and torch (torch's wheel is large; this takes a few minutes)"
"${PIP[@]}" install -q --upgrade "pip>=23.2" >/dev/null
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt"

# ---- mmcv with ops, from a cached wheel or a fresh build -----------------------------------
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
CUDA_TAG=cpu
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)' 2>/dev/null \
   && command -v nvcc >/dev/null; then
  CUDA_TAG="cu$("$PY" -c 'import torch; print(torch.version.cuda.replace(".", ""))')"
fi
KEY="py${PYVER}-torch${TORCH_TAG}-${CUDA_TAG}"
CACHE="$WHEELHOUSE/$KEY"
mkdir -p "$CACHE"
WHEEL="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$WHEEL" ]; then
  BUILD="$(mktemp -d)"
  BLOG="$LOG_DIR/mmcv-build.log"
  say "building mmcv $MMCV_VERSION with ops ($KEY, $MAX_JOBS jobs); about 11 minutes on 2 cores; log: $BLOG"
  "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$BUILD" \
    || die "could not download the mmcv $MMCV_VERSION sdist from PyPI"
  tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  # torch >= 2.13 headers need C++20; mmcv 2.1.0 hard-codes C++17 (C++ and nvcc flags alike).
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q 'std=c++20' "$SRC/setup.py" || die "could not patch mmcv's setup.py for C++20"
  export MMCV_WITH_OPS=1 MAX_JOBS
  if [ "$CUDA_TAG" != cpu ]; then export FORCE_CUDA=1; fi
  if ! "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$BUILD/dist" "$SRC" >"$BLOG" 2>&1; then
    tail -n 40 "$BLOG" >&2
    die "mmcv build failed (last 40 lines above; full log: $BLOG)"
  fi
  cp "$BUILD"/dist/mmcv-*.whl "$CACHE"/
  rm -rf "$BUILD"
  WHEEL="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
  say "cached $WHEEL"
else
  say "using cached mmcv wheel $WHEEL"
fi
"${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL"
# mmcv's own runtime needs (it was installed with --no-deps).
"${PIP[@]}" install -q addict packaging pyyaml yapf

"${PIP[@]}" install -q -r "$ROOT/requirements/tests.txt"
if [ "${SKIP_OPTIONAL:-0}" != 1 ]; then
  "${PIP[@]}" install -q -r "$ROOT/requirements/optional.txt"
  # grad-cam pulls the GUI opencv-python, which shares the cv2 folder with the headless build and needs libGL:
  # put the headless files back on top so `import cv2` works on machines without a display stack.
  CV_VER="$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
  "${PIP[@]}" install -q --force-reinstall --no-deps "opencv-python-headless==$CV_VER"
fi

# ---- verify -------------------------------------------------------------------------------
say "verifying imports"
"$PY" - <<'EOF' || die "the installed stack does not import (see the traceback above)"
import cv2, torch, mmengine, mmcv, mmdet, mmpretrain
import mmcv.ops, mmdet.models, mmpretrain.models  # noqa: F401
print(f"torch {torch.__version__}  mmengine {mmengine.__version__}  mmcv {mmcv.__version__}  "
      f"mmdet {mmdet.__version__}  mmpretrain {mmpretrain.__version__}  cuda {torch.cuda.is_available()}")
EOF
ensure_chromium
say "done: activate with 'source $VENV/bin/activate'"
