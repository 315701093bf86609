#!/bin/sh
# PlantBridge installer for Linux servers without the .deb (RHEL, SUSE, any systemd distribution).
#
#   sudo ./install.sh install   [--app agent|hub] [--binary FILE]   first install
#   sudo ./install.sh upgrade   [--app agent|hub] [--binary FILE]   replace the binary, keep config and data
#   sudo ./install.sh rollback  [--app agent|hub]                    swap back to the binary before the upgrade
#   sudo ./install.sh uninstall [--app agent|hub] [--purge]          remove; --purge also deletes config and data
#   sudo ./install.sh status    [--app agent|hub]
#
# Options: --root DIR installs into DIR instead of / and runs no systemctl (packaging tests, images);
#          --no-start leaves the service stopped. SYSTEMCTL=... overrides the systemctl command.
# Config (/etc/plantbridge-<app>/<app>.yaml) and data (/var/lib/plantbridge-<app>) are never touched by
# install, upgrade, rollback or a plain uninstall.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ACTION=${1:-}
[ $# -gt 0 ] && shift
APP=""
BINARY=""
ROOT=""
PURGE=0
START=1
while [ $# -gt 0 ]; do
  case "$1" in
    --app) APP=${2:?--app needs agent or hub}; shift 2 ;;
    --binary) BINARY=${2:?--binary needs a file}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --purge) PURGE=1; shift ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

say() { printf '%s\n' "$*"; }
did() { printf '  + %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ -z "$APP" ]; then
  # the release archive holds one binary: plantbridge-<app>-linux-x64
  n=plantbridge-agent
  if [ -n "$BINARY" ]; then n=$(basename "$BINARY"); else for f in "$HERE"/plantbridge-*-linux-x64; do [ -f "$f" ] && n=$(basename "$f"); done; fi
  case "$n" in plantbridge-hub*) APP=hub ;; *) APP=agent ;; esac
fi
case "$APP" in agent|hub) ;; *) die "--app must be agent or hub" ;; esac
[ -n "$BINARY" ] || BINARY="$HERE/plantbridge-$APP-linux-x64"
case "$ROOT" in ""|/) ROOT="" ;; /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac

NAME="plantbridge-$APP"
SERVICE="$NAME.service"
BIN="$ROOT/usr/local/bin/$NAME"
LIBDIR="$ROOT/usr/local/lib/plantbridge"
PREV="$LIBDIR/$NAME.previous"
UNIT="$ROOT/etc/systemd/system/$SERVICE"
SYSUSERS="$ROOT/etc/sysusers.d/plantbridge.conf"
CONF_DIR="$ROOT/etc/$NAME"
CONF="$CONF_DIR/$APP.yaml"
STATE="$ROOT/var/lib/$NAME"
USER_NAME=plantbridge
SYSTEMCTL=${SYSTEMCTL:-systemctl}

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then die "run as root (sudo $0 $ACTION ...)"; fi

# systemctl only on the real root with systemd running (a container or a chroot has none)
# (SYSTEMCTL=stub runs the stub even under --root: that is how the tests see the calls)
has_systemd() { [ "$SYSTEMCTL" != systemctl ] || { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }; }
svc() {
  if has_systemd; then "$SYSTEMCTL" "$@"; did "systemctl $*"; else did "skipped (no systemd here): systemctl $*"; fi
}

version_of() { "$1" --version 2>/dev/null | head -n 1 || echo unknown; }

check_binary() {
  [ -f "$BINARY" ] || die "no executable at $BINARY (use --binary FILE)"
  [ -x "$BINARY" ] || chmod 0755 "$BINARY"
  if ! NEW_VERSION=$("$BINARY" --version 2>&1); then
    die "$BINARY does not run on this server: $(printf '%s' "$NEW_VERSION" | tail -n 1) (see docs/INSTALL.md, Prerequisites)"
  fi
  NEW_VERSION=$(printf '%s\n' "$NEW_VERSION" | head -n 1)
}

ensure_user() {
  mkdir -p "$(dirname "$SYSUSERS")"
  cp "$HERE/plantbridge.sysusers.conf" "$SYSUSERS" 2>/dev/null ||
    printf 'u %s - "PlantBridge" /nonexistent /usr/sbin/nologin\n' "$USER_NAME" >"$SYSUSERS"
  if grep -q "^$USER_NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
    did "system user $USER_NAME exists"
  elif command -v systemd-sysusers >/dev/null 2>&1; then
    if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" "$SYSUSERS"; else systemd-sysusers "$SYSUSERS"; fi
    did "created system user $USER_NAME (systemd-sysusers)"
  elif [ -z "$ROOT" ]; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
    did "created system user $USER_NAME (useradd)"
  else
    die "cannot create user $USER_NAME under --root without systemd-sysusers"
  fi
}

group_of_user() { if [ -z "$ROOT" ]; then echo "$USER_NAME"; else grep "^$USER_NAME:" "$ROOT/etc/group" | cut -d: -f3; fi; }
user_of_user() { if [ -z "$ROOT" ]; then echo "$USER_NAME"; else grep "^$USER_NAME:" "$ROOT/etc/passwd" | cut -d: -f3; fi; }

ensure_dirs() {
  mkdir -p "$CONF_DIR" "$STATE"
  chown "root:$(group_of_user)" "$CONF_DIR"
  chmod 0750 "$CONF_DIR"
  did "config directory $CONF_DIR (root:$USER_NAME 0750)"
  chown "$(user_of_user):$(group_of_user)" "$STATE"
  chmod 0750 "$STATE"
  did "state directory $STATE ($USER_NAME 0750, kept on upgrade and uninstall)"
  if [ -f "$HERE/$APP.example.yaml" ]; then
    install -m 0640 -o root -g "$(group_of_user)" "$HERE/$APP.example.yaml" "$CONF_DIR/$APP.example.yaml"
    did "example config $CONF_DIR/$APP.example.yaml"
  fi
  if [ -f "$CONF" ]; then
    chown "root:$(group_of_user)" "$CONF"
    chmod 0640 "$CONF"
  fi
}

install_binary() {
  mkdir -p "$(dirname "$BIN")" "$LIBDIR"
  if [ -f "$BIN" ]; then
    cp -p "$BIN" "$PREV.tmp" && mv -f "$PREV.tmp" "$PREV"
    did "kept the previous binary ($(version_of "$PREV")) as $PREV"
  fi
  cp "$BINARY" "$BIN.new"
  chmod 0755 "$BIN.new"
  mv -f "$BIN.new" "$BIN"
  did "installed $BIN ($NEW_VERSION)"
}

install_unit() {
  mkdir -p "$(dirname "$UNIT")"
  src="$HERE/$SERVICE"
  [ -f "$src" ] || die "missing $src next to install.sh"
  sed "s#/usr/bin/$NAME#/usr/local/bin/$NAME#g" "$src" >"$UNIT.new"
  chmod 0644 "$UNIT.new"
  mv -f "$UNIT.new" "$UNIT"
  did "systemd unit $UNIT (local changes belong in: systemctl edit $NAME)"
}

check_config() {
  # $1: the binary to check with
  if [ -f "$CONF" ]; then
    if ! out=$("$1" check-config --config "$CONF" 2>&1); then
      printf '%s\n' "$out" >&2
      return 1
    fi
    did "config $CONF is valid for $(version_of "$1")"
  fi
  return 0
}

start_or_explain() {
  if [ "$START" = 0 ]; then
    did "not started (--no-start)"
  elif [ -f "$CONF" ]; then
    svc restart "$SERVICE"
  else
    say ""
    say "Next: write $CONF (start from $CONF_DIR/$APP.example.yaml; keep it root:$USER_NAME 0640),"
    say "      check it with: $NAME check-config --config $CONF"
    say "      then: systemctl start $NAME"
  fi
}

report_health() {
  has_systemd || return 0
  [ "$START" = 1 ] && [ -f "$CONF" ] || return 0
  sleep "${PLANTBRIDGE_HEALTH_WAIT:-3}"
  if "$SYSTEMCTL" is-active --quiet "$SERVICE"; then
    say "$NAME is running. Logs: journalctl -u $NAME -f"
  else
    say "$NAME is NOT running. See: journalctl -u $NAME -n 50"
    [ -f "$PREV" ] && say "To go back to $(version_of "$PREV"): $0 rollback --app $APP"
    return 1
  fi
}

case "$ACTION" in
  install|upgrade)
    check_binary
    if [ "$ACTION" = upgrade ] && [ ! -f "$BIN" ]; then die "$NAME is not installed here; use: $0 install"; fi
    if [ "$ACTION" = install ] && [ -f "$BIN" ]; then say "$NAME is already installed ($(version_of "$BIN")): upgrading."; ACTION=upgrade; fi
    if [ "$ACTION" = upgrade ]; then
      check_config "$BINARY" || die "the new version rejects $CONF: nothing was changed"
    fi
    say "${ACTION}: $NAME $NEW_VERSION${ROOT:+ into $ROOT}"
    ensure_user
    ensure_dirs
    install_binary
    install_unit
    svc daemon-reload
    svc enable "$SERVICE"
    start_or_explain
    report_health
    say "Done. Config: $CONF; data: $STATE (upgrade, rollback and uninstall keep both)."
    ;;
  rollback)
    [ -f "$PREV" ] || die "no previous binary at $PREV (rollback is possible once, after an upgrade)"
    say "rollback: $NAME $(version_of "$BIN") -> $(version_of "$PREV")"
    mv -f "$BIN" "$BIN.rollback"
    mv -f "$PREV" "$BIN"
    mv -f "$BIN.rollback" "$PREV"
    did "$BIN is now $(version_of "$BIN"); $(version_of "$PREV") kept as $PREV (run rollback again to return to it)"
    if [ "$START" = 1 ] && [ -f "$CONF" ]; then svc restart "$SERVICE"; fi
    report_health
    say "Done. Config and data were kept: $CONF, $STATE."
    ;;
  uninstall)
    say "uninstall: $NAME${ROOT:+ from $ROOT}"
    if [ -f "$UNIT" ]; then
      svc disable --now "$SERVICE"
      rm -f "$UNIT"
      did "removed $UNIT"
      svc daemon-reload
    fi
    rm -f "$BIN" "$PREV"
    did "removed $BIN and the previous binary"
    if [ "$PURGE" = 1 ]; then
      rm -rf "${STATE:?}"
      did "purged data $STATE"
      rm -rf "${CONF_DIR:?}"
      did "purged config $CONF_DIR (config, secrets, certificates)"
      say "The system user $USER_NAME is kept (files it owned elsewhere stay owned); remove it with: userdel $USER_NAME"
    else
      say "Kept config $CONF and data $STATE (delete them with: $0 uninstall --app $APP --purge)."
    fi
    ;;
  status)
    say "$NAME: $( [ -f "$BIN" ] && version_of "$BIN" || echo 'not installed') at $BIN"
    say "previous: $( [ -f "$PREV" ] && version_of "$PREV" || echo none)"
    say "config: $CONF $( [ -f "$CONF" ] && echo present || echo missing)"
    say "data: $STATE $( [ -d "$STATE" ] && du -sh "$STATE" 2>/dev/null | cut -f1 || echo missing)"
    if has_systemd; then say "service: $("$SYSTEMCTL" is-active "$SERVICE" 2>/dev/null || true)"; fi
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 1
    ;;
esac
