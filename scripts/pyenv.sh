#!/usr/bin/env bash
# Creates (once) the Python venv the real-client tests use, at target/pyenv,
# with the exact packages of tests/clients/requirements.txt (and their
# dependencies at the versions of constraints.txt), and prints the venv's
# python as the last line of stdout.
#
# Idempotent and fast when nothing changed: a stamp file holds the hash of
# the requirements and constraints and the version of the python that made
# the venv; a mismatch reinstalls. Concurrent callers (several test
# binaries, several builders) are serialized with flock on
# target/pyenv.lock.
#
# Needs python3 with the venv module (Debian: python3-venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/pyenv"
req="$root/tests/clients/requirements.txt"
constraints="$root/tests/clients/constraints.txt"
stamp="$venv/.odock-stamp"

command -v python3 >/dev/null || { echo "pyenv.sh: python3 is not installed" >&2; exit 1; }
mkdir -p "$root/target"

exec 9>"$root/target/pyenv.lock"
flock 9

want="$(cat "$req" "$constraints" | sha256sum | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

echo "pyenv.sh: creating $venv from $req" >&2
rm -rf "$venv"
if ! python3 -m venv "$venv" >&2; then
  echo "pyenv.sh: 'python3 -m venv' failed (Debian: apt-get install python3-venv)" >&2
  exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2; then
  echo "pyenv.sh: installing $req into $venv failed" >&2
  exit 1
fi
echo "$want" >"$stamp"
echo "$venv/bin/python"
