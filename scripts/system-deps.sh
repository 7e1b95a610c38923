#!/usr/bin/env bash
# Installs the Debian packages that the demo corpus and the report test need.
# As root it runs apt-get; otherwise it prints the exact command to run and goes on.
set -euo pipefail
PKGS="asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav \
asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav hedgewars-data espeak-ng \
fluid-soundfont-gm ufoai-sound"
if [ "${1:-}" = "--with-browser" ]; then PKGS="$PKGS chromium chromium-driver"; fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ]; then
  echo "audioscale: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends $missing >/dev/null
else
  echo "audioscale: missing Debian packages; run:"
  echo "  sudo apt-get update && sudo apt-get install -y$missing"
fi
