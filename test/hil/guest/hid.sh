# Guest script: Shuttle's HID layer against QEMU's usb-kbd on /dev/hidraw0 (a stand-in for a USB foot
# pedal and, for the write path, a light). The host plugs and unplugs the keyboard and presses keys over QMP
# as the events below ask; every output line of Shuttle comes back as a "HIL:out NAME LINE" console line.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci usbhid hid_generic
export SHUTTLE_LOG_LEVEL=info

# Forwards each line of FILE (appended to while a command runs) as "HIL:out NAME LINE".
hil_forward() {
  # printf, not echo: the shell's echo turns the backslash-n inside a JSON string into a line break.
  tail -n +1 -F "$2" 2>/dev/null | while IFS= read -r line; do printf "HIL:out %s %s\n" "$1" "$line"; done &
}

# Waits up to $3 seconds (by the clock: under TCG a loop's own cost is far from nothing) for FILE ($1) to
# hold a line matching $2.
hil_wait_grep() {
  end=$(($(date +%s) + $3))
  while ! grep -q "$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}

cat > /run/pedals.toml <<'TOML'
[[pedals]]
device = "keyboard"
key = "b"
action = "capture"
TOML

# 1. The pedal watcher starts with no keyboard plugged in; the host plugs it, presses b, unplugs it,
#    plugs it back and presses b again: two captures, then the command exits (--count 2).
: > /run/pedal.json
: > /run/pedal.log
hil_forward pedal /run/pedal.json
hil_forward pedal-log /run/pedal.log
"$HIL_NODE" "$HIL_SHUTTLE" --config /run/pedals.toml hid pedal --json --count 2 > /run/pedal.json 2> /run/pedal.log &
pedal=$!
( sleep 240; kill "$pedal" 2>/dev/null ) &
guard=$!
wait "$pedal"
echo "HIL:result pedal rc=$?"
kill "$guard" 2>/dev/null

# 2. The keyboard is plugged in now: list it, then write a status-light state to it as a Luxafor
#    (output reports: the usb-kbd takes them as its LED report).
hil_wait_path /dev/hidraw0 30 || hil_fail "no /dev/hidraw0"
"$HIL_NODE" "$HIL_SHUTTLE" hid list --json > /run/list.json 2> /run/list.log
echo "HIL:result list rc=$?"
hil_forward list /run/list.json
: > /run/light.json
hil_forward light /run/light.json
"$HIL_NODE" "$HIL_SHUTTLE" hid light safe-to-pull --driver luxafor --path /dev/hidraw0 --hold 1 --json > /run/light.json 2> /run/light.log
echo "HIL:result light rc=$?"
sleep 1
cat /run/light.log

# 3. The keyboard as the pedal of a tethering session: the camera simulator (its capture pool is the host's
#    $HIL_POOL) on loopback, `shuttle tether` with the [[pedals]] above. The host presses b once the session
#    is ready; the shot that press fired must arrive verified, byte for byte the pool's image. Then SIGTERM.
ip link set lo up || hil_fail "no loopback"
mkdir -p /run/card/DCIM/100CANON /run/lib
"$HIL_NODE" "$HIL_SHUTTLE" simulate-camera --dir /run/card --pool "$HIL_POOL" --port 0 --time-zone UTC > /run/sim.out 2> /run/sim.log &
sim=$!
hil_wait_grep /run/sim.out '"port"' 180 || { cat /run/sim.log; hil_fail "the camera simulator did not start"; }
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' /run/sim.out)
: > /run/tether.json
: > /run/tether.log
hil_forward tether /run/tether.json
hil_forward tether-log /run/tether.log
"$HIL_NODE" "$HIL_SHUTTLE" --config /run/pedals.toml tether "ptpip:127.0.0.1:$port" --dest /run/lib --state /run/tstate --json > /run/tether.json 2> /run/tether.log &
tether=$!
hil_wait_grep /run/tether.json '"event":"verified"' 180 || echo "HIL:tether no shot verified within 180 s"
kill -TERM "$tether"
wait "$tether"
echo "HIL:result tether rc=$?"
kill -TERM "$sim"
wait "$sim"
copy=$(find /run/lib -name '*.JPG' | head -n 1)
if [ -n "$copy" ] && cmp -s "$copy" "$HIL_POOL/POOL_A.JPG"; then echo "HIL:result shot same"; else echo "HIL:result shot differs ($copy)"; fi
hil_event "done"
hil_poweroff
