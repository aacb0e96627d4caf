#!/usr/bin/env bash
# `make demo`: the whole method, end to end, on generated data, in minutes on a CPU.
#
# Generates a synthetic TGS-format dataset (with hidden labels for its test tiles),
# validates it, runs ./train.sh (three rounds: both families, pseudo-labels, phalanx
# stage 3) and ./predict.sh with the `demo` profile (small networks that learn the
# generated data in minutes; docs/demo.md), scores the submission CSV against
# the hidden test labels with the competition metric (next to the score of an all-empty
# submission, what a network that learnt nothing gets), and draws an overlay of
# predictions. Rerunning resumes: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SALTSEG_BIN="$VENV/bin/saltseg"
OUT=${DEMO_DIR:-data/demo}
N_TRAIN=${DEMO_N_TRAIN:-400}
N_TEST=${DEMO_N_TEST:-200}
PROFILE=${DEMO_PROFILE:-demo}  # tiny: the pipeline's smoke run (networks that learn nothing)
export SALTSEG="$SALTSEG_BIN"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
START=$(date +%s)

echo "== 1/6 synthetic seismic tiles -> $OUT ($N_TRAIN train, $N_TEST test)"
if [[ -f "$OUT/sample_submission.csv" && -f "$OUT/test_truth.csv" ]]; then
  echo "exists: $OUT (delete it for a new one)"
else
  # Salt clearly darker than the sediments: data that networks trained for minutes learn.
  "$SALTSEG_BIN" synth --out "$OUT" --n-train "$N_TRAIN" --n-test "$N_TEST" --seed 0 \
    --salt-contrast 1 --preview
fi

echo "== 2/6 validate the folder (PNGs, CSVs, RLE against masks)"
"$SALTSEG_BIN" check "$OUT"

cat >"$OUT/SETTINGS.json" <<JSON
{
  "DATA_DIR": ".",
  "NEW_TEST_IMAGES_DATA": null,
  "BES_WEIGHTS_DIR": "weights/bes",
  "PHALANX_WEIGHTS_DIR": "weights/phalanx",
  "PREDICTIONS_DIR": "predictions",
  "PROFILE": "$PROFILE"
}
JSON

echo "== 3/6 ./train.sh --profile $PROFILE (rounds 1-3; prints each stage's validation score)"
./train.sh --settings "$OUT/SETTINGS.json" --profile "$PROFILE"

echo "== 4/6 ./predict.sh --profile $PROFILE (b.e.s. stage 2 + phalanx stage 3, mosaics)"
./predict.sh --settings "$OUT/SETTINGS.json" --profile "$PROFILE"

CSV="$OUT/predictions/test_prediction.csv"
EMPTY_CSV="$OUT/predictions/all_empty_prediction.csv"
echo "== 5/6 score the submission against the generator's hidden test labels"
EVAL="$("$SALTSEG_BIN" eval "$OUT/test_truth.csv" "$CSV")"
echo "$EVAL"
SCORE="$(sed -n 's/^score: //p' <<<"$EVAL")"
N_TILES="$(sed -n 's/^images: //p' <<<"$EVAL")"
# The same metric for a submission that predicts every tile empty: the share of empty
# tiles, the score of a network that has learnt nothing (1 on an empty tile, 0 elsewhere).
awk -F, 'NR == 1 { print "id,rle_mask"; next } { print $1 "," }' "$OUT/test_truth.csv" >"$EMPTY_CSV"
EMPTY_SCORE="$("$SALTSEG_BIN" eval "$OUT/test_truth.csv" "$EMPTY_CSV" | sed -n 's/^score: //p')"
echo "all-empty submission: score $EMPTY_SCORE"

echo "== 6/6 overlays of predictions (worst and best tiles) and the score per coverage"
"$SALTSEG_BIN" review "$CSV" --truth "$OUT/test_truth.csv" --data "$OUT" --out "$OUT/review"

echo
echo "demo: done in $(($(date +%s) - START)) s."
echo "demo: submission $CSV; overlays $OUT/review/review_overlays.png;"
echo "demo: validation scores in the train.sh output above (out-of-fold, per stage)."
echo "score: $SCORE = the competition metric (per tile, the precision at IoU thresholds"
echo "  0.50-0.95; the mean over tiles) on the $N_TILES generated test tiles' hidden labels;"
echo "  1.0 is perfect; an all-empty prediction scores $EMPTY_SCORE on this data."
if awk -v a="$SCORE" -v b="$EMPTY_SCORE" 'BEGIN { exit !(a > b) }'; then
  echo "demo: the networks beat the all-empty prediction by $(awk -v a="$SCORE" -v b="$EMPTY_SCORE" 'BEGIN { printf "%.3f", a - b }')."
else
  echo "demo: not above the all-empty prediction: networks that learnt too little (the tiny"
  echo "  profile trains each for a dozen steps: it proves the pipeline runs, not a model)."
fi
echo "demo: the $PROFILE profile's small networks on generated data whose salt is darker than"
echo "  on real seismic; the real data's results per profile are in the README."
