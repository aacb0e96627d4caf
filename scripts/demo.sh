#!/usr/bin/env bash
# `make demo`: run what the project can do today, end to end, on generated data.
# Generates a synthetic TGS-format dataset, validates it, writes the depth folds,
# scores a trivial (all-empty) prediction with the competition metric.
# Training and prediction join this demo when the pipeline lands (train.sh / predict.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SALTSEG="$VENV/bin/saltseg"
PY="$VENV/bin/python"
OUT=${DEMO_DIR:-data/demo}

echo "== 1/4 synthetic seismic tiles -> $OUT"
"$SALTSEG" synth --out "$OUT" --n-train 400 --n-test 200 --seed 0 --preview

echo "== 2/4 validate the folder (PNGs, CSVs, RLE against masks)"
"$SALTSEG" check "$OUT"

echo "== 3/4 depth-sorted folds (rank mod 5)"
"$SALTSEG" folds --data "$OUT" --out "$OUT/folds.csv"

echo "== 4/4 score a trivial all-empty prediction of the labelled tiles"
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

echo
echo "demo: done. Outputs in $OUT (preview.png, folds.csv, prediction_all_empty.csv)."
echo "demo: model training and prediction are not part of this demo yet (see the README's status)."
