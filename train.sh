#!/usr/bin/env bash
# Full retraining: the method's three rounds, from SETTINGS.json's data to the weights.
#
#   round 1: b.e.s. stage 1 and phalanx stage 1 (5 folds each)
#            -> blend of their test predictions -> pseudo-labels (b.e.s. and phalanx rules)
#   round 2: b.e.s. stage 2 and phalanx stage 2 -> blend -> pseudo-labels v2 (all tiles)
#   round 3: phalanx stage 3
# With --profile cpu: one network only, phalanx stage 1's cpu profile (fold 0, a 30-minute
# budget; docs/cpu-profile.md), validated and used to predict the test tiles.
#
# Every step skips work that is complete (finished phases and folds, up-to-date
# predictions and pseudo-labels), so rerunning after a crash resumes where it stopped.
# Each trained stage's out-of-fold validation score is printed.
#
# usage: ./train.sh [--profile full|cpu|demo|tiny] [--settings FILE] [--until 1|2|3]
#                   [--budget-minutes M]   (wall-clock budget per fold; cpu profile: 30)
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

UNTIL=3
BUDGET_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE_ARGS=(--profile "${2:?--profile needs a value}"); shift 2 ;;
    --settings) SETTINGS="${2:?--settings needs a file}"; shift 2 ;;
    --until) UNTIL="${2:?--until needs 1, 2 or 3}"; shift 2 ;;
    --budget-minutes) BUDGET_ARGS=(--budget-minutes "${2:?--budget-minutes needs a number}"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see ./train.sh --help)" ;;
  esac
done
[[ -f "$SETTINGS" ]] || die "$SETTINGS: settings file not found"
[[ "$UNTIL" =~ ^[123]$ ]] || die "--until must be 1, 2 or 3"

PROFILE="$(current_profile)"
PSEUDO_ARGS=()
if [[ "$PROFILE" == tiny || "$PROFILE" == demo ]]; then
  # Networks trained for minutes are rarely confident: keep enough pseudo-labels (the
  # most confident tiles) for the next round to have something to train on.
  PSEUDO_ARGS=(--min-tiles 48)
fi
PRED="$(setting PREDICTIONS_DIR)"
PROBS="$PRED/probs/test"
echo "train.sh: settings $SETTINGS, profile $PROFILE, predictions in $PRED"

train_stage() { # family stage
  step "train $1 $2"
  saltseg train --family "$1" --stage "$2" --all-folds --verbose 0 "${PROFILE_ARGS[@]}" \
    "${BUDGET_ARGS[@]}"
  step "validate $1 $2 (out-of-fold)"
  saltseg predict --family "$1" --stage "$2" --set oof "${PROFILE_ARGS[@]}"
  step "predict the competition test tiles with $1 $2"
  saltseg predict --family "$1" --stage "$2" --competition-test "${PROFILE_ARGS[@]}"
}

blend_round() { # round bes-stage phalanx-stage
  local out="$PROBS/round$1_blend.h5" bes="$PROBS/bes_$2.h5" phalanx="$PROBS/phalanx_$3.h5"
  step "round $1 blend (b.e.s. 0.5 + phalanx min-max 0.5)"
  if fresh "$out" "$bes" "$phalanx"; then
    echo "up to date: $out"
  else
    saltseg ensemble "$bes" "$phalanx" --weights 0.5 0.5 \
      --out "$PRED/round$1_prediction.csv" --out-probs "$out"
  fi
}

pseudo() { # round name [rule]: the full profile cuts and selects as the original did
  local rule=${3:-$2}
  step "round $1 pseudo-labels, $rule rule"
  saltseg pseudo "$PROBS/round$1_blend.h5" --rule "$rule" --out "pseudo/round$1_$2" \
    "${PSEUDO_ARGS[@]}"
}
ORIGINAL_RULES=false  # the full profile: the original's fold slices and all 18,000 tiles
[[ "$PROFILE" == full ]] && ORIGINAL_RULES=true

if [[ "$PROFILE" == cpu ]]; then
  train_stage phalanx stage1
  echo
  echo "train.sh: done (cpu profile: one phalanx network). Predict with ./predict.sh --profile cpu"
  exit 0
fi

train_stage bes stage1
train_stage phalanx stage1
blend_round 1 stage1 stage1
pseudo 1 bes
if [[ "$ORIGINAL_RULES" == true ]]; then pseudo 1 phalanx phalanx_slices; else pseudo 1 phalanx; fi
[[ "$UNTIL" -ge 2 ]] || { echo "train.sh: stopped after round 1 (--until 1)"; exit 0; }

train_stage bes stage2
train_stage phalanx stage2
blend_round 2 stage2 stage2
if [[ "$ORIGINAL_RULES" == true ]]; then pseudo 2 all all_tiles; else pseudo 2 all; fi
[[ "$UNTIL" -ge 3 ]] || { echo "train.sh: stopped after round 2 (--until 2)"; exit 0; }

train_stage phalanx stage3
echo
echo "train.sh: done. Predict with ./predict.sh"
