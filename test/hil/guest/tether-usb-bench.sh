# Guest script for bench/tether-usb.ts: tethering sessions on the usb-mtp camera (writable, so that it
# queues ObjectAdded for files added to a listed folder), one tool per session in the order
# HIL_SESSIONS names them (shuttle | gphoto2). The host steers through files on the share "ctl" (mounted
# without a cache): go-N starts session N, stop-N ends it (then the host empties the card). The
# tools' output comes back stamped with the guest's clock (stamp.mjs), gphoto2's files when they are whole; usbmon records the device's events; "HIL:clock" lines relate the clocks.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci usbmon
hil_mount_dest
mount -t debugfs debugfs /sys/kernel/debug || hil_fail "mount debugfs"
hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
cat /sys/kernel/debug/usb/usbmon/0u > /dest/logs/usbmon.txt &
usbmon=$!
stamp=$(dirname "$0")/stamp.mjs
HIL_CTL=/run/ctl
mkdir -p "$HIL_CTL"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=none ctl "$HIL_CTL" || hil_fail "mount the ctl share"
"$HIL_NODE" "$stamp" clock 20

# Waits (by the clock: a loop's own cost under TCG is far from nothing) up to $2 seconds for file $1.
wait_file() {
  end=$(($(date +%s) + $2))
  while [ ! -e "$1" ]; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
}

i=0
for tool in $HIL_SESSIONS; do
  i=$((i + 1))
  wait_file "$HIL_CTL/go-$i" 900 || hil_fail "no go-$i from the host"
  rm -f /run/out.fifo
  mkfifo /run/out.fifo
  "$HIL_NODE" "$stamp" lines "$tool-$i" "/dest/logs/$tool-$i.out" < /run/out.fifo &
  stamper=$!
  watcher=""
  if [ "$tool" = shuttle ]; then
    "$HIL_NODE" "$HIL_SHUTTLE" tether usb: --dest "/dest/lib-$i" --state "/dest/state-$i" --json > /run/out.fifo 2> "/dest/logs/shuttle-$i.log" &
    pid=$!
    sig=TERM
  else
    mkdir -p "/dest/gp-$i"
    "$HIL_NODE" "$stamp" watch "written-$i" "/dest/gp-$i" "$HIL_SIZES" &
    watcher=$!
    # --list-files first: usb-mtp watches only folders a client has listed. Line-buffered, so that its
    # "Waiting for events" arrives when it is printed.
    (cd "/dest/gp-$i" && exec stdbuf -oL gphoto2 --list-files --wait-event-and-download=3600s --filename '%f.%C') > /run/out.fifo 2>&1 &
    pid=$!
    sig=INT
  fi
  hil_event "session-started $i $tool"
  wait_file "$HIL_CTL/stop-$i" 1800 || hil_event "no stop-$i from the host"
  kill "-$sig" "$pid"
  wait "$pid"
  rc=$?
  wait "$stamper"
  [ -n "$watcher" ] && kill "$watcher"
  hil_event "session-done $i $tool rc=$rc"
done
"$HIL_NODE" "$stamp" clock 20
kill "$usbmon"
hil_event "done"
hil_poweroff
