#!/usr/bin/env bash
# `npm run setup:debian`: prepares a Debian (12 or 13) machine for `CI=true npm test` and .ci/run.
# Installs what is missing from Debian's packages (as root, or through sudo), starts Mosquitto on
# 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432, and makes sure the database `test` accepts the user who
# runs the tests without a password (only that database, only from loopback). Safe to run again: it
# changes only what is missing and says what it did.
set -euo pipefail

# Debian package : the command that shows it is there. What needs them:
#   mosquitto, postgresql - the broker and the scale-out store the tests talk to; chromium - console tests
#   installers' tests - shellcheck, libxml2-utils (xmllint), systemd (systemd-analyze), dpkg (dpkg-deb),
#     zip, unzip, openssl; e2fsprogs (chattr) for the addon extraction's "file in use" case
#   chaos and monitoring tests - haproxy, faketime, prometheus (promtool), nftables, iproute2
#   the Windows check under Wine (installers/windows/ci-wine-check.sh) - debootstrap
PACKAGES=(
  mosquitto:mosquitto postgresql:pg_ctlcluster chromium:chromium shellcheck:shellcheck libxml2-utils:xmllint
  systemd:systemd-analyze dpkg:dpkg-deb zip:zip unzip:unzip openssl:openssl haproxy:haproxy faketime:faketime
  prometheus:promtool nftables:nft iproute2:ip debootstrap:debootstrap e2fsprogs:chattr
)

say() { echo "setup: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -r /etc/debian_version ] || { echo "setup: this script is for Debian (apt-get); see README.md for what the tests need" >&2; exit 1; }

missing=()
for entry in "${PACKAGES[@]}"; do
  have "${entry#*:}" || missing+=("${entry%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from Debian"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "all packages present"
fi

# Mosquitto on 127.0.0.1:1883 (Debian's default configuration listens on loopback, anonymous)
if ! listening 1883; then
  say "starting mosquitto"
  if [ -d /run/systemd/system ]; then as_root systemctl start mosquitto
  else as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf || as_root mosquitto -d -p 1883; fi
fi

# PostgreSQL on 127.0.0.1:5432
cluster=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)
[ -n "$cluster" ] || { echo "setup: no PostgreSQL cluster under /etc/postgresql" >&2; exit 1; }
if ! listening 5432; then
  say "starting postgresql $cluster"
  if [ -d /run/systemd/system ]; then as_root systemctl start "postgresql@$cluster-main"
  else as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start; fi
  for _ in $(seq 1 50); do listening 5432 && break; sleep 0.2; done
fi
listening 1883 || { echo "setup: mosquitto is not listening on 127.0.0.1:1883" >&2; exit 1; }
listening 5432 || { echo "setup: postgresql is not listening on 127.0.0.1:5432" >&2; exit 1; }

# the tests connect as the user who runs them, to database test, without a password
user=${PGUSER:-${SUDO_USER:-$(id -un)}}
pg() { as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
if ! psql -X -q -h 127.0.0.1 -U "$user" -d test -c 'select 1' >/dev/null 2>&1; then
  say "PostgreSQL: role $user, database test, trust for $user on test from 127.0.0.1 and ::1"
  [ "$(pg -tAc "select 1 from pg_roles where rolname = '$user'")" = 1 ] || pg -c "create role \"$user\" login superuser"
  [ "$(pg -tAc "select 1 from pg_database where datname = 'test'")" = 1 ] || pg -c "create database test owner \"$user\""
  hba=$(pg -tAc 'show hba_file')
  if ! as_root grep -q "^host test $user 127.0.0.1/32 trust" "$hba"; then
    # first match wins in pg_hba.conf: these lines go on top
    as_root sed -i "1i host test $user 127.0.0.1/32 trust\nhost test $user ::1/128 trust" "$hba"
    pg -c 'select pg_reload_conf()' >/dev/null
  fi
  psql -X -q -h 127.0.0.1 -U "$user" -d test -c 'select 1' >/dev/null || { echo "setup: still cannot connect to database test as $user" >&2; exit 1; }
fi

say "ready: Mosquitto 127.0.0.1:1883, PostgreSQL 127.0.0.1:5432 (database test as $user). Next: npm install && CI=true npm test"
