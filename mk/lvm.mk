# opsctl lvm cache: the VM integration test boots a Debian kernel in qemu.
# `make test` fetches the kernel (apt-get download, under the apt lock) and
# builds the base initramfs once, cached in /var/tmp/opsctl-lvm-vm, after the
# test components are installed and before the tests run. A failure here is
# not fatal: the VM test runs assets.sh again and reports the reason itself.
.PHONY: lvm-vm-assets lvm-vm-test bench-lvm

unit: lvm-vm-assets

lvm-vm-assets: test-deps
	@pkg/lvmcache/vmtest/assets.sh >/dev/null || echo "lvm: VM assets not ready; TestLVMCacheOnRealLVM2InVM will say why" >&2

# The VM test alone, verbose.
lvm-vm-test: build lvm-vm-assets
	OPSCTL_BIN=$(CURDIR)/bin/opsctl $(GO) test -count=1 -timeout 20m -v -run TestLVMCacheOnRealLVM2InVM ./pkg/lvmcache/vmtest/

# Recache vs online resize of the same cached LV with the same dirty blocks
# (LVM_MEASURE_MB MiB written while dm-cache's writeback is frozen); then
# the flush of those blocks by opsctl (both methods) and by lvm2's uncache,
# on an idle LV and with a writer keeping the origin busy.
# LVM_MEASURE_DELAY_MS delays every write to the origin's PV (dm-delay), a
# stand-in for a spinning disk; empty for none.
LVM_MEASURE_MB ?= 128
LVM_MEASURE_DELAY_MS ?= 10
bench-lvm: build lvm-vm-assets
	@set -o pipefail; OPSCTL_BIN=$(CURDIR)/bin/opsctl OPSCTL_LVM_MEASURE=$(LVM_MEASURE_MB) OPSCTL_LVM_MEASURE_DELAY_MS=$(LVM_MEASURE_DELAY_MS) $(GO) test -count=1 -timeout 30m -v -run TestMeasureRecacheVsOnline ./pkg/lvmcache/vmtest/ | grep -E '^(measure|--- FAIL|FAIL|ok)'
