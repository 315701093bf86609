#!/usr/bin/env bash
# The Windows executables, really run: Wine 10 from a Debian 13 (trixie) chroot runs the agent's and the
# hub's win-x64 executables (--version, check-config, enroll, a short run with the simulator driver against
# a hub on loopback; the confirmations must reach the hub and the ERP simulator). Called by .ci/run after
# `npm test`; needs root (debootstrap, chroot, bind mounts) and Debian's mirror the first time.
#
#   installers/windows/ci-wine-check.sh [--rebuild-root]
#
# The chroot is kept at $PLANTBRIDGE_WINE_ROOT (default /var/cache/plantbridge/wine-trixie, ~1.5 GB) and
# reused while its stamp matches this script's package list; --rebuild-root makes it anew.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

root=${PLANTBRIDGE_WINE_ROOT:-/var/cache/plantbridge/wine-trixie}
mirror=${PLANTBRIDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=trixie
packages="wine wine64"
stamp="debootstrap --variant=minbase $suite; apt-get install --no-install-recommends $packages"

say() { echo "wine-check: $*"; }
# shellcheck disable=SC2016 # ${Version} is dpkg-query's format, not the shell's
wine_version() { chroot "$root" dpkg-query -W -f '${Version}' wine; }
die() { echo "wine-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and bind mounts)"
command -v debootstrap >/dev/null || die "debootstrap is missing: npm run setup:debian (or apt-get install debootstrap)"

t0=$(date +%s)
if [ "${1:-}" = "--rebuild-root" ] || [ "$(cat "$root/.plantbridge-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "setting up $root: $stamp (about 1.5 GB)"
  partial="$root.partial"
  # a previous attempt may have died with its mounts in place: never rm -rf through a bind mount
  for m in "$partial/proc" "$partial/dev"; do mountpoint -q "$m" && umount -l "$m"; done
  rm -rf --one-file-system "$partial"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase "$suite" "$partial" "$mirror" >"$partial.log" 2>&1 || { tail -20 "$partial.log"; die "debootstrap failed (log: $partial.log)"; }
  chroot "$partial" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages && apt-get clean" >>"$partial.log" 2>&1 \
    || { tail -20 "$partial.log"; die "installing $packages in the chroot failed (log: $partial.log)"; }
  echo "$stamp" >"$partial/.plantbridge-stamp"
  rm -rf --one-file-system "$root"
  mv "$partial" "$root"
  rm -f "$partial.log"
  say "chroot ready in $(($(date +%s) - t0)) s: wine $(wine_version)"
else
  say "reusing $root (wine $(wine_version))"
fi
t1=$(date +%s)

# a work folder inside the chroot (its Wine prefix too), removed at the end
work=$(mktemp -d "$root/tmp/pb-wine.XXXXXX")
inside=${work#"$root"}
cleanup() {
  chroot "$root" /usr/bin/env WINEPREFIX="$inside/prefix" wineserver -k >/dev/null 2>&1 || true
  for m in "$root/proc" "$root/dev"; do mountpoint -q "$m" && umount -l "$m"; done
  if [ -n "${PLANTBRIDGE_KEEP_TMP:-}" ]; then say "kept $work"; else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"

say "building the Windows executables (npm run package -- --target win-x64)"
npm run -s package -- --target win-x64 --out "$work/dist" >"$work/package.log" 2>&1 || { cat "$work/package.log"; die "npm run package failed"; }
t2=$(date +%s)

PLANTBRIDGE_WINE_ROOT="$root" PLANTBRIDGE_WINE_WORK="$inside" \
  "$repo/node_modules/.bin/node" --test --test-reporter=spec installers/windows/wine-check.ts
t3=$(date +%s)
say "chroot $((t1 - t0)) s, build $((t2 - t1)) s, Wine checks $((t3 - t2)) s, total $((t3 - t0)) s"
