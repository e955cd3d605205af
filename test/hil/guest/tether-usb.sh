# Guest script: `shuttle tether usb:` against the usb-mtp camera (writable, so that QEMU watches the
# folders a client listed and queues ObjectAdded for files added to them) while the host adds files to its
# card. usbmon records what the device sent on the bus. Each line Shuttle prints comes back as "HIL:stamp tether MS LINE"; once
# HIL_EXPECT shots are verified, the session gets SIGTERM.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci usbmon
hil_mount_dest
mount -t debugfs debugfs /sys/kernel/debug || hil_fail "mount debugfs"
hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
# Every URB of every bus, with the first bytes of its data (an event container fits).
cat /sys/kernel/debug/usb/usbmon/0u > /dest/logs/usbmon.txt &
usbmon=$!
stamp=$(dirname "$0")/stamp.mjs

# Counts the lines of $1 matching $2.
count() { grep -c "$2" "$1" 2>/dev/null || true; }

mkfifo /run/tether.out
: > /dest/logs/tether.json
"$HIL_NODE" "$stamp" lines tether /dest/logs/tether.json < /run/tether.out &
stamper=$!
# Debug logging: the tethered source logs each new shot with its object handle.
SHUTTLE_LOG_LEVEL=debug "$HIL_NODE" "$HIL_SHUTTLE" tether usb: --dest /dest/lib --state /dest/state --json > /run/tether.out 2> /dest/logs/tether.log &
tether=$!

end=$(($(date +%s) + HIL_TIMEOUT_S))
while [ "$(count /dest/logs/tether.json '"event":"verified"')" -lt "$HIL_EXPECT" ]; do
  if [ "$(date +%s)" -ge "$end" ] || ! kill -0 "$tether" 2>/dev/null; then
    hil_event "tether gave up: $(count /dest/logs/tether.json '"event":"verified"') of $HIL_EXPECT verified"
    break
  fi
  sleep 0.2
done
kill -TERM "$tether" 2>/dev/null
wait "$tether"
hil_event "result tether rc=$?"
wait "$stamper"
kill "$usbmon"
hil_event "done"
hil_poweroff
