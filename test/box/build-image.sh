#!/usr/bin/env bash
# build-image.sh OUT: the "box" guest for end-to-end tests of the installer, units and rules: Debian
# bookworm (debootstrap minbase) that boots systemd as PID 1 under QEMU, with udev and this machine's
# kernel modules, and deliberately no Node and no npm (the Shuttle artifact must bring its own).
#
# Writes OUT/rootfs.img (ext4), OUT/vmlinuz, OUT/initrd.img (Debian's, for root=/dev/vda) and OUT/key;
# the caller reuses OUT while OUT/key matches. At boot the guest mounts two 9p shares, `artifact` at
# /artifact (read-only) and `out` at /out, and runs /out/agent.sh once as root (output in /out/agent.log).
set -euo pipefail
out=${1:?usage: build-image.sh OUT}
need() { command -v "$1" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; command -v "$1" >/dev/null || { echo "build-image: $1 missing (apt-get install $2)" >&2; exit 1; }; }
PATH=$PATH:/usr/sbin:/sbin
need debootstrap debootstrap
need qemu-system-x86_64 qemu-system-x86
need mkfs.ext4 e2fsprogs
kver=$(ls /lib/modules | sort -V | tail -n 1)
[ -f "/boot/vmlinuz-$kver" ] && [ -f "/boot/initrd.img-$kver" ] || {
  echo "build-image: no /boot/vmlinuz-$kver and initrd.img-$kver (apt-get install linux-image-amd64)" >&2
  exit 1
}

mkdir -p "$out"
stage=$(mktemp -d "${out%/}.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
r=$stage/root
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod,util-linux,mount,procps,adduser,dbus,curl,inotify-tools \
  bookworm "$r" ${mirror:+"$mirror"} > "$stage/debootstrap.log" 2>&1 || { tail -n 30 "$stage/debootstrap.log" >&2; exit 1; }
# polkitd's set-up fails inside debootstrap's own configuration pass: installed afterwards, in the chroot.
chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends polkitd > "$stage/polkitd.log" 2>&1 || { tail -n 30 "$stage/polkitd.log" >&2; exit 1; }
chroot "$r" apt-get clean
mkdir -p "$r/lib/modules"
cp -a "/lib/modules/$kver" "$r/lib/modules/"
chroot "$r" passwd -d root > /dev/null
echo shuttle-box > "$r/etc/hostname"
mkdir -p "$r/artifact" "$r/out"
# Mounted on first use, after the 9p modules are loaded: mounted at boot, a share whose virtio device
# was not probed yet failed the boot into emergency mode.
cat > "$r/etc/fstab" <<'EOF'
artifact /artifact 9p trans=virtio,version=9p2000.L,ro,msize=524288,x-systemd.automount,x-systemd.requires=systemd-modules-load.service 0 0
out /out 9p trans=virtio,version=9p2000.L,msize=524288,x-systemd.automount,x-systemd.requires=systemd-modules-load.service 0 0
EOF
printf '9p\n9pnet_virtio\nxhci_pci\n' > "$r/etc/modules-load.d/box.conf"
# QEMU's user network (slirp): a fixed address, the host's loopback reached as 10.0.2.2.
mkdir -p "$r/etc/systemd/network"
cat > "$r/etc/systemd/network/10-box.network" <<'EOF'
[Match]
Type=ether
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
EOF
ln -sf /lib/systemd/system/systemd-networkd.service "$r/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
cat > "$r/etc/systemd/system/box-agent.service" <<'EOF'
[Unit]
Description=End-to-end test agent (/out/agent.sh)
After=multi-user.target
RequiresMountsFor=/out /artifact
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'exec /bin/sh /out/agent.sh > /out/agent.log 2>&1'
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/box-agent.service "$r/etc/systemd/system/multi-user.target.wants/box-agent.service"
# Nothing else to wait for at boot.
rm -f "$r/etc/systemd/system/getty.target.wants/"* "$r/etc/systemd/system/timers.target.wants/"*

rm -f "$out/rootfs.img.tmp"
mkfs.ext4 -q -d "$r" "$out/rootfs.img.tmp" 2G
cp "/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "/boot/initrd.img-$kver" "$out/initrd.img"
mv "$out/rootfs.img.tmp" "$out/rootfs.img"
echo "built $out/rootfs.img (kernel $kver)" >&2
