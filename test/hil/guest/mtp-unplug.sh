# Guest script: ingest from the usb-mtp camera, which the host unplugs in the middle of a big file (when
# the guest reports a temp file past HIL_UNPLUG_AT_KB) and plugs back in after the first run; then ingest again.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci
hil_mount_dest
hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
(
  while :; do
    f=$(find /dest/lib -name '*.shuttle-tmp' -size "+${HIL_UNPLUG_AT_KB}k" 2>/dev/null | head -n 1)
    if [ -n "$f" ]; then hil_event "mid-transfer $f"; break; fi
    sleep 0.1
  done
) &
watcher=$!
hil_shuttle run1 --state /dest/state ingest usb: --dest /dest/lib --json
rc=$?
kill "$watcher" 2>/dev/null
hil_event "run1-done rc=$rc"
# The host plugs the camera back in once it has seen run1-done.
hil_wait_usb 46f4 0004 60 || hil_fail "the camera did not come back"
hil_shuttle run2 --state /dest/state ingest usb: --dest /dest/lib --json
hil_event "run2-done rc=$?"
hil_poweroff
