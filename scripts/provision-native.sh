#!/usr/bin/env bash
# Provision the native pieces ocr-daemon needs but Debian 12 / Ubuntu 22.04+ lack:
#   - OpenSSL 1.1 (libssl.so.1.1, libcrypto.so.1.1) for the .NET Core 3.1 runtime bundled with
#     aspose-ocr-python-net, from Debian bullseye's libssl1.1 package;
#   - DejaVu fonts (fonts-dejavu-core) that the tests render their pages with;
#   - Tesseract language data (tesseract-ocr-{eng,osd,fra,deu}, bookworm) for the tesseract
#     engine and page-orientation detection, into DEST/tessdata.
# Both are fetched with apt-get using a *private* source list, lists and cache directory, so the
# system's apt configuration and installed packages are never touched (works as root or not).
# Every .deb is checked against a pinned SHA-256 before it is unpacked into DEST.
#
# usage: scripts/provision-native.sh DEST     (idempotent; DEST is e.g. .venv/native)
set -euo pipefail

dest=${1:?usage: provision-native.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# package  sha256  suite
pins=(
  "libssl1.1 aadf8b4b197335645b230c2839b4517aa444fd2e8f434e5438c48a18857988f7 bullseye"
  "fonts-dejavu-core 8892669e51aab4dc56682c8e39d8ddb7d70fad83c369344e1e240bf3ca22bb76 bookworm"
  "tesseract-ocr-eng 9242d054563262398f8cf41fbd96fcc72f9dde70db16de18539882a6cff74f9d bookworm"
  "tesseract-ocr-osd 72cc0ba5a04e4d38e5d7901ae2f0319f4941fddaa4a77d1a86110909c036bacb bookworm"
  "tesseract-ocr-fra 9987c4124bc6ee3f49d89710735cd5493a02b6c66f85c92385234dfc4de9b4ec bookworm"
  "tesseract-ocr-deu 01b50e1211a634b54090c05084d758656c62ff18078698a9b1981097b812fce2 bookworm"
)

have_ssl() { [ -e "$dest/lib/libssl.so.1.1" ] && [ -e "$dest/lib/libcrypto.so.1.1" ]; }
have_fonts() { [ -e "$dest/fonts/DejaVuSans.ttf" ]; }
have_tessdata() { [ -e "$dest/tessdata/osd.traineddata" ] && [ -e "$dest/tessdata/deu.traineddata" ]; }

if have_ssl && have_fonts && have_tessdata; then
  echo "native libraries already provisioned in $dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -r "$keyring" ]; then
  opts="signed-by=$keyring"
else
  # Not Debian (e.g. Ubuntu): no Debian keyring. The pinned SHA-256 below is the integrity check.
  opts="trusted=yes"
fi
cat > "$work/sources.list" <<LIST
deb [$opts] http://deb.debian.org/debian bullseye main
deb [$opts] http://deb.debian.org/debian bookworm main
LIST

apt_private() {
  apt-get -q -o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" \
    -o Dir::State::Status=/dev/null -o Debug::NoLocking=1 \
    -o APT::Sandbox::User="$(id -un)" "$@"
}

echo "fetching package lists into a private apt directory ($work)"
apt_private update >"$work/update.log" 2>&1 || { cat "$work/update.log" >&2; exit 1; }

for pin in "${pins[@]}"; do
  read -r pkg sha suite <<<"$pin"
  (cd "$work/debs" && apt_private download "$pkg/$suite" >/dev/null)
  deb=$(ls "$work/debs/${pkg}"_*.deb)
  got=$(sha256sum "$deb" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "checksum mismatch for $(basename "$deb"): expected $sha, got $got" >&2
    exit 1
  fi
  dpkg-deb -x "$deb" "$work/root"
done

mkdir -p "$dest/lib" "$dest/fonts"
cp -L "$work"/root/usr/lib/*-linux-gnu/libssl.so.1.1 "$work"/root/usr/lib/*-linux-gnu/libcrypto.so.1.1 "$dest/lib/"
cp -L "$work"/root/usr/share/fonts/truetype/dejavu/*.ttf "$dest/fonts/"
mkdir -p "$dest/tessdata"
cp -L "$work"/root/usr/share/tesseract-ocr/5/tessdata/*.traineddata "$dest/tessdata/"
echo "provisioned OpenSSL 1.1, DejaVu fonts and Tesseract data into $dest"
