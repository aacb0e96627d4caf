#!/usr/bin/env bash
# Weights -> predictions/test_prediction.csv: b.e.s. stage 2 and phalanx stage 3 (folds,
# snapshots, flip TTA), blended 0.5 / 0.5 (phalanx min-max normalised), threshold 0.5,
# black tiles empty, then the jigsaw-mosaic post-processing.
#
# The tiles are SETTINGS.json's NEW_TEST_IMAGES_DATA (any folder of 101x101 PNGs; ids
# are the sorted file names) or DATA_DIR/test/images when it is null.
#
# With --profile cpu (or PROFILE cpu): the one network of the cpu profile, phalanx stage 1,
# alone (no blend; b.e.s. has no cpu profile).
#
# With --original: the original 1st-place weights imported by `saltseg weights import`
# (b.e.s. stage "original": 5 folds x 4 stage-2 models; phalanx stage "original" or
# "original_gated", the scSE variant of the import manifest: 5 folds x 3-4 snapshots).
#
# usage: ./predict.sh [--profile full|cpu|demo|tiny] [--settings FILE] [--threshold T] [--original]
#                     [--bes-stage S | --bes-recipe FILE] [--phalanx-stage S | --phalanx-recipe FILE]
#                     [--no-tta] [--no-postprocess] [--mosaic-layout DIR] [--backend B]
# --mosaic-layout: post-process with a mosaic layout in the original's format (a folder of
# grid CSVs such as its data/mos_numpy_v2) instead of the mosaics matched here.
# --backend: auto (default: the fastest backend bench/predict_backends.py found to agree with
# float32 Keras here), keras, keras-bf16, openvino or onnxruntime (docs/backends.md).
# test_prediction.csv is replaced only by the last step, once every step has succeeded
# (the blend goes to a staging CSV beside it); a failure keeps the previous one.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

BES_STAGE=stage2
PHALANX_STAGE=stage3
THRESHOLD=0.5
POSTPROCESS=1
TTA_ARGS=()
BACKEND_ARGS=()
LAYOUT_ARGS=()
BES=(--family bes --stage stage2)
PHALANX=(--family phalanx --stage stage3)
PHALANX_SET=0
ORIGINAL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE_ARGS=(--profile "${2:?--profile needs a value}"); shift 2 ;;
    --settings) SETTINGS="${2:?--settings needs a file}"; shift 2 ;;
    --threshold) THRESHOLD="${2:?--threshold needs a value}"; shift 2 ;;
    --bes-stage) BES_STAGE="${2:?--bes-stage needs a stage}"; BES=(--family bes --stage "$BES_STAGE"); shift 2 ;;
    --phalanx-stage)
      PHALANX_STAGE="${2:?--phalanx-stage needs a stage}"
      PHALANX=(--family phalanx --stage "$PHALANX_STAGE"); PHALANX_SET=1; shift 2 ;;
    --bes-recipe) BES_STAGE="$(recipe_stage "${2:?--bes-recipe needs a file}")"; BES=(--recipe "$2"); shift 2 ;;
    --phalanx-recipe)
      PHALANX_STAGE="$(recipe_stage "${2:?--phalanx-recipe needs a file}")"
      PHALANX=(--recipe "$2"); PHALANX_SET=1; shift 2 ;;
    --original) ORIGINAL=1; shift ;;
    --no-tta) TTA_ARGS=(--no-tta); shift ;;
    --backend) BACKEND_ARGS=(--backend "${2:?--backend needs a value}"); shift 2 ;;
    --no-postprocess) POSTPROCESS=0; shift ;;
    --mosaic-layout) LAYOUT_ARGS=(--layout "${2:?--mosaic-layout needs a folder}"); shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see ./predict.sh --help)" ;;
  esac
done
[[ -f "$SETTINGS" ]] || die "$SETTINGS: settings file not found"

PRED="$(setting PREDICTIONS_DIR)"
IMAGES="$(setting NEW_TEST_IMAGES_DATA)"  # resolved: DATA_DIR/test/images when null
PROBS="$PRED/probs/test"
CSV="$PRED/test_prediction.csv"
BLEND_CSV="$CSV"  # with post-processing: a staging CSV, the mosaic step writes $CSV
if [[ "$POSTPROCESS" == 1 ]]; then
  BLEND_CSV="$PRED/.staging-test_prediction.csv"
  trap 'rm -f "$BLEND_CSV"' EXIT
fi
echo "predict.sh: tiles in $IMAGES -> $CSV ${PROFILE_ARGS[*]}"

if [[ "$ORIGINAL" == 1 ]]; then
  [[ "$(current_profile)" != cpu ]] || die "--original predicts with the original networks: not with --profile cpu"
  BES_STAGE=original
  BES=(--family bes --stage original)
  PHALANX_STAGE="$(saltseg weights stage --family phalanx "${PROFILE_ARGS[@]}")"
  PHALANX=(--family phalanx --stage "$PHALANX_STAGE")
fi

CPU=0
if [[ "$(current_profile)" == cpu ]]; then
  CPU=1
  if [[ "$PHALANX_SET" == 0 ]]; then
    PHALANX_STAGE=stage1
    PHALANX=(--family phalanx --stage stage1)
  fi
else
  step "predict with b.e.s. $BES_STAGE"
  saltseg predict "${BES[@]}" --images "$IMAGES" "${TTA_ARGS[@]}" "${BACKEND_ARGS[@]}" "${PROFILE_ARGS[@]}"
fi
step "predict with phalanx $PHALANX_STAGE"
saltseg predict "${PHALANX[@]}" --images "$IMAGES" "${TTA_ARGS[@]}" "${BACKEND_ARGS[@]}" "${PROFILE_ARGS[@]}"

if [[ "$CPU" == 1 ]]; then
  step "threshold and write the submission (cpu profile: one network)"
  saltseg ensemble "$PROBS/phalanx_$PHALANX_STAGE.h5" --minmax none --threshold "$THRESHOLD" \
    --images "$IMAGES" --out "$BLEND_CSV"
else
  step "blend and write the submission"
  saltseg ensemble "$PROBS/bes_$BES_STAGE.h5" "$PROBS/phalanx_$PHALANX_STAGE.h5" \
    --weights 0.5 0.5 --threshold "$THRESHOLD" --images "$IMAGES" --out "$BLEND_CSV"
fi

if [[ "$POSTPROCESS" == 1 ]]; then
  step "jigsaw-mosaic post-processing"
  saltseg mosaic apply "$BLEND_CSV" --out "$CSV" --test-images "$IMAGES" "${LAYOUT_ARGS[@]}"
fi
echo
echo "predict.sh: wrote $CSV"
