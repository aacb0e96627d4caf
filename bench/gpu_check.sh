#!/usr/bin/env bash
# The prepared GPU check (issue 28), for a person with a GPU; about 5-8 minutes.
#
# For b.e.s. and phalanx v3/v4/v5 at full size: 20 training steps at the recipe's batch in
# float32 and in the GPU's mixed policy (precision auto: bfloat16 from Ampere on, float16
# on Volta/Turing), with tiles/s, peak GPU memory and whether the loss falls on real tiles;
# prediction tiles/s with flip TTA (mixed policy, XLA); the original 38-model ensemble's
# time for 18,000 tiles extrapolated; then the tests that touch the GPU-only code paths
# (native grouped convolution, the GPU precision rule, XLA prediction). Prints one table.
#
# Needs TensorFlow built with CUDA: the project pins tensorflow-cpu, so use a virtualenv
# with the same pins plus `pip install tensorflow[and-cuda]==2.21.0` (or the project's
# GPU container) and point PYTHON at it, and the real data in TGS_DATA.
#
# usage: TGS_DATA=/path/to/tgs-salt [PYTHON=/path/to/python] bench/gpu_check.sh [--steps N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
: "${TGS_DATA:?set TGS_DATA to the competition data (train/images, train/masks, train.csv)}"
export TGS_DATA PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2

"$PYTHON" - <<'PY' || { echo "error: TensorFlow sees no GPU (see the notes at the top)" >&2; exit 2; }
import sys
import tensorflow as tf
sys.exit(0 if tf.config.list_physical_devices("GPU") else 1)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

status=0
timeout 420 "$PYTHON" "$ROOT/bench/_gpu_check.py" "$@" || status=$?
echo
echo "tests on the GPU-only paths:"
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider \
  "$ROOT/tests/test_backends.py" "$ROOT/tests/test_precision.py" \
  "$ROOT/tests/test_models.py::test_grouped_conv_split_equals_native" \
  -k "not onnxruntime" || status=$?
exit "$status"
