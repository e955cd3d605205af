#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs every test.
# Needs root for apt-get and for the tests that mount filesystems (tmpfs for disk-full, FAT images).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  xxhash            # xxhsum: reference values for xxh64/xxh128
  dosfstools mtools exfatprogs # FAT32 and exFAT card images
  fusefat exfat-fuse # mount them where the kernel has no vfat/exfat driver (FUSE on a loop device)
  util-linux        # findmnt, lsblk, setpriv, mount
  gphoto2           # reference PTP/IP client for the camera simulator
  libusb-1.0-0      # runtime library of the usb/node-hid bindings
  swift swift-proxy swift-account swift-container swift-object # real S3-compatible server (s3api)
  systemd           # systemd-analyze verify/security on the units
  qemu-system-x86 linux-image-amd64 busybox-static cpio kmod # QEMU guests with Debian's kernel (USB hardware in the loop)
  debootstrap e2fsprogs udev # the systemd guest image for the installed-box suite
  avahi-daemon minissdpd # real mDNS and SSDP peers announcing a PTP/IP camera (discovery tests)
  strace            # observes the fsyncs and O_DIRECT opens of an adopted copy (publish tests)
  iproute2          # ss: the control socket's peer (pid, uid) is found through sock_diag
  make g++ python3  # node-gyp, which npm ci runs to build the sd_notify addon (binding.gyp)
  prometheus        # promtool check metrics: the daemon's /metrics as Prometheus reads it
  chromium          # headless browser for the dashboard's tests (driven by playwright-core)
  mosquitto mosquitto-clients # real MQTT broker and mosquitto_sub as the witness of the daemon's events
  python3-aiosmtpd  # real SMTP server receiving the daemon's notification mails
  alsa-utils        # aplay: the station's done and failed sounds, played to ALSA's null device in the tests
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# The sd_notify addon (binding.gyp): npm ci builds it; a checkout whose node_modules came otherwise may lack it.
[ -f build/Release/sd_notify.node ] || npm run --silent install
npm run --silent typecheck
npm run --silent lint
npm test -- "$@"
