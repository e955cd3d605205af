# Sourced by every guest script (POSIX sh; the guest runs this machine's /bin/sh). The console is the
# serial port the host reads: lines starting with "HIL:" are events for it, everything else is log.

hil_setup() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t tmpfs tmpfs /run
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/run TZ=UTC LANG=C.UTF-8
  # The host passes its settings in a file named on the kernel command line.
  for arg in $(cat /proc/cmdline); do
    case "$arg" in hil.env=*) . "${arg#hil.env=}" ;; esac
  done
  [ -n "$HIL_NODE" ] || hil_fail "no hil.env settings"
  export NODE_COMPILE_CACHE="$HIL_COMPILE_CACHE"
  cd /run || hil_fail "cd /run"
}

hil_event() { echo "HIL:$*"; }

hil_poweroff() {
  sync
  umount /dest 2>/dev/null
  poweroff -f
}

hil_fail() {
  echo "HIL:failed $*"
  hil_poweroff
}

hil_modules() {
  for m in "$@"; do modprobe "$m" || hil_fail "modprobe $m"; done
}

# Starts this machine's udevd, as every box runs one: node-usb's libusb is built with udev, and a process
# learns of a device plugged in after it started only from udevd's events (the kernel's own uevents do not
# reach libusb's monitor), so a session that must see a camera come back needs udevd.
hil_udevd() {
  udevd=/lib/systemd/systemd-udevd
  [ -x "$udevd" ] || hil_fail "no $udevd (apt-get install -y udev)"
  "$udevd" --daemon || hil_fail "systemd-udevd did not start"
  udevadm trigger --action=add --subsystem-match=usb || hil_fail "udevadm trigger"
  udevadm settle --timeout=60 || hil_fail "udevadm settle"
}

# Waits up to $2 seconds for a file or device node to exist.
hil_wait_path() {
  i=0
  while [ ! -e "$1" ]; do
    i=$((i + 1))
    [ "$i" -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
}

# The destination disk (virtio, ext4) at /dest: the host reads it back with debugfs afterwards.
hil_mount_dest() {
  hil_modules virtio_blk ext4
  hil_wait_path /dev/vda 20 || hil_fail "no /dev/vda"
  mkdir -p /dest
  mount -t ext4 /dev/vda /dest || hil_fail "mount /dev/vda"
  mkdir -p /dest/logs
}

# Waits up to $3 seconds for a USB device VID:PID to be enumerated.
hil_wait_usb() {
  i=0
  while :; do
    for d in /sys/bus/usb/devices/*; do
      [ "$(cat "$d/idVendor" 2>/dev/null):$(cat "$d/idProduct" 2>/dev/null)" = "$1:$2" ] && return 0
    done
    i=$((i + 1))
    [ "$i" -gt $(($3 * 10)) ] && return 1
    sleep 0.1
  done
}

# The benchmarks' guest (bench/usb.ts, bench/startup-usb.ts): the destination disk at /dest, udevd running
# as on every box, and the usb-mtp camera on the bus. Without udevd's database Shuttle learns what the
# destination's block device is by running lsblk and blkid, which costs seconds of process start-up under
# TCG before the first file.
hil_bench_setup() {
  hil_setup
  hil_modules xhci_pci
  hil_mount_dest
  hil_udevd
  udevadm trigger --action=add --subsystem-match=block && udevadm settle --timeout=60 || hil_fail "udevadm trigger (block)"
  hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
}

# shuttle NAME ARGS...: runs the CLI with ARGS, stdout to /dest/logs/NAME.json and the console, stderr to
# /dest/logs/NAME.log; the exit code is returned.
hil_shuttle() {
  name=$1
  shift
  "$HIL_NODE" "$HIL_SHUTTLE" "$@" > "/dest/logs/$name.json" 2> "/dest/logs/$name.log"
  rc=$?
  echo "HIL:result $name rc=$rc"
  return $rc
}
