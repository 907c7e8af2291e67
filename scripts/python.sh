#!/usr/bin/env bash
# Print the absolute path of a Python interpreter >= 3.12 (the project's
# requires-python), for creating the virtualenv.
#
# Order: $PYTHON (must be new enough, no fallback), then python3.13,
# python3.12, python3 on PATH, then pyenv installs under
# ${PYENV_ROOT:-$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3, highest first.
#
# Every candidate is actually executed (pyenv shims on PATH may exist but
# refuse to run), and the interpreter's own sys.executable is printed, so
# the result does not depend on the current pyenv selection.
set -euo pipefail

MIN_MAJOR=3
MIN_MINOR=12

# Prints sys.executable and returns 0 when $1 runs and is new enough.
probe() {
    "$1" - "$MIN_MAJOR" "$MIN_MINOR" 2>/dev/null <<'PY'
import sys
need = (int(sys.argv[1]), int(sys.argv[2]))
if sys.version_info[:2] < need or not sys.executable:
    sys.exit(1)
print(sys.executable)
PY
}

if [[ -n "${PYTHON:-}" ]]; then
    if ! command -v -- "$PYTHON" >/dev/null 2>&1; then
        echo "error: PYTHON=$PYTHON not found or not executable" >&2
        exit 1
    fi
    if ! probe "$PYTHON"; then
        ver=$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null || echo "unknown")
        echo "error: PYTHON=$PYTHON is Python $ver; StreetLoop needs Python >= $MIN_MAJOR.$MIN_MINOR" >&2
        exit 1
    fi
    exit 0
fi

for name in python3.13 python3.12 python3; do
    if command -v "$name" >/dev/null 2>&1 && probe "$name"; then
        exit 0
    fi
done

pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
if [[ -d "$pyenv_root/versions" ]]; then
    shopt -s nullglob
    cands=("$pyenv_root"/versions/3.1[2-9]*/bin/python3)
    shopt -u nullglob
    if ((${#cands[@]})); then
        while IFS= read -r cand; do
            [[ -x "$cand" ]] && probe "$cand" && exit 0
        done < <(printf '%s\n' "${cands[@]}" | sort -V -r)
    fi
fi

cat >&2 <<MSG
error: no Python >= $MIN_MAJOR.$MIN_MINOR found.
  Tried: \$PYTHON (unset), python3.13, python3.12, python3 on PATH,
         and $pyenv_root/versions/3.1[2-9]*/bin/python3.
  Fix one of:
    - Debian/Ubuntu with a new enough release: sudo apt-get install python3 python3-venv
      (Debian 12 ships 3.11, which is too old)
    - pyenv: pyenv install 3.12 (https://github.com/pyenv/pyenv)
    - or point at an interpreter: make venv PYTHON=/path/to/python3.12
MSG
exit 1
