#!/usr/bin/env bash
# The GPU suite in one command, on a machine with jax, equinox, optax (and torch) but no internet:
#
#     bash benchmarks/gpu_suite.sh OUT_DIR [gpu_suite.py options]
#
# pidx runs from this source tree (PYTHONPATH), so nothing is installed. Packages pidx needs that
# such an image may lack (beartype, uproot and its awkward/cramjam) are installed from wheels in
# .whl/ when that folder exists (see benchmarks/README.md for how to fetch them); anything still
# missing is named before the suite starts.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bash benchmarks/gpu_suite.sh OUT_DIR [options]}"
shift
python=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pidx-site .whl/*.whl
    export PYTHONPATH="/tmp/pidx-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=$("$python" - <<'PY'
import importlib.util
need = ["jax", "equinox", "optax", "jaxtyping", "beartype", "numpy", "pandas", "pyarrow", "sklearn", "scipy",
        "uproot", "yaml", "rich", "typer", "matplotlib", "onnx", "onnxruntime"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu_suite: missing Python packages: $missing (put their wheels in .whl/, see benchmarks/README.md)" >&2
    exit 2
fi
"$python" -c "import jax; print('jax', jax.__version__, jax.devices())"
exec "$python" benchmarks/gpu_suite.py "$out" "$@"
