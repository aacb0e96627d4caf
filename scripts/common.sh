# Shared by train.sh and predict.sh (sourced, not run): options, the saltseg command, steps.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
PROFILE_ARGS=()
SETTINGS="${SALTSEG_SETTINGS:-$ROOT/SETTINGS.json}"

# The saltseg command: the project's .venv when there is one, else the installed one.
if [[ -n "${SALTSEG:-}" ]]; then
  read -r -a SALTSEG_CMD <<<"$SALTSEG"
elif [[ -x "$ROOT/.venv/bin/saltseg" ]]; then
  SALTSEG_CMD=("$ROOT/.venv/bin/saltseg")
elif command -v saltseg >/dev/null 2>&1; then
  SALTSEG_CMD=(saltseg)
else
  SALTSEG_CMD=(python3 -m saltseg)
fi
# The Python that runs saltseg's own scripts (train.sh's job runner): $SALTSEG_PYTHON, else
# the project's .venv, else python3.
if [[ -n "${SALTSEG_PYTHON:-}" ]]; then
  read -r -a SALTSEG_PYTHON <<<"$SALTSEG_PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
  SALTSEG_PYTHON=("$ROOT/.venv/bin/python")
else
  SALTSEG_PYTHON=(python3)
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

die() {
  echo "error: $*" >&2
  exit 2
}

saltseg() {
  "${SALTSEG_CMD[@]}" --settings "$SETTINGS" "$@"
}

# A setting's resolved value (paths absolute), e.g. setting PREDICTIONS_DIR.
setting() {
  saltseg settings | sed -n "s/^$1: //p"
}

STEP=0
step() {
  STEP=$((STEP + 1))
  echo
  echo "== [$STEP] $* ($(date -u +%H:%M:%S))"
}

# True when file $1 exists and is newer than every other argument.
fresh() {
  local out=$1
  shift
  [[ -f "$out" ]] || return 1
  local input
  for input in "$@"; do
    [[ "$out" -nt "$input" ]] || return 1
  done
}

# The stage name of a recipe file (its top-level "stage:" key).
recipe_stage() {
  [[ -f "$1" ]] || die "$1: recipe file not found"
  local stage
  stage="$(sed -n 's/^stage: *\([a-z0-9_]*\).*/\1/p' "$1" | head -n 1)"
  [[ -n "$stage" ]] || die "$1: no top-level 'stage:' in this recipe"
  echo "$stage"
}

# The profile in use: --profile when given, else SETTINGS.json's PROFILE.
current_profile() {
  if [[ ${#PROFILE_ARGS[@]} -gt 0 ]]; then echo "${PROFILE_ARGS[1]}"; else setting PROFILE; fi
}
