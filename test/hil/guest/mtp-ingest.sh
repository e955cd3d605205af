# Guest script: `shuttle devices` lists the usb-mtp camera, `shuttle ingest usb:` copies it onto the destination disk.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci
hil_mount_dest
hil_wait_usb 46f4 0004 30 || hil_fail "the usb-mtp camera did not appear"
hil_event ready
hil_shuttle devices devices --json --no-network
# A zone away from UTC: usb-mtp writes its dates in UTC without saying so, and only the quirk for its USB
# id keeps Shuttle from reading them in this zone.
export TZ=Europe/Berlin
hil_shuttle ingest --state /dest/state ingest usb: --dest /dest/lib --json
hil_event "done rc=$?"
hil_poweroff
