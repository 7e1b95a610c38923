#!/usr/bin/env bash
# Installs the Debian packages that the demo corpus and the report test read.
# As root it runs apt-get; otherwise it prints the exact command to run and goes on.
#   scripts/system-deps.sh                 the demo's sources
#   scripts/system-deps.sh --with-browser  plus chromium (the report test renders in it)
#   scripts/system-deps.sh --list [...]    print the package names and stop
# The asterisk -wav packages install their prompts in voice folders (en_US_f_Allison/ …);
# asterisk-core-sounds-<lg> adds the short <lg>/ links. The corpus builder reads either,
# and both are installed so that every machine has the same layout.
set -euo pipefail
PKGS=""
for lg in en es fr it ru; do PKGS="$PKGS asterisk-core-sounds-$lg-wav asterisk-core-sounds-$lg"; done
PKGS="$PKGS hedgewars-data espeak-ng espeak-ng-data fluid-soundfont-gm ufoai-sound"
list=0
for arg in "$@"; do
  case "$arg" in
    --with-browser) PKGS="$PKGS chromium chromium-driver" ;;
    --list) list=1 ;;
    *) echo "system-deps.sh: unknown option $arg (use --with-browser, --list)" >&2; exit 2 ;;
  esac
done
if [ "$list" = 1 ]; then echo $PKGS; exit 0; fi
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
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing"
fi
