#!/usr/bin/env bash
# Provision the native pieces ocr-daemon needs but Debian 12 / Ubuntu 22.04+ lack, into DEST:
#   - OpenSSL 1.1 (libssl.so.1.1, libcrypto.so.1.1) for the .NET Core 3.1 runtime bundled with
#     aspose-ocr-python-net, from the first source below that answers with the pinned file;
#   - DejaVu fonts (fonts-dejavu-core) that the tests render their pages with;
#   - Tesseract language data (tesseract-ocr-{eng,osd,fra,deu}, bookworm) for the tesseract
#     engine and page-orientation detection, into DEST/tessdata.
# Debian packages are fetched with apt-get using a *private* source list, lists and cache
# directory, so the system's apt configuration and installed packages are never touched (works as
# root or not). Every download is checked against a pinned SHA-256 before it is unpacked.
#
# OpenSSL 1.1 sources, tried in order (OCR_DAEMON_OPENSSL_SOURCES overrides the list; empty = none):
#   debian-bullseye       libssl1.1 from Debian 11 (patched by Debian; leaves the main archive
#                         some day, or changes when Debian ships a fix: then the next one is used)
#   pypi-psycopg2-binary  the OpenSSL 1.1.1w that psycopg2-binary 2.9.9's wheel carries (PyPI
#                         keeps released files for good); its libraries are renamed libssl-<hash>
#                         so their SONAME is set back to libssl.so.1.1, the name .NET looks up
#   pypi-mysql-connector  the OpenSSL 1.1.1t that mysql-connector-python 8.0.33's wheel carries
# When none answers, set-up still completes: the daemon then runs the Tesseract engine and says so.
# OCR_DAEMON_DEBIAN_MIRROR replaces the Debian mirror (e.g. one that still carries bullseye);
# pip's own settings (PIP_INDEX_URL, a pip.conf) choose where the wheels come from.
#
# usage: scripts/provision-native.sh DEST     (idempotent; DEST is e.g. .venv/native)
#        PYTHON=.venv/bin/python (default python3) runs pip and unpacks the wheels
set -euo pipefail

dest=${1:?usage: provision-native.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
python=${PYTHON:-python3}
mirror=${OCR_DAEMON_DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=$(uname -m)
openssl_sources=${OCR_DAEMON_OPENSSL_SOURCES-debian-bullseye pypi-psycopg2-binary pypi-mysql-connector}

# package  sha256  suite   (bookworm: the fonts and the Tesseract data, any architecture)
pins=(
  "fonts-dejavu-core 8892669e51aab4dc56682c8e39d8ddb7d70fad83c369344e1e240bf3ca22bb76 bookworm"
  "tesseract-ocr-eng 9242d054563262398f8cf41fbd96fcc72f9dde70db16de18539882a6cff74f9d bookworm"
  "tesseract-ocr-osd 72cc0ba5a04e4d38e5d7901ae2f0319f4941fddaa4a77d1a86110909c036bacb bookworm"
  "tesseract-ocr-fra 9987c4124bc6ee3f49d89710735cd5493a02b6c66f85c92385234dfc4de9b4ec bookworm"
  "tesseract-ocr-deu 01b50e1211a634b54090c05084d758656c62ff18078698a9b1981097b812fce2 bookworm"
)
# source  architecture  what  sha256  (what: a Debian package, or a wheel as name==version@platform)
openssl_pins=(
  "debian-bullseye x86_64 libssl1.1 aadf8b4b197335645b230c2839b4517aa444fd2e8f434e5438c48a18857988f7"
  "pypi-psycopg2-binary x86_64 psycopg2-binary==2.9.9@manylinux2014_x86_64 977646e05232579d2e7b9c59e21dbe5261f403a88417f6a6512e70d3f8a046be"
  "pypi-psycopg2-binary aarch64 psycopg2-binary==2.9.9@manylinux2014_aarch64 143072318f793f53819048fdfe30c321890af0c3ec7cb1dfc9cc87aa88241de2"
  "pypi-mysql-connector x86_64 mysql-connector-python==8.0.33@manylinux1_x86_64 984f5649e6abee04461d6f52fbc77387d7137b8fd003c54bac66505006f17183"
)

have_ssl() { [ -e "$dest/lib/libssl.so.1.1" ] && [ -e "$dest/lib/libcrypto.so.1.1" ]; }
system_ssl() { /sbin/ldconfig -p 2>/dev/null | grep -q 'libssl\.so\.1\.1 ' && /sbin/ldconfig -p | grep -q 'libcrypto\.so\.1\.1 '; }
have_fonts() { [ -e "$dest/fonts/DejaVuSans.ttf" ]; }
have_tessdata() { [ -e "$dest/tessdata/osd.traineddata" ] && [ -e "$dest/tessdata/deu.traineddata" ]; }

if { have_ssl || system_ssl; } && have_fonts && have_tessdata; then
  echo "native libraries already provisioned in $dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -r "$keyring" ]; then
  opts="signed-by=$keyring"
else
  # Not Debian (e.g. Ubuntu): no Debian keyring. The pinned SHA-256 is the integrity check.
  opts="trusted=yes"
fi

# apt-get on a private directory holding one suite's lists: apt_private SUITE ARGS...
apt_private() {
  local suite=$1 dir="$work/apt-$1"; shift
  apt-get -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
    -o Dir::State::Status=/dev/null -o Debug::NoLocking=1 -o Acquire::Retries=1 \
    -o Acquire::http::Timeout=30 -o APT::Sandbox::User="$(id -un)" "$@"
}

# Fetch SUITE's package lists once; fails (with apt's words in $work/apt-SUITE/update.log).
apt_lists() {
  local suite=$1 dir="$work/apt-$1"
  [ -e "$dir/updated" ] && return 0
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
  echo "deb [$opts] $mirror $suite main" >"$dir/sources.list"
  # apt-get update exits 0 when a mirror cannot be reached (it warns and ignores the lists)
  apt_private "$suite" update >"$dir/update.log" 2>&1 &&
    ! grep -q -E '^(W|E|Err):.*(Failed to fetch|not have a Release file|Could not|Unable to)' "$dir/update.log" &&
    touch "$dir/updated"
}

# Download PKG from SUITE, check SHA-256, unpack into $work/root: apt_deb SUITE PKG SHA
apt_deb() {
  local suite=$1 pkg=$2 sha=$3 dir="$work/apt-$1" deb got
  apt_lists "$suite" || { echo "cannot read Debian $suite's package lists: $(grep -m1 -A1 -E '^(W|E|Err):' "$dir/update.log" | tr -s '\n ' ' ')"; return 1; }
  (cd "$dir/debs" && apt_private "$suite" download "$pkg/$suite" >"$dir/download.log" 2>&1) ||
    { echo "Debian $suite has no $pkg: $(tail -n 1 "$dir/download.log")"; return 1; }
  deb=$(ls "$dir/debs/${pkg}"_*.deb)
  got=$(sha256sum "$deb" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || { echo "checksum mismatch for $(basename "$deb"): expected $sha, got $got"; return 1; }
  dpkg-deb -x "$deb" "$work/root"
}

# The two libraries load by path and then answer to the names .NET dlopens, as OpenSSL 1.1.
check_ssl() {
  "$python" - "$1" <<'PY'
import ctypes, sys
for name in ("libcrypto.so.1.1", "libssl.so.1.1"):
    ctypes.CDLL(f"{sys.argv[1]}/{name}", mode=ctypes.RTLD_GLOBAL)
version = ctypes.CDLL("libssl.so.1.1").OpenSSL_version_num
version.restype = ctypes.c_ulong
assert version() >> 12 == 0x10101, f"not OpenSSL 1.1.1: {version():#x}"
PY
}

ssl_from_debian() {  # ssl_from_debian PKG SHA
  apt_deb bullseye "$1" "$2" || return 1
  mkdir -p "$work/ssl"
  cp -L "$work"/root/usr/lib/*-linux-gnu/libssl.so.1.1 "$work"/root/usr/lib/*-linux-gnu/libcrypto.so.1.1 "$work/ssl/"
}

ssl_from_wheel() {  # ssl_from_wheel NAME==VERSION@PLATFORM SHA
  local requirement=${1%@*} platform=${1#*@} sha=$2 wheel got
  mkdir -p "$work/wheel" "$work/ssl"
  "$python" -m pip download -q --disable-pip-version-check --timeout 30 --retries 1 --no-deps \
    --only-binary=:all: --platform "$platform" --python-version 3.11 --implementation cp \
    -d "$work/wheel" "$requirement" >"$work/wheel/pip.log" 2>&1 ||
    { echo "pip cannot download $requirement: $(grep -m1 ERROR "$work/wheel/pip.log" || tail -n 1 "$work/wheel/pip.log")"; return 1; }
  wheel=$(ls "$work"/wheel/*.whl)
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || { echo "checksum mismatch for $(basename "$wheel"): expected $sha, got $got"; return 1; }
  # auditwheel renamed them libssl-<hash>.so.1.1: write them back under (and with the SONAME of)
  # the names .NET asks for. The new name is shorter, so it overwrites the old one in the dynamic
  # string table, padded with NULs: no offset moves.
  "$python" - "$wheel" "$work/ssl" <<'PY'
import re, sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    members = {}
    for member in archive.namelist():
        found = re.fullmatch(r"[^/]+/(?:vendor/)?(libssl|libcrypto)(-[0-9a-f]{8})?\.so\.1\.1", member)
        if found:
            members[found[1]] = member
    assert sorted(members) == ["libcrypto", "libssl"], f"{wheel} lacks OpenSSL 1.1: {members}"
    renames = {Path(m).name.encode() + b"\0": f"{k}.so.1.1".encode() for k, m in members.items()}
    for key, member in members.items():
        data = archive.read(member)
        for old, new in renames.items():
            data = data.replace(old, new.ljust(len(old), b"\0"))
        (out / f"{key}.so.1.1").write_bytes(data)
PY
}

provision_ssl() {
  local tried=() source pin pin_source pin_arch what sha why
  for source in $openssl_sources; do
    pin=""
    for pin in "${openssl_pins[@]}" ""; do
      read -r pin_source pin_arch what sha <<<"$pin"
      [ "$pin_source" = "$source" ] && [ "$pin_arch" = "$arch" ] && break
    done
    if [ -z "$pin" ]; then
      tried+=("$source: no pinned file for $arch"); continue
    fi
    rm -rf "$work/ssl" "$work/wheel"
    echo "OpenSSL 1.1: trying $source ($what)"
    case $source in
      debian-*) why=$(ssl_from_debian "$what" "$sha" 2>&1) ;;
      pypi-*) why=$(ssl_from_wheel "$what" "$sha" 2>&1) ;;
    esac && why=$(check_ssl "$work/ssl" 2>&1 | tail -n 1) && {
      mkdir -p "$dest/lib"
      cp "$work/ssl/libssl.so.1.1" "$work/ssl/libcrypto.so.1.1" "$dest/lib/"
      echo "$source $what" >"$dest/lib/openssl-1.1.source"
      echo "provisioned OpenSSL 1.1 from $source ($what) into $dest/lib"
      return 0
    }
    tried+=("$source: ${why:-failed}")
  done
  cat >&2 <<MSG
WARNING: OpenSSL 1.1 is not provisioned; set-up goes on without it.
  The Aspose engine needs libssl.so.1.1 and libcrypto.so.1.1 (its .NET runtime aborts without
  them). Until they are there, \`ocr-daemon run\` and \`once\` use the Tesseract engine instead.
  Sources tried (OCR_DAEMON_OPENSSL_SOURCES="${openssl_sources}"):
$(printf '    - %s\n' "${tried[@]:-none}")
  To provide them: copy the two files into $dest/lib, or into any folder and set
  OCR_DAEMON_NATIVE_DIR=/that/folder for the daemon; then \`ocr-daemon check\` says "ok OpenSSL 1.1".
MSG
}

if ! have_ssl && ! system_ssl; then
  provision_ssl
fi

if ! have_fonts || ! have_tessdata; then
  echo "fetching fonts and Tesseract data with a private apt directory ($work)"
  for pin in "${pins[@]}"; do
    read -r pkg sha suite <<<"$pin"
    why=$(apt_deb "$suite" "$pkg" "$sha" 2>&1) || { echo "$why" >&2; exit 1; }
  done
  mkdir -p "$dest/fonts" "$dest/tessdata"
  cp -L "$work"/root/usr/share/fonts/truetype/dejavu/*.ttf "$dest/fonts/"
  cp -L "$work"/root/usr/share/tesseract-ocr/5/tessdata/*.traineddata "$dest/tessdata/"
  echo "provisioned DejaVu fonts and Tesseract data into $dest"
fi
