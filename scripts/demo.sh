#!/usr/bin/env bash
# `make demo`: run what the project can do today, end to end, on generated data.
# Generates a synthetic TGS-format dataset, validates it, writes the depth folds, scores
# a trivial (all-empty) prediction with the competition metric, then trains the tiny
# b.e.s. and phalanx stage-1 networks on fold 0 (the tiny profile: proves the code runs).
# Prediction, pseudo-labels and the ensemble join this demo when the pipeline lands.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SALTSEG="$VENV/bin/saltseg"
PY="$VENV/bin/python"
OUT=${DEMO_DIR:-data/demo}

echo "== 1/5 synthetic seismic tiles -> $OUT"
"$SALTSEG" synth --out "$OUT" --n-train 400 --n-test 200 --seed 0 --preview

echo "== 2/5 validate the folder (PNGs, CSVs, RLE against masks)"
"$SALTSEG" check "$OUT"

echo "== 3/5 depth-sorted folds (rank mod 5)"
"$SALTSEG" folds --data "$OUT" --out "$OUT/folds.csv"

echo "== 4/5 score a trivial all-empty prediction of the labelled tiles"
"$PY" - "$OUT" <<'PYCODE'
import sys
from pathlib import Path

import numpy as np

from saltseg.submission import read_rle_csv, write_rle_csv

out = Path(sys.argv[1])
ids, truth = read_rle_csv(out / "train.csv")
write_rle_csv(out / "prediction_all_empty.csv", ids, np.zeros_like(truth))
PYCODE
"$SALTSEG" eval "$OUT/train.csv" "$OUT/prediction_all_empty.csv"

echo "== 5/5 train the tiny stage-1 networks of both families on fold 0 (tiny profile)"
cat > "$OUT/SETTINGS.json" <<'JSON'
{
  "DATA_DIR": ".",
  "BES_WEIGHTS_DIR": "weights/bes",
  "PHALANX_WEIGHTS_DIR": "weights/phalanx",
  "PREDICTIONS_DIR": "predictions",
  "PROFILE": "tiny"
}
JSON
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
"$SALTSEG" --settings "$OUT/SETTINGS.json" train --family bes --stage stage1 --verbose 0
"$SALTSEG" --settings "$OUT/SETTINGS.json" train --family phalanx --stage stage1 --verbose 0

echo
echo "demo: done. Outputs in $OUT (preview.png, folds.csv, prediction_all_empty.csv, weights/)."
echo "demo: prediction, pseudo-labelling and the ensemble are not part of this demo yet."
