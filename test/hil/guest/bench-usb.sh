# Guest script for bench/usb.ts: the same usb-mtp camera downloaded by gphoto2 --get-all-files, then
# ingested by Shuttle, each timed by the guest's clock. Prints "HIL:time NAME SECONDS rc=N" lines.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci
hil_mount_dest
hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
up() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(up); "$HIL_NODE" -e 0; t1=$(up)
hil_event "time node-startup $(took "$t0" "$t1") rc=0"

mkdir -p /dest/gphoto && cd /dest/gphoto || hil_fail "cd /dest/gphoto"
t0=$(up)
gphoto2 --quiet --get-all-files --filename '%F/%f.%C' > /dest/logs/gphoto2.log 2>&1
rc=$?
sync
t1=$(up)
hil_event "time gphoto2 $(took "$t0" "$t1") rc=$rc"
hil_event "count gphoto2 $(find /dest/gphoto -type f | wc -l)"

cd /run
hil_event "clock shuttle-start $(date +%s%3N)"
t0=$(up)
hil_shuttle ingest --state /dest/state ingest usb: --dest /dest/lib --json
rc=$?
t1=$(up)
hil_event "time shuttle $(took "$t0" "$t1") rc=$rc"
hil_poweroff
