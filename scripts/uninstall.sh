#!/usr/bin/env bash
# Remove what scripts/install.sh installed (run as root; `make uninstall` calls this):
# stops and disables ocr-daemon.service, ocr-daemon-worker.service and every ocr-daemon@ instance,
# removes the unit files, the sysusers.d and tmpfiles.d snippets, the venv in $PREFIX and the
# $BINDIR/ocr-daemon symlink to it.
# Kept on purpose, and said so at the end:
#   - /etc/ocr-daemon (your configuration, with any edits);
#   - /var/lib/ocr-daemon and every folder in it (inbox, outbox, processed, failed, state): their
#     contents are your documents;
#   - the ocr-daemon user and group (files still belong to them; userdel ocr-daemon to remove).
# Takes the same PREFIX, CONFDIR, UNITDIR, SYSUSERSDIR, TMPFILESDIR, BINDIR overrides as install.sh.
set -euo pipefail

PREFIX=${PREFIX:-/opt/ocr-daemon}
CONFDIR=${CONFDIR:-/etc/ocr-daemon}
UNITDIR=${UNITDIR:-/etc/systemd/system}
SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
TMPFILESDIR=${TMPFILESDIR:-/etc/tmpfiles.d}
BINDIR=${BINDIR:-/usr/local/bin}

say() { printf 'uninstall: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "uninstall: error: run as root (sudo make uninstall)" >&2; exit 1; }

# The instances that are enabled (symlinks in *.wants/) or loaded right now.
instances() {
  find "$UNITDIR" -path '*.wants/ocr-daemon@*.service' -printf '%f\n' 2>/dev/null || true
  if [ -d /run/systemd/system ]; then
    systemctl list-units --all --plain --no-legend 'ocr-daemon@*.service' 2>/dev/null | awk '{print $1}'
  fi
}
units=$( { echo ocr-daemon.service; echo ocr-daemon-worker.service; instances; } | sort -u)

if [ -d /run/systemd/system ]; then
  for unit in $units; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
else
  for unit in $units; do  # no running systemd: remove the enablement symlinks by hand
    find "$UNITDIR" -path "*.wants/$unit" -type l -delete 2>/dev/null || true
  done
fi

rm -f "$UNITDIR/ocr-daemon.service" "$UNITDIR/ocr-daemon@.service" "$UNITDIR/ocr-daemon-worker.service" \
      "$SYSUSERSDIR/ocr-daemon.conf" "$TMPFILESDIR/ocr-daemon.conf"
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed 'ocr-daemon*' >/dev/null 2>&1 || true
fi
if [ "$(readlink "$BINDIR/ocr-daemon" 2>/dev/null)" = "$PREFIX/bin/ocr-daemon" ]; then
  rm -f "$BINDIR/ocr-daemon"  # only our symlink, never a command installed otherwise
fi
if [ -x "$PREFIX/bin/python" ] && [ -e "$PREFIX/pyvenv.cfg" ]; then
  rm -rf "$PREFIX"
  say "removed $PREFIX"
elif [ -e "$PREFIX" ]; then
  say "left $PREFIX alone: it is not a venv made by install.sh"
fi

say "removed the service. Kept: $CONFDIR (your configuration), /var/lib/ocr-daemon and all of"
say "its folders with their files, and the ocr-daemon user and group (userdel ocr-daemon removes them)."
