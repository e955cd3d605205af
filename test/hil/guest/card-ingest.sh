# Guest script: a FAT32 card in a USB card reader, mounted read-only, ingested through the folder path.
. "$(dirname "$0")/common.sh"
hil_setup
hil_modules xhci_pci usb_storage sd_mod vfat
# vfat's default code page and character set, in case they are modules.
modprobe nls_cp437 2>/dev/null
modprobe nls_utf8 2>/dev/null
hil_mount_dest
hil_wait_path /dev/sda 30 || hil_fail "the card reader did not appear"
mkdir -p /media/card
mount -t vfat -o ro /dev/sda /media/card || hil_fail "mount the card"
hil_event ready
hil_shuttle ingest --state /dest/state ingest /media/card --dest /dest/lib --json
hil_event "done rc=$?"
umount /media/card
hil_poweroff
