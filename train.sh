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
#                   [--ray auto|ADDRESS] [--gpus-per-job N] [--cpus-per-job N] [--max-retries N]
#                   [--only 'JOB PATTERN']... [--dry-run]
# --ray runs the same jobs on a Ray cluster, one per fold (docs/ray.md); --dry-run prints
# the job graph and what would be skipped; --only runs the jobs whose names match.
# The steps are saltseg/cli/jobs.py's job graph.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/scripts/common.sh"

RUN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE_ARGS=(--profile "${2:?--profile needs a value}"); shift 2 ;;
    --settings) SETTINGS="${2:?--settings needs a file}"; shift 2 ;;
    --until) RUN_ARGS+=(--until "${2:?--until needs 1, 2 or 3}"); shift 2 ;;
    --budget-minutes) RUN_ARGS+=(--budget-minutes "${2:?--budget-minutes needs a number}"); shift 2 ;;
    --ray | --gpus-per-job | --cpus-per-job | --max-retries | --only) RUN_ARGS+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --dry-run) RUN_ARGS+=(--dry-run); shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see ./train.sh --help)" ;;
  esac
done
[[ -f "$SETTINGS" ]] || die "$SETTINGS: settings file not found"
for ((i = 0; i < ${#RUN_ARGS[@]}; i++)); do
  if [[ "${RUN_ARGS[i]}" == --until ]]; then
    [[ "${RUN_ARGS[i + 1]}" =~ ^[123]$ ]] || die "--until must be 1, 2 or 3"
  fi
done

# The jobs run $SALTSEG (scripts/common.sh's saltseg command); the runner is this Python's.
SALTSEG="${SALTSEG_CMD[*]}"
export SALTSEG
exec "${SALTSEG_PYTHON[@]}" -m saltseg --settings "$SETTINGS" run --label train.sh \
  "${PROFILE_ARGS[@]}" "${RUN_ARGS[@]}"
