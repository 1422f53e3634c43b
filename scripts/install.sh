#!/usr/bin/env bash
# Install ocr-daemon as a systemd service (run as root; `make install` calls this). Idempotent:
#   - a venv in $PREFIX (/opt/ocr-daemon) with this checkout installed (not editable) and the
#     native libraries (OpenSSL 1.1 for the engine) in $PREFIX/native;
#   - /etc/ocr-daemon/ocr-daemon.toml from config/ocr-daemon.toml with the folders pointed at
#     /var/lib/ocr-daemon/... (an existing config is kept untouched);
#   - the unit files (ocr-daemon, ocr-daemon@, ocr-daemon-worker), the sysusers.d and tmpfiles.d
#     snippets; then creates the user and the folders and reloads systemd when it is running;
#   - $BINDIR/ocr-daemon, a symlink to the venv's command, so `ocr-daemon status` works on PATH
#     (without --config it reads /etc/ocr-daemon/ocr-daemon.toml).
# It never enables or starts the service: it prints the line that does.
#
# Environment overrides (defaults in brackets):
#   PREFIX [/opt/ocr-daemon]  CONFDIR [/etc/ocr-daemon]  UNITDIR [/etc/systemd/system]
#   SYSUSERSDIR [/etc/sysusers.d]  TMPFILESDIR [/etc/tmpfiles.d]  PYTHON [first python3.x >= 3.11]
#   BINDIR [/usr/local/bin]
# pip honours its own environment too, e.g. PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels for an offline
# install from a wheelhouse.
set -euo pipefail
umask 022

src=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/ocr-daemon}
CONFDIR=${CONFDIR:-/etc/ocr-daemon}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
BINDIR=${BINDIR:-/usr/local/bin}
DATADIR=/var/lib/ocr-daemon  # the folders in the units and tmpfiles snippet; not configurable here

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo make install)"

find_python() {
  for py in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys, ensurepip, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

# 1. The venv, with the checkout installed from a private copy (the checkout may be read-only,
#    and a build must not leave root-owned build/ or egg-info folders in it).
py=$(find_python || true)
if [ -z "$py" ] && command -v apt-get >/dev/null; then
  say "installing python3 and python3-venv with apt-get"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv >/dev/null
  py=$(find_python || true)
fi
[ -n "$py" ] || die "needs Python >= 3.11 with venv and ensurepip (Debian: apt-get install python3 python3-venv)"
if [ ! -x "$PREFIX/bin/python" ]; then
  say "creating the venv $PREFIX with $py"
  "$py" -m venv "$PREFIX"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$src" --exclude=./.venv --exclude=./.git --exclude=./var --exclude='*.egg-info' \
    --exclude=./build --exclude=__pycache__ --exclude=./.mypy_cache --exclude=./.ruff_cache \
    --exclude=./.pytest_cache -cf - . | tar -C "$work" -xf -
say "installing ocr-daemon from $src into $PREFIX"
"$PREFIX/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --upgrade "$work"
[ -x "$PREFIX/bin/ocr-daemon" ] || die "pip did not install $PREFIX/bin/ocr-daemon"
# On PATH through a symlink, never over a command that is not ours.
if [ -e "$BINDIR/ocr-daemon" ] && [ ! -L "$BINDIR/ocr-daemon" ]; then
  say "warning: left $BINDIR/ocr-daemon alone (not a symlink); the command is $PREFIX/bin/ocr-daemon"
else
  install -d -m 0755 "$BINDIR"
  ln -sfn "$PREFIX/bin/ocr-daemon" "$BINDIR/ocr-daemon"
fi

# 2. Native libraries next to the venv (the daemon's runtime module preloads them from there).
PYTHON="$PREFIX/bin/python" bash "$src/scripts/provision-native.sh" "$PREFIX/native"

# 3. The user and group first: the config and the folders belong to them.
install -D -m 0644 "$src/systemd/ocr-daemon.sysusers" "$SYSUSERSDIR/ocr-daemon.conf"
install -D -m 0644 "$src/systemd/ocr-daemon.tmpfiles" "$TMPFILESDIR/ocr-daemon.conf"
if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers "$SYSUSERSDIR/ocr-daemon.conf"
elif ! getent passwd ocr-daemon >/dev/null; then
  say "no systemd-sysusers: creating the user with useradd"
  useradd --system --user-group --home-dir "$DATADIR" --no-create-home \
          --shell /usr/sbin/nologin --comment "ocr-daemon hot-folder OCR service" ocr-daemon
fi
if command -v systemd-tmpfiles >/dev/null; then
  systemd-tmpfiles --create "$TMPFILESDIR/ocr-daemon.conf"
else
  install -d -m 0750 -o ocr-daemon -g ocr-daemon "$DATADIR" "$DATADIR"/{outbox,processed,failed,state}
  install -d -m 2770 -o ocr-daemon -g ocr-daemon "$DATADIR/inbox"
fi

# 4. The config: kept if present; otherwise the example with its folder keys (top-level string
#    keys) rewritten to $DATADIR, comments kept.
config="$CONFDIR/ocr-daemon.toml"
if [ -e "$config" ]; then
  say "keeping the existing $config"
else
  install -d -m 0755 "$CONFDIR"
  if [ -r "$src/config/ocr-daemon.toml" ]; then
    sed -E \
      -e "s|^([[:space:]]*inbox[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$DATADIR/inbox\"|" \
      -e "s|^([[:space:]]*outbox[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$DATADIR/outbox\"|" \
      -e "s|^([[:space:]]*processed[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$DATADIR/processed\"|" \
      -e "s|^([[:space:]]*failed[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$DATADIR/failed\"|" \
      -e "s|^([[:space:]]*state_dir[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\\1\"$DATADIR/state\"|" \
      "$src/config/ocr-daemon.toml" > "$work/ocr-daemon.toml"
  else
    say "warning: $src/config/ocr-daemon.toml missing; writing a config with the folders only"
    printf '# ocr-daemon configuration; every other key has its documented default.\n' > "$work/ocr-daemon.toml"
    for key in inbox outbox processed failed; do
      printf '%s = "%s/%s"\n' "$key" "$DATADIR" "$key" >> "$work/ocr-daemon.toml"
    done
    printf 'state_dir = "%s/state"\n' "$DATADIR" >> "$work/ocr-daemon.toml"
  fi
  # The written config must load and name exactly the folders the units and tmpfiles expect.
  "$PREFIX/bin/python" - "$work/ocr-daemon.toml" "$DATADIR" <<'PY' || die "bad config written"
import sys
from pathlib import Path
from ocr_daemon.config import load_config
config, base = load_config(Path(sys.argv[1])), Path(sys.argv[2])
wanted = {"inbox": "inbox", "outbox": "outbox", "processed": "processed", "failed": "failed",
          "state_dir": "state"}
wrong = [key for key, name in wanted.items() if getattr(config, key) != base / name]
if wrong:
    sys.exit(f"install: error: {', '.join(wrong)} not under {base} in the written config")
PY
  install -m 0640 -o root -g ocr-daemon "$work/ocr-daemon.toml" "$config"
  say "wrote $config"
fi

# 5. The units, pointing at $PREFIX and $CONFDIR if those were overridden.
for unit in ocr-daemon.service ocr-daemon@.service ocr-daemon-worker.service; do
  sed -e "s|/opt/ocr-daemon/|$PREFIX/|g" -e "s|/etc/ocr-daemon/|$CONFDIR/|g" \
      "$src/systemd/$unit" > "$work/$unit"
  install -D -m 0644 "$work/$unit" "$UNITDIR/$unit"
done
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

say "installed. Start it now and at every boot with:"
echo "  systemctl enable --now ocr-daemon"
