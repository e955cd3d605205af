#!/usr/bin/env bash
# build-initramfs.sh OUTDIR [KERNEL_VERSION]
#
# Builds the hardware-in-the-loop guest: Debian's kernel plus a busybox initramfs whose /init mounts this
# machine's root filesystem read-only over 9p (mount tag "hostroot") under a tmpfs overlay, then execs the
# script named by `hil.script=` on the kernel command line. Every host binary (node, gphoto2, the project)
# then runs in the guest as it is; USB drivers are loaded from the host's /lib/modules by the test script.
# Writes OUTDIR/vmlinuz and OUTDIR/initramfs.gz; the caller caches OUTDIR per kernel version.
set -euo pipefail
out=${1:?usage: build-initramfs.sh OUTDIR [KERNEL_VERSION]}
kver=${2:-$(ls /lib/modules | sort -V | tail -n 1)}
[ -f "/boot/vmlinuz-$kver" ] || { echo "no /boot/vmlinuz-$kver (apt-get install linux-image-amd64)" >&2; exit 1; }
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || { echo "no busybox (apt-get install busybox-static)" >&2; exit 1; }
command -v cpio >/dev/null || { echo "no cpio (apt-get install cpio)" >&2; exit 1; }
bb=$(command -v busybox)
# A dynamically linked busybox would need the host's libc before the root is mounted.
if ldd "$bb" >/dev/null 2>&1; then echo "$bb is not static (apt-get install busybox-static)" >&2; exit 1; fi

mkdir -p "$(dirname "$out")"
stage=$(mktemp -d "${out%/}.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,lib/mods,proc,sys,dev,lower,rw,root}
cp "$bb" "$stage/bin/busybox"
for applet in sh mount umount insmod mkdir switch_root cat echo sleep poweroff; do ln -s busybox "$stage/bin/$applet"; done

# The four modules the initramfs needs before the root exists, with their dependencies, in load order.
: > "$stage/lib/mods/order"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }' | while read -r ko; do
    name=$(basename "$ko"); name=${name%.xz}; name=${name%.zst}
    grep -qx "$name" "$stage/lib/mods/order" && continue
    case "$ko" in
      *.xz) xz -dc "$ko" > "$stage/lib/mods/$name" ;;
      *.zst) zstd -qdc "$ko" > "$stage/lib/mods/$name" ;;
      *) cp "$ko" "$stage/lib/mods/$name" ;;
    esac
    echo "$name" >> "$stage/lib/mods/order"
  done
done

cat > "$stage/init" <<'INIT'
#!/bin/sh
# PID 1 of the guest: host root (read-only, 9p) + tmpfs upper layer, then the test script.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "HIL-INIT-FAILED: $*"; poweroff -f; }
while read -r m; do insmod "/lib/mods/$m" || fail "insmod $m"; done < /lib/mods/order
script=
for arg in $(cat /proc/cmdline); do case "$arg" in hil.script=*) script=${arg#hil.script=} ;; esac; done
[ -n "$script" ] || fail "no hil.script= on the kernel command line"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower || fail "9p mount of the host root"
mount -t tmpfs -o size=75% tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /root || fail "overlay"
mount --move /dev /root/dev
umount /proc /sys
exec switch_root /root /bin/sh "$script"
INIT
chmod 755 "$stage/init"

mkdir -p "$out"
(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initramfs.gz.tmp"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
echo "$kver" > "$out/kernel-version"
