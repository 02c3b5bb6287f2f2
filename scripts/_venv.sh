# Sourced by scripts/test and scripts/mpc-agent: make sure the virtualenv exists
# and holds this project (re-installs when pyproject.toml changed).
# MPC_VENV overrides the location (.ci/run uses a fresh one).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MPC_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
stamp="$VENV/.mpc-agent-installed${EXTRAS:+-$EXTRAS}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing mpc-agent${EXTRAS:+[$EXTRAS]} into $VENV ..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" >&2
    touch "$stamp"
fi
