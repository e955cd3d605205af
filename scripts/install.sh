#!/usr/bin/env bash
# install.sh [--prefix DIR] [--no-start] [ARTIFACT]: installs a Shuttle build as a system service.
#
# ARTIFACT is the tarball scripts/build-dist.sh makes, or its unpacked folder; without one, the folder
# this script sits in (run from an unpacked artifact: sudo ./scripts/install.sh). Needs root; needs no
# npm, compiler or system Node (the artifact carries its runtime). It
#   - creates the system user and group `shuttle` (systemd-sysusers, else useradd),
#   - installs the program under PREFIX (default /opt/shuttle: a new or empty folder, or an earlier
#     install, never one holding other things) and links /usr/local/bin/shuttle,
#   - installs the systemd units in /etc/systemd/system, the udev rules in /etc/udev/rules.d and the
#     polkit rule that lets the daemon start the card eject unit in /etc/polkit-1/rules.d,
#   - writes /etc/shuttle/config.toml (every line commented but [api] listen on 127.0.0.1:8650), /etc/shuttle/aws-credentials (S3 keys)
#     and /etc/shuttle/card.env (card unit settings) unless they exist: yours are never overwritten,
#   - reloads systemd and udev, and enables and starts shuttle.service (not with --no-start).
# Running it again upgrades in place and restarts the service.
#
# DESTDIR=ROOT installs below ROOT instead (packaging, tests): users go to ROOT/etc/passwd, and nothing
# on the running system is reloaded, enabled or started.
set -euo pipefail

prefix=/opt/shuttle
start=yes
artifact=
while (($#)); do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --no-start) start=no; shift ;;
    -h | --help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    *) artifact=$1; shift ;;
  esac
done
destdir=${DESTDIR:-}
destdir=${destdir%/}
say() { printf 'install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case $prefix in /*) ;; *) die "--prefix must be an absolute path" ;; esac
prefix=${prefix%/}
# The prefix goes into unit files, where quotes, backslashes, $ and % mean something to systemd.
case $prefix in
  '' | *[!A-Za-z0-9/._@+,:=~\ \&-]* | */../* | */.. | */./* | */.) die "--prefix '$prefix' is not a folder Shuttle can be installed in (a new or empty folder like /opt/shuttle; letters, digits, spaces and / . _ - + @ , : = ~ & only)" ;;
esac
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo $0)"; fi

target=$destdir$prefix
# The program's folder is replaced whole, so it must be Shuttle's (an earlier install) or new or empty:
# never /usr/local or a folder some other software keeps its files in. The same for the .new and .old
# folders an interrupted install may have left beside it.
shuttle_tree() { [ -f "$1/.shuttle-artifact" ]; }
replaceable() {
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then return 0; fi
  if shuttle_tree "$1"; then return 0; fi
  [ -d "$1" ] && [ ! -L "$1" ] && [ -z "$(ls -A "$1")" ]
}
for dir in "$target" "$target.new" "$target.old"; do
  replaceable "$dir" || die "$dir holds something other than a Shuttle install; refusing to replace it (choose a new or empty folder for --prefix, e.g. /opt/shuttle)"
done

# The artifact: a tarball to unpack, a folder, or the one this script belongs to.
cleanup=
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
if [ -z "$artifact" ]; then
  artifact=$(cd "$(dirname "$0")/.." && pwd)
elif [ -f "$artifact" ]; then
  cleanup=$(mktemp -d)
  tar -xzf "$artifact" -C "$cleanup"
  artifact=$(find "$cleanup" -mindepth 2 -maxdepth 2 -name .shuttle-artifact -printf '%h\n' | head -n 1)
fi
[ -f "$artifact/.shuttle-artifact" ] || die "$artifact is not a Shuttle build: make one with scripts/build-dist.sh, then install.sh shuttle-*.tar.gz"
name=$(sed -n 's/^name=//p' "$artifact/.shuttle-artifact")
[ -x "$artifact/node_modules/node/bin/node" ] || die "$artifact has no Node runtime (node_modules/node/bin/node)"
machine=$(uname -m)
case "$(sed -n 's/^arch=//p' "$artifact/.shuttle-artifact")/$machine" in
  linux-x64/x86_64 | linux-arm64/aarch64 | linux-arm64/arm64) ;;
  *) die "$name is built for another machine type than this $machine" ;;
esac

root=${destdir:-/}
units=$destdir/etc/systemd/system
rules=$destdir/etc/udev/rules.d
polkit_rules=$destdir/etc/polkit-1/rules.d
etc=$destdir/etc/shuttle

say "service user and group: shuttle"
mkdir -p "$destdir/etc"
if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers --root="$root" --inline 'u shuttle - "Shuttle ingest daemon" /var/lib/shuttle /usr/sbin/nologin' >&2
elif [ -z "$destdir" ]; then
  getent group shuttle >/dev/null || groupadd --system shuttle
  getent passwd shuttle >/dev/null || useradd --system --gid shuttle --home-dir /var/lib/shuttle --no-create-home --shell /usr/sbin/nologin --comment "Shuttle ingest daemon" shuttle
else
  die "DESTDIR installs need systemd-sysusers (apt-get install systemd)"
fi

say "program: $target ($name)"
mkdir -p "$(dirname "$target")"
rm -rf "$target.new" "$target.old"
if [ -n "$cleanup" ]; then mv "$artifact" "$target.new"; else cp -a "$artifact" "$target.new"; fi
chown -R 0:0 "$target.new" 2>/dev/null || true
chmod -R go-w "$target.new"
# Swap in the new tree whole; a running daemon keeps the files it has open until it restarts.
[ -e "$target" ] && mv "$target" "$target.old"
mv "$target.new" "$target"
rm -rf "$target.old"
mkdir -p "$destdir/usr/local/bin"
ln -sfn "$prefix/bin/shuttle" "$destdir/usr/local/bin/shuttle"

say "systemd units: $units"
mkdir -p "$units"
for unit in "$target"/systemd/*.service; do
  # The units name /opt/shuttle; another prefix is written into the installed copies: quoted on Exec
  # lines when it has spaces (systemd splits commands there), with spaces as %20 in the Documentation URL
  # (%% there: systemd expands specifiers in it). awk's index/substr take the prefix literally, & included.
  PREFIX=$prefix awk '
    BEGIN { old = "/opt/shuttle/"; p = ENVIRON["PREFIX"]; quote = index(p, " ") > 0; url = p; gsub(/ /, "%%20", url) }
    {
      line = $0; out = ""; exec = line ~ /^Exec[A-Za-z]*=/; doc = line ~ /^Documentation=/
      while ((i = index(line, old)) > 0) {
        out = out substr(line, 1, i - 1); rest = substr(line, i + length(old))
        if (exec && quote) {
          j = index(rest, " "); if (j == 0) j = length(rest) + 1
          out = out "\"" p "/" substr(rest, 1, j - 1) "\""; line = substr(rest, j)
        } else { out = out (doc ? url : p) "/"; line = rest }
      }
      print out line
    }' "$unit" > "$units/$(basename "$unit")"
  chmod 0644 "$units/$(basename "$unit")"
done

say "udev rules: $rules"
mkdir -p "$rules"
install -m 0644 "$target"/udev/*.rules "$rules/"

say "polkit rule: $polkit_rules"
# The dashboard's Eject: the daemon may start shuttle-eject@NAME.service and no other unit. polkitd
# reads the folder again by itself when a rule appears.
mkdir -p "$polkit_rules"
install -m 0644 "$target"/polkit/*.rules "$polkit_rules/"
[ -n "$destdir" ] || command -v pkaction >/dev/null || [ -x /usr/lib/polkit-1/polkitd ] ||
  say "polkitd is not installed: Eject from the dashboard needs it (apt-get install polkitd)"

say "configuration: $etc"
# By number, from the group file of the root being installed to (DESTDIR's, not this machine's).
gid=$(sed -n 's/^shuttle:[^:]*:\([0-9]*\):.*/\1/p' "$destdir/etc/group")
[ -n "$gid" ] || die "no group shuttle in $destdir/etc/group"
install -d -m 0750 -g "$gid" "$etc"
fresh_config=no
if [ ! -e "$etc/config.toml" ]; then
  fresh_config=yes
  # The example, every setting commented out: the daemon has no destination until you set one.
  sed -E 's/^([[:space:]]*[^#[:space:]])/# \1/' "$target/config/shuttle.example.toml" > "$etc/config.toml.new"
  # But the dashboard and API, for this machine only (no token is needed on loopback).
  printf '\n# Set by the installer: the dashboard at http://127.0.0.1:8650/ (see [api] above).\n[api]\nlisten = "127.0.0.1:8650"\n' >> "$etc/config.toml.new"
  chmod 0640 "$etc/config.toml.new"
  chgrp "$gid" "$etc/config.toml.new"
  mv "$etc/config.toml.new" "$etc/config.toml"
  say "wrote $etc/config.toml (all commented but the dashboard on 127.0.0.1:8650: set your destinations there)"
fi
if [ ! -e "$etc/aws-credentials" ]; then
  (
    umask 077
    cat > "$etc/aws-credentials" <<'EOF'
# S3 keys for the upload ([upload] in config.toml), in the AWS shared-credentials format. Only root
# reads this file; systemd hands a copy to the daemon (LoadCredential= in shuttle.service).
#
# [default]
# aws_access_key_id = AKIA...
# aws_secret_access_key = ...
EOF
  )
fi
if [ ! -e "$etc/card.env" ]; then
  cat > "$etc/card.env" <<'EOF'
# Settings of shuttle-card@.service, the unit that mounts and ingests a card (KEY=value lines).
#
# After a successful ingest: yes = unmount and power the card off so it can be pulled; no = only unmount.
#CARD_POWER_OFF=yes
EOF
  chmod 0644 "$etc/card.env"
fi

if [ -n "$destdir" ]; then
  say "installed below $destdir; the running system was not changed"
  exit 0
fi

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
if command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
  udevadm control --reload
  # Cameras attached now get their group and tags without being plugged again.
  udevadm trigger --action=change --subsystem-match=usb || true
fi
started=no
status=0
if [ -d /run/systemd/system ]; then
  systemctl enable shuttle.service >&2
  if [ "$start" = no ]; then
    say "shuttle.service enabled, not started (--no-start)"
  elif [ "$fresh_config" = yes ]; then
    # A new config names no destination yet: the daemon would refuse to start.
    say "shuttle.service enabled; start it once a destination is set (step 2 below)"
  elif systemctl restart shuttle.service; then
    started=yes
    say "shuttle.service (re)started"
  else
    say "shuttle.service did not start: journalctl -u shuttle says why (then: sudo shuttle doctor)"
    status=1
  fi
else
  say "systemd is not running here: start the daemon with 'shuttle run' as user shuttle"
fi
[ "$started" = yes ] || cat >&2 <<EOF
install: done. Next:
  1. Set your destinations (and [upload] for S3) in $etc/config.toml; S3 keys go in $etc/aws-credentials.
  2. sudo systemctl restart shuttle    # after editing
  3. sudo shuttle doctor               # checks permissions, rules, units, space, clock and S3
Plug in a camera or insert a card: it is ingested without a command. Logs: journalctl -u shuttle -u 'shuttle-card@*'
EOF
exit "$status"
