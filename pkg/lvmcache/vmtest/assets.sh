#!/usr/bin/env bash
# Builds, once, what the lvm VM test boots: a Debian kernel and a base
# initramfs holding busybox, lvm2, dmsetup, cache_check, their libraries and
# the device-mapper modules dm-cache needs. The result is cached under
# $OPSCTL_LVM_VM_CACHE (default /var/tmp/opsctl-lvm-vm), keyed by the kernel
# package, the host's lvm2 and this script, so a rerun costs nothing.
#
# Prints two lines: KERNEL=<path> and INITRD=<path>. The test appends its own
# cpio archive (the opsctl binary and the test script) to INITRD.
set -euo pipefail

cache=${OPSCTL_LVM_VM_CACHE:-/var/tmp/opsctl-lvm-vm}
here=$(cd "$(dirname "$0")" && pwd)
modules=(loop crc32c_generic libcrc32c dm-mod dm-bufio dm-bio-prison dm-persistent-data dm-cache dm-cache-smq dm-delay)
apt_lock=/var/lock/opsctl-testdeps.lock

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || { echo "assets: $1 not found (Debian package $2)" >&2; exit 3; }; }
need busybox busybox-static
need lvm lvm2
need dmsetup dmsetup
need cache_check thin-provisioning-tools
need cpio cpio
need apt-get apt
need dpkg dpkg

mkdir -p "$cache"
exec 8>"$cache/.lock"
flock 8

# The kernel package that linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  # An empty package list: refresh it once, under the lock every apt user here takes.
  flock "$apt_lock" apt-get update -qq >&2 || true
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
fi
[ -n "$kpkg" ] || { echo "assets: apt-cache does not know linux-image-amd64" >&2; exit 3; }

lvm_bin=$(command -v lvm || echo /sbin/lvm)
key=$( { echo "$kpkg"; sha256sum "$0" "$here/init" "$lvm_bin"; } | sha256sum | cut -c1-16)
out="$cache/$key"
if [ -s "$out/vmlinuz" ] && [ -s "$out/base.cpio.gz" ]; then
  echo "KERNEL=$out/vmlinuz"
  echo "INITRD=$out/base.cpio.gz"
  exit 0
fi

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

deb=$(ls "$cache"/"$kpkg"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  echo "assets: downloading $kpkg" >&2
  (cd "$work" && flock "$apt_lock" apt-get download -q "$kpkg" >&2)
  mv "$work"/"$kpkg"_*.deb "$cache/"
  deb=$(ls "$cache"/"$kpkg"_*.deb | head -n1)
fi
dpkg -x "$deb" "$work/k"
kver=${kpkg#linux-image-}

root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/sbin,etc/lvm,lib/modules,proc,sys,dev,tmp,run/lock/lvm,mnt}
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# lvm2, dmsetup and cache_check with every library they load.
copy_with_libs() {
  local bin=$1 dest=$2
  cp "$bin" "$root$dest"
  ldd "$bin" | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$lvm_bin" /sbin/lvm
copy_with_libs "$(command -v dmsetup || echo /sbin/dmsetup)" /sbin/dmsetup
copy_with_libs "$(command -v cache_check || echo /usr/sbin/cache_check)" /usr/sbin/cache_check
mkdir -p "$root/lib64"
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

for m in "${modules[@]}"; do
  f=$(find "$work/k/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)
  [ -n "$f" ] || { echo "assets: module $m not in $kpkg" >&2; exit 3; }
  case "$f" in
    *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
    *.gz) gzip -dc "$f" >"$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
done
printf '%s\n' "${modules[@]}" >"$root/lib/modules/order"

cat >"$root/etc/lvm/lvm.conf" <<'CONF'
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
devices {
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
}
global {
	use_lvmpolld = 0
}
CONF
cp "$here/init" "$root/init"
chmod 755 "$root/init"

mkdir -p "$out.tmp"
cp "$work/k/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp/base.cpio.gz"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "KERNEL=$out/vmlinuz"
echo "INITRD=$out/base.cpio.gz"
