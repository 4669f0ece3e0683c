package pygrubfix

import "strings"

// KickstartPost is a kickstart %post section for EL7-style guests of a Xen
// 4.1 host. It installs a small generator that writes /boot/grub/menu.lst
// from the installed kernels (newest first, default 0), runs it once, and
// hooks it into kernel installation and removal, so that menu.lst never
// goes stale (the snippet usually copied from blogs writes it once, and the
// guest stops booting when that kernel is removed):
//
//   - /etc/kernel/postinst.d and /etc/kernel/prerm.d: run by new-kernel-pkg
//     (EL7) and Debian's kernel packages with the kernel version;
//   - /etc/kernel/install.d/99-opsctl-pygrub-menulst.install: run by
//     kernel-install (Fedora, EL8+); it is PluginScript, which in a Boot
//     Loader Spec guest (EL8, EL9) writes /boot/grub/grub.cfg and menu.lst
//     from the entries grub boots, and elsewhere runs the generator.
//
// In a BLS guest the generator hands over to the plugin, so the section
// serves EL7 and EL8/EL9 kickstarts alike.
//
// It reads /etc/fstab for the root device and whether /boot is a partition
// of its own, and /etc/default/grub for GRUB_CMDLINE_LINUX. Every path is
// prefixed with $OPSCTL_MENULST_ROOT (empty at install time), which lets
// the section run against a folder.
//
// root is where the installed system is when the section runs: "" or "/"
// for a %post inside it (the kickstart default), else a folder such as
// /mnt/sysimage, and the section is a `%post --nochroot` working there.
// The kernel hooks it installs always run inside the installed system.
func KickstartPost(root string) string {
	header, rootDefault := "%post --log=/root/opsctl-pygrub-menulst.log", ""
	if root = strings.TrimRight(root, "/"); root != "" {
		header = "%post --nochroot --log=" + root + "/root/opsctl-pygrub-menulst.log"
		rootDefault = root
	}
	return strings.NewReplacer("@HEADER@", header, "@ROOT@", shellQuoteForDoubleQuotes(rootDefault), "@GENERATOR@", menulstGenerator, "@PLUGIN@", PluginScript()).Replace(kickstartTemplate)
}

// shellQuoteForDoubleQuotes escapes s for use inside "..." in sh.
func shellQuoteForDoubleQuotes(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(s)
}

// GeneratorScript is the shell script the %post section installs as
// /usr/local/sbin/opsctl-pygrub-menulst.
func GeneratorScript() string { return menulstGenerator }

const kickstartTemplate = `@HEADER@
# Written by opsctl pygrub menulst --kickstart: keep /boot/grub/menu.lst
# current for pygrub of Xen 4.1 hosts, which cannot read grub2.
R="${OPSCTL_MENULST_ROOT:-@ROOT@}"
mkdir -p "$R/usr/local/sbin" "$R/etc/kernel/postinst.d" "$R/etc/kernel/prerm.d" "$R/etc/kernel/install.d" "$R/boot/grub"
cat > "$R/usr/local/sbin/opsctl-pygrub-menulst" <<'OPSCTL_GENERATOR'
@GENERATOR@OPSCTL_GENERATOR
chmod 0755 "$R/usr/local/sbin/opsctl-pygrub-menulst"

cat > "$R/etc/kernel/postinst.d/99-opsctl-pygrub-menulst" <<'OPSCTL_HOOK'
#!/bin/sh
# $1 is the kernel version just installed.
exec "${OPSCTL_MENULST_ROOT:-}/usr/local/sbin/opsctl-pygrub-menulst"
OPSCTL_HOOK
cat > "$R/etc/kernel/prerm.d/99-opsctl-pygrub-menulst" <<'OPSCTL_HOOK'
#!/bin/sh
# $1 is the kernel version about to be removed.
OPSCTL_MENULST_EXCLUDE="$1" exec "${OPSCTL_MENULST_ROOT:-}/usr/local/sbin/opsctl-pygrub-menulst"
OPSCTL_HOOK
cat > "$R/etc/kernel/install.d/99-opsctl-pygrub-menulst.install" <<'OPSCTL_PLUGIN'
@PLUGIN@OPSCTL_PLUGIN
chmod 0755 "$R/etc/kernel/postinst.d/99-opsctl-pygrub-menulst" "$R/etc/kernel/prerm.d/99-opsctl-pygrub-menulst" "$R/etc/kernel/install.d/99-opsctl-pygrub-menulst.install"

OPSCTL_MENULST_ROOT="$R" "$R/usr/local/sbin/opsctl-pygrub-menulst"
%end
`

const menulstGenerator = `#!/bin/sh
# opsctl-pygrub-menulst: write /boot/grub/menu.lst (grub-legacy) from the
# installed kernels, newest first, for Xen 4.1's pygrub. Installed by
# opsctl pygrub menulst --kickstart; run by the kernel hooks.
set -eu
R="${OPSCTL_MENULST_ROOT:-}"
# A Boot Loader Spec guest (EL8, EL9: grub.cfg runs blscfg): the
# kernel-install plugin writes grub.cfg and menu.lst from its entries.
plugin="$R/etc/kernel/install.d/99-opsctl-pygrub-menulst.install"
if [ -z "${OPSCTL_PYGRUB_FROM_PLUGIN:-}" ] && [ -x "$plugin" ] && [ -d "$R/boot/loader/entries" ] &&
  grep -qs '^[[:space:]]*blscfg[[:space:]]*$' "$R/boot/grub2/grub.cfg"; then
  OPSCTL_PYGRUB_FROM_GENERATOR=1
  export OPSCTL_PYGRUB_FROM_GENERATOR
  exec "$plugin" add ""
fi
exclude="${OPSCTL_MENULST_EXCLUDE:-}"
menu="$R/boot/grub/menu.lst"

# Kernel paths are relative to the file system that holds them: / of a
# separate /boot partition, else /boot of the root file system.
prefix=/boot
if awk '$1 !~ /^#/ && $2 == "/boot" { found = 1 } END { exit !found }' "$R/etc/fstab" 2>/dev/null; then
  prefix=
fi
rootdev=$(awk '$1 !~ /^#/ && $2 == "/" { print $1; exit }' "$R/etc/fstab" 2>/dev/null || true)
cmdline=
if [ -r "$R/etc/default/grub" ]; then
  cmdline=$(set +eu; . "$R/etc/default/grub" >/dev/null 2>&1; printf '%s' "${GRUB_CMDLINE_LINUX:-}")
fi
name=Linux
if [ -r "$R/etc/os-release" ]; then
  name=$(set +eu; . "$R/etc/os-release" >/dev/null 2>&1; printf '%s' "${PRETTY_NAME:-${NAME:-Linux}}")
fi

mkdir -p "$R/boot/grub"
tmp=$(mktemp "$menu.XXXXXX")
trap 'rm -f "$tmp"' EXIT
{
  echo "# Written by opsctl-pygrub-menulst for Xen's pygrub; rewritten at every"
  echo "# kernel installation and removal. Do not edit."
  echo "default=0"
  echo "timeout=5"
  n=0
  for version in $(ls "$R/boot" | sed -n 's/^vmlinuz-//p' | sort -V -r); do
    [ "$version" = "$exclude" ] && continue
    initrd=
    for candidate in "initramfs-$version.img" "initrd.img-$version" "initrd-$version.img" "initrd-$version"; do
      if [ -e "$R/boot/$candidate" ]; then initrd=$candidate; break; fi
    done
    echo "title $name ($version)"
    echo "	root (hd0,0)"
    echo "	kernel $prefix/vmlinuz-$version${rootdev:+ root=$rootdev} ro${cmdline:+ $cmdline}"
    if [ -n "$initrd" ]; then echo "	initrd $prefix/$initrd"; fi
    n=$((n + 1))
  done
  if [ "$n" = 0 ]; then
    echo "opsctl-pygrub-menulst: no kernel in $R/boot, $menu left as it was" >&2
    exit 1
  fi
} > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$menu"
trap - EXIT
`
