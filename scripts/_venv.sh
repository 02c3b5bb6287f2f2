# Sourced by scripts/test and scripts/mpc-agent: make sure the virtualenv exists
# and holds this project (re-installs when pyproject.toml changed).
# MPC_VENV overrides the location (.ci/run uses a fresh one).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MPC_VENV:-$ROOT/.venv}"
EXTRAS="${MPC_EXTRAS:-}"  # set by the caller (not $1: a sourced script sees the caller's arguments)
stamp="$VENV/.mpc-agent-installed${EXTRAS:+-$EXTRAS}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing mpc-agent${EXTRAS:+[$EXTRAS]} into $VENV (log: $VENV/install.log) ..." >&2
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
           && "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"; } \
           >"$VENV/install.log" 2>&1; then
        tail -n 40 "$VENV/install.log" >&2
        echo "error: installing mpc-agent failed (full log: $VENV/install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
