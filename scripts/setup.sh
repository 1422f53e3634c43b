#!/usr/bin/env bash
# Idempotent set-up: a Python >= 3.11 venv in .venv with ocr-daemon installed editable (with what
# running needs; `setup.sh test` adds the test and lint tools, pyproject's `test` extra), then the
# native libraries (OpenSSL 1.1 for the engine, Tesseract data, DejaVu fonts for the tests).
# Works as root or not; as root on a machine without Python 3.11+/venv it installs them with apt.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
extras=${1:-}  # "" (running) or "test"

find_python() {
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  py=$(find_python || true)
  if [ -z "$py" ] || ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -q && apt-get install -y -q python3 python3-venv || apt-get install -y -q python3.11 python3.11-venv
      py=$(find_python)
    else
      echo "setup needs Python >= 3.11 with venv: sudo apt-get install python3 python3-venv" >&2; exit 1
    fi
  fi
  "$py" -m venv "$venv"
fi
stamp="$venv/.installed${extras:+-$extras}"
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
  touch "$stamp" "$venv/.installed"  # an extra comes with what running needs
fi
PYTHON="$venv/bin/python" bash scripts/provision-native.sh "$venv/native"
