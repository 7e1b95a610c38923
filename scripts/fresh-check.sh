#!/usr/bin/env bash
# Fresh-machine check: do the README's two commands pass on a bare machine?
#
# A green CI on a used machine can hide a missing install step, so this script makes the
# machine bare again for this project and runs the two commands from a clean clone:
#   1. purges the project's Debian packages (scripts/system-deps.sh --list, chromium
#      included) and what they pulled in (apt-get autoremove), then checks that none of
#      the folders the demo reads is left;
#   2. removes pip's and the project's caches (a fresh clone has no .venv, data/ or studies/);
#   3. clones the committed HEAD of this repo into a new temporary folder;
#   4. runs `make test`, `make test-hear` (the rest of .ci/run) and `make demo` there, and
#      prints their exit codes and wall times.
# Needs root (it purges and reinstalls Debian packages). Output goes to the terminal and
# to $FRESH_LOG (default: /tmp/fresh-check-last.log); the clone is removed at the end
# unless --keep is given (then its study folder can be read).
#
#   scripts/fresh-check.sh [--keep] [--skip-demo]
set -uo pipefail

keep=0
skip_demo=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --skip-demo) skip_demo=1 ;;
    *) echo "fresh-check.sh: unknown option $arg (use --keep, --skip-demo)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != "0" ]; then
  echo "fresh-check.sh: must run as root (it purges and reinstalls Debian packages)" >&2
  exit 2
fi
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) || exit 2
work=$(mktemp -d /tmp/audioscale-fresh.XXXXXX)
log=${FRESH_LOG:-/tmp/fresh-check-last.log}
: > "$log"
# the clone is removed on every exit (early failures included) unless --keep
[ "$keep" = 1 ] || trap 'cd /; rm -rf "$work"' EXIT
exec > >(tee -a "$log") 2>&1

echo "== fresh-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) cores"
echo "== commit $(git -C "$repo" rev-parse --short HEAD) of $repo"

echo "== 1. purge the project's Debian packages"
pkgs=$(bash "$repo/scripts/system-deps.sh" --list --with-browser)
installed=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed="$installed $p"
done
export DEBIAN_FRONTEND=noninteractive
if [ -n "$installed" ]; then
  apt-get purge -y -q $installed >/dev/null || { echo "purge failed"; exit 1; }
fi
apt-get autoremove --purge -y -q >/dev/null
left=""
for d in /usr/share/asterisk/sounds /usr/share/games/hedgewars /usr/share/games/ufoai \
         /usr/share/sounds/sf2/FluidR3_GM.sf2 /usr/bin/espeak-ng /usr/bin/chromium; do
  [ -e "$d" ] && left="$left $d"
done
if [ -n "$left" ]; then echo "still present after the purge:$left"; exit 1; fi
echo "purged:${installed:- (none were installed)}"

echo "== 2. remove caches"
rm -rf /root/.cache/pip "${XDG_CACHE_HOME:-/root/.cache}/audioscale"
echo "removed pip's cache"

echo "== 3. clone"
git clone -q --no-local "$repo" "$work/audioscale" || exit 1
cd "$work/audioscale" || exit 1
echo "cloned into $work/audioscale"

run() {  # run NAME CMD...: prints the exit code and wall time of one command
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  local rc=$?
  echo "== $name: exit $rc, $((SECONDS - t0)) s"
  eval "rc_$name=$rc; s_$name=$((SECONDS - t0))"
}

echo "== 4. make test, then make test-hear (what .ci/run runs)"
run test make test
run hear make test-hear
rc_demo=skipped
s_demo=0
if [ "$skip_demo" = 0 ]; then
  echo "== 5. make demo"
  run demo make demo
fi

echo
echo "fresh-check result: make test exit $rc_test in ${s_test} s; make test-hear exit $rc_hear in ${s_hear} s; make demo exit $rc_demo in ${s_demo} s"
echo "| $(date -u +%Y-%m-%d) | $(git rev-parse --short HEAD) | purged Debian packages + caches, fresh clone | make test: exit $rc_test, ${s_test} s; make test-hear: exit $rc_hear, ${s_hear} s | make demo: exit $rc_demo, ${s_demo} s |"
echo "log: $log$( [ "$keep" = 1 ] && echo "; clone kept in $work/audioscale")"
[ "$rc_test" = 0 ] && [ "$rc_hear" = 0 ] && { [ "$rc_demo" = 0 ] || [ "$rc_demo" = skipped ]; }
