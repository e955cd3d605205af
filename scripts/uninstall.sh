#!/usr/bin/env bash
# uninstall.sh [--prefix DIR] [--purge]: removes what scripts/install.sh installed.
#
# Stops and disables the service, removes the program (PREFIX, default /opt/shuttle), the
# /usr/local/bin/shuttle link, the units, the udev rules and the polkit rule, and reloads systemd and udev. Keeps the
# configuration (/etc/shuttle), the journal and state (/var/lib/shuttle) and the `shuttle` user, so a
# later install carries on where this one stopped; --purge removes those too, with the cache
# (/var/cache/shuttle), the units' drop-ins (systemctl edit) and the runtime folders (/run/shuttle,
# /run/shuttle-card, empty card mount points in /media/shuttle). A PREFIX that is not a Shuttle install
# is refused before anything is removed. Destination libraries are your photographs: never touched.
#
# DESTDIR=ROOT works below ROOT, as install.sh does, without touching the running system.
set -euo pipefail

prefix=/opt/shuttle
purge=no
while (($#)); do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --purge) purge=yes; shift ;;
    -h | --help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
destdir=${DESTDIR:-}
destdir=${destdir%/}
say() { printf 'uninstall: %s\n' "$*" >&2; }
case $prefix in /*) ;; *) say "--prefix must be an absolute path"; exit 2 ;; esac
prefix=${prefix%/}
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then say "run as root (sudo $0)"; exit 1; fi
live() { [ -z "$destdir" ] && [ -d /run/systemd/system ]; }

target=$destdir$prefix
units=$destdir/etc/systemd/system
rules=$destdir/etc/udev/rules.d
polkit_rules=$destdir/etc/polkit-1/rules.d

# Only Shuttle's own folders are removed: a PREFIX naming /usr/local or another program's folder is
# refused before anything is touched.
for dir in "$target" "$target.new" "$target.old"; do
  if [ -z "$prefix" ] || { { [ -e "$dir" ] || [ -L "$dir" ]; } && [ ! -f "$dir/.shuttle-artifact" ]; }; then
    say "${dir:-/} is not a Shuttle install (it has no .shuttle-artifact); refusing to remove it"
    exit 1
  fi
done

# What was installed is named by the installed tree itself; fall back to the names this version ships.
unit_names=$(cd "$target/systemd" 2>/dev/null && ls -- *.service 2>/dev/null || echo 'shuttle.service shuttle-card@.service shuttle-eject@.service')
rule_names=$(cd "$target/udev" 2>/dev/null && ls -- *.rules 2>/dev/null || echo '70-shuttle-cameras.rules 70-shuttle-cards.rules 70-shuttle-lights.rules')
polkit_names=$(cd "$target/polkit" 2>/dev/null && ls -- *.rules 2>/dev/null || echo '50-shuttle.rules')

if live; then
  systemctl disable --now shuttle.service >&2 || true
  systemctl stop 'shuttle-card@*.service' >&2 || true
fi

for u in $unit_names; do rm -f "$units/$u"; done
for r in $rule_names; do rm -f "$rules/$r"; done
for r in $polkit_names; do rm -f "$polkit_rules/$r"; done
link=$destdir/usr/local/bin/shuttle
if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/shuttle" ]; then rm -f "$link"; fi
rm -rf "$target" "$target.new" "$target.old"
say "removed $prefix, the units, the udev rules and the polkit rule"

if [ "$purge" = yes ]; then
  # Drop-ins of the daemon, of the card template and of single cards (shuttle-card@sdb1.service.d).
  rm -rf "$units/shuttle.service.d" "$units"/shuttle-card@*.service.d
  rm -rf "$destdir/etc/shuttle" "$destdir/var/lib/shuttle" "$destdir/var/lib/private/shuttle" "$destdir/var/cache/shuttle" "$destdir/var/cache/private/shuttle"
  rm -rf "$destdir/run/shuttle" "$destdir/run/shuttle-card"
  # Card mount points go only when empty (rmdir): one that still holds a card keeps it, and is named.
  media=$destdir/media/shuttle
  if [ -d "$media" ]; then
    for m in "$media"/*/; do
      [ -d "$m" ] || continue
      rmdir "$m" 2>/dev/null || say "kept ${m%/}: a card is still mounted there, or it holds files"
    done
    rmdir "$media" 2>/dev/null || true
  fi
  if [ -z "$destdir" ]; then
    if getent passwd shuttle >/dev/null; then userdel shuttle; fi
    if getent group shuttle >/dev/null; then groupdel shuttle; fi
  else
    for f in passwd shadow group gshadow; do
      [ -f "$destdir/etc/$f" ] && sed -i '/^shuttle:/d' "$destdir/etc/$f"
    done
  fi
  say "purged the configuration, the journal, the cache, the drop-ins, the runtime folders and the user shuttle"
else
  say "kept /etc/shuttle, /var/lib/shuttle (the journal) and the user shuttle; --purge removes them"
fi

if live; then
  systemctl daemon-reload
fi
if [ -z "$destdir" ] && command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
  udevadm control --reload
fi
