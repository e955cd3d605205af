# Guest script: `shuttle tether usb:` against the usb-mtp camera while the host adds shots to its folder,
# unplugs it over QMP, adds a shot while it is away, plugs it back and adds one more. Every output line of
# Shuttle comes back as a "HIL:out NAME LINE" console line; the session ends (SIGTERM) once three shots are
# verified, or after a bound.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci
hil_mount_dest
export SHUTTLE_LOG_LEVEL=debug

# Forwards each line of FILE ($2, appended to while a command runs) as "HIL:out NAME LINE".
forward() {
  # printf, not echo: the shell's echo turns the backslash-n inside a JSON string into a line break.
  tail -n +1 -F "$2" 2>/dev/null | while IFS= read -r line; do printf "HIL:out %s %s\n" "$1" "$line"; done &
}

hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
# udevd runs, as on a box: without it the session's libusb keeps listing the unplugged camera and never
# lists it plugged back.
hil_udevd
: > /dest/logs/tether.json
: > /dest/logs/tether.log
forward tether /dest/logs/tether.json
forward tether-log /dest/logs/tether.log
"$HIL_NODE" "$HIL_SHUTTLE" --state /dest/state tether usb: --dest /dest/lib --json --reconnect-timeout 60 > /dest/logs/tether.json 2> /dest/logs/tether.log &
tether=$!
end=$(($(date +%s) + 420))
while [ "$(grep -c '"event":"verified"' /dest/logs/tether.json)" -lt 3 ]; do
  kill -0 "$tether" 2>/dev/null || break
  [ "$(date +%s)" -ge "$end" ] && { echo "HIL:tether fewer than three shots verified within 420 s"; break; }
  sleep 0.5
done
kill -TERM "$tether" 2>/dev/null
wait "$tether"
echo "HIL:result tether rc=$?"
sleep 1
hil_event "done"
hil_poweroff
