#!/bin/sh
# Runs inside the throwaway lvm VM (see assets.sh, init and vm_test.go):
# real lvm2 and dm-cache on loop devices over sparse files in tmpfs. Every
# opsctl lvm command runs here; each result is one console line
#   @@STEP <name> rc=<exit code> out=<base64 stdout> err=<base64 stderr>
# followed by
#   @@DATA <name> ok|bad
# (the sha256 of the LV's data against the expected copy), so that the Go
# test asserts on every result. @@CAPTURE lines carry raw lvm2 JSON reports
# for the unit tests' testdata.
export PATH=/bin:/sbin:/usr/sbin
OPSCTL=/opsctl
VG=storage
LV=slowlv
DEV=/dev/$VG/$LV
EXPECT=/tmp/expect
STATE=/tmp/state
ORIG_MB=32
DATA_MB=12
# A --state-dir must exist (opsctl makes only its default one).
mkdir -m 0700 $STATE

b64() { base64 -w0 <"$1"; }

step() {
	name=$1
	shift
	"$@" </dev/null >/tmp/step.out 2>/tmp/step.err
	rc=$?
	echo "@@STEP $name rc=$rc out=$(b64 /tmp/step.out) err=$(b64 /tmp/step.err) t=$(cut -d' ' -f1 /proc/uptime)"
	check_data "$name"
}

# check_data compares the LV's first bytes with the expected copy: the
# data written so far must survive every step.
check_data() {
	want=$(sha256sum <"$EXPECT" | cut -d' ' -f1)
	echo 3 >/proc/sys/vm/drop_caches
	got=$(timeout 60 head -c "$(stat -c %s "$EXPECT")" "$DEV" | sha256sum | cut -d' ' -f1)
	if [ "$want" = "$got" ]; then
		echo "@@DATA $1 ok"
	else
		echo "@@DATA $1 bad want=$want got=$got"
		dmsetup info -c
		grep -E 'MemFree|Shmem:' /proc/meminfo
	fi
}

capture() {
	name=$1
	shift
	"$@" >/tmp/capture.out 2>/dev/null
	echo "@@CAPTURE $name $(b64 /tmp/capture.out)"
}

# dirty overwrites MB mebibytes at the start of the LV, in the LV and in the
# expected copy alike, after freezing dm-cache's writeback so that the
# blocks stay dirty until someone flushes them. Blocks are read twice first
# so that dm-cache promotes them and the writes hit the cache.
dirty() {
	mb=$1
	seed=$2
	dmsetup message "$VG-$LV" 0 migration_threshold 0
	dd if=/dev/urandom of=/tmp/chunk bs=1M count="$mb" 2>/dev/null
	dd if=/tmp/chunk of="$DEV" bs=1M oflag=direct conv=notrunc 2>/dev/null
	dd if=/tmp/chunk of="$EXPECT" bs=1M conv=notrunc 2>/dev/null
	sync
	rm -f /tmp/chunk
}

# Measurement mode (make bench-lvm): the same cached LV with the same
# number of dirty blocks, grown once by recache and once online.
measure_mb=$(sed -n 's/.*opsctl\.measure=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$measure_mb" ]; then
	truncate -s 2G /tmp/slow.img
	truncate -s 512M /tmp/fast.img
	losetup /dev/loop0 /tmp/slow.img
	losetup /dev/loop1 /tmp/fast.img
	# The "spinning disk": every write to the origin's PV waits
	# opsctl.delay ms (dm-delay); lvm2 is told to use only the delayed device.
	delay=$(sed -n 's/.*opsctl\.delay=\([0-9]*\).*/\1/p' /proc/cmdline)
	slow=/dev/loop0
	if [ -n "$delay" ]; then
		dmsetup create slowdisk --table "0 $(blockdev --getsz /dev/loop0) delay /dev/loop0 0 0 /dev/loop0 0 $delay"
		sed -i 's|^devices {|devices {\n\tglobal_filter = [ "r\|^/dev/loop0$\|" ]|' /etc/lvm/lvm.conf
		# lvm2 finds dm devices under their kernel name here (no udev).
		slow=/dev/$(dmsetup info -c --noheadings -o blkdevname slowdisk)
	fi
	lvm pvcreate -q $slow /dev/loop1 >/dev/null
	lvm vgcreate -q $VG $slow /dev/loop1 >/dev/null
	lvm lvcreate -q -n $LV -L $((measure_mb * 2))M $VG $slow </dev/null >/dev/null
	dd if=/dev/zero of=$EXPECT bs=1M count=1 2>/dev/null
	$OPSCTL lvm cache create $VG/$LV --size $((measure_mb + 64))M --cache-pv /dev/loop1 -y --state-dir $STATE >/dev/null
	for strategy in recache online; do
		dirty "$measure_mb"
		blocks=$($OPSCTL lvm cache status $VG/$LV -o json | sed -n 's/.*"dirty_blocks": \([0-9]*\).*/\1/p')
		start=$(cut -d' ' -f1 /proc/uptime)
		out=$($OPSCTL --log-level debug lvm cache resize $VG/$LV --size +64M --strategy $strategy -y --state-dir $STATE 2>&1)
		rc=$?
		polls=$(echo "$out" | grep -o 'dirty_blocks_left=[0-9]*' | cut -d= -f2 | tr '\n' ,)
		end=$(cut -d' ' -f1 /proc/uptime)
		left=$($OPSCTL lvm cache status $VG/$LV -o json | sed -n 's/.*"dirty_blocks": \([0-9]*\).*/\1/p')
		echo "@@MEASURE $strategy rc=$rc dirty_before=$blocks dirty_after=$left polls=$polls start=$start end=$end out=$(echo "$out" | grep resized | base64 -w0)"
	done
	echo "@@END"
	exit 0
fi

echo "@@LVMVERSION $(lvm version | head -n1 | base64 -w0)"
truncate -s 512M /tmp/slow.img
truncate -s 256M /tmp/fast.img
truncate -s 64M /tmp/other.img
losetup /dev/loop0 /tmp/slow.img
losetup /dev/loop1 /tmp/fast.img
losetup /dev/loop2 /tmp/other.img
lvm pvcreate -q /dev/loop0 /dev/loop1 /dev/loop2 >/dev/null
lvm vgcreate -q $VG /dev/loop0 /dev/loop1 >/dev/null
lvm vgcreate -q othervg /dev/loop2 >/dev/null
lvm lvcreate -q -n $LV -L ${ORIG_MB}M $VG /dev/loop0 </dev/null >/dev/null
lvm lvcreate -q -n plainlv -L 8M $VG /dev/loop0 </dev/null >/dev/null
dd if=/dev/urandom of=$EXPECT bs=1M count=$DATA_MB 2>/dev/null
dd if=$EXPECT of=$DEV bs=1M oflag=direct 2>/dev/null
echo "@@SETUP done"

capture lvs-plain lvm lvs -a --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,segtype,lv_layout,lv_attr,cache_mode,cache_policy,cache_settings,chunk_size,cache_total_blocks,cache_used_blocks,cache_dirty_blocks,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,pool_lv,data_lv,metadata_lv,devices $VG
capture pvs lvm pvs --reportformat json --units b --nosuffix -o pv_name,vg_name,pv_size,pv_free,pv_attr,vg_extent_size
capture vgs lvm vgs --reportformat json --units b --nosuffix -o vg_name
capture version lvm version

S="--state-dir $STATE"

# Bad input: nothing may change, one clear line, exit 1 or 2.
step bad-size-unit $OPSCTL lvm cache create $VG/$LV --size 12Q --cache-pv /dev/loop1 -y $S
step bad-size-negative $OPSCTL lvm cache resize $VG/$LV --size -5G -y $S
step bad-name $OPSCTL lvm cache create not-a-name --size 32M --cache-pv /dev/loop1 -y $S
step unknown-vg $OPSCTL lvm cache create nosuchvg/$LV --size 32M --cache-pv /dev/loop1 -y $S
step unknown-lv $OPSCTL lvm cache create $VG/nosuchlv --size 32M --cache-pv /dev/loop1 -y $S
step pv-outside-vg $OPSCTL lvm cache create $VG/$LV --size 32M --cache-pv /dev/loop2 -y $S
step no-room $OPSCTL lvm cache create $VG/$LV --size 300M --cache-pv /dev/loop1 -y $S
step no-confirmation $OPSCTL lvm cache create $VG/$LV --size 16M --cache-pv /dev/loop1 $S
step resize-not-cached $OPSCTL lvm cache resize $VG/$LV --size +32M -y $S
step remove-not-cached $OPSCTL lvm cache remove $VG/$LV -y $S
step status-not-cached $OPSCTL lvm cache status $VG/$LV -o json $S

step create-dry-run $OPSCTL lvm cache create $VG/$LV --size 16M --cache-pv /dev/loop1 --dry-run $S
step status-after-dry-run $OPSCTL lvm cache status $VG/$LV -o json $S
step create $OPSCTL --log-level debug lvm cache create $VG/$LV --size 16M --cache-pv /dev/loop1 -y $S
step status-created $OPSCTL lvm cache status $VG/$LV -o json $S
step status-text $OPSCTL lvm cache status $VG/$LV $S
step create-cached $OPSCTL lvm cache create $VG/$LV --size 8M --cache-pv /dev/loop1 -y $S
capture lvs-cached lvm lvs -a --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,segtype,lv_layout,lv_attr,cache_mode,cache_policy,cache_settings,chunk_size,cache_total_blocks,cache_used_blocks,cache_dirty_blocks,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,pool_lv,data_lv,metadata_lv,devices $VG
capture lvs-log lvm lvs --reportformat json --units b --nosuffix --config 'log { report_command_log = 1 }' -o lv_name $VG/nosuchlv

# Resize by recache with dirty blocks; then online with dirty blocks.
dirty 12
step status-dirty-recache $OPSCTL lvm cache status $VG/$LV -o json $S
capture lvs-dirty lvm lvs -a --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,segtype,lv_layout,lv_attr,cache_mode,cache_policy,cache_settings,chunk_size,cache_total_blocks,cache_used_blocks,cache_dirty_blocks,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,pool_lv,data_lv,metadata_lv,devices $VG
step resize-recache-dry-run $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy recache --dry-run $S
step resize-recache $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy recache -y $S
step status-recached $OPSCTL lvm cache status $VG/$LV -o json $S
dirty 12
step status-dirty-online $OPSCTL lvm cache status $VG/$LV -o json $S
step resize-online $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy online -y $S
step status-online $OPSCTL lvm cache status $VG/$LV -o json $S

# lvm2 older than 2.03.12: online is refused, auto falls back to recache.
cat >/tmp/lvm-old <<'SH'
#!/bin/sh
if [ "$1" = version ]; then echo "  LVM version:     2.03.11(2) (2021-01-08)"; exit 0; fi
exec lvm "$@"
SH
chmod +x /tmp/lvm-old
step old-lvm-online $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy online -y --lvm /tmp/lvm-old $S
step old-lvm-auto-dry-run env OPSCTL_LVM=/tmp/lvm-old $OPSCTL lvm cache resize $VG/$LV --size +32M --dry-run $S

# Failure injection 1: lvresize really fails after the uncache (a filler LV
# takes the free space between the plan and the lvresize): the cache must
# be re-attached and the LV left as before.
cat >/tmp/lvm-fill <<'SH'
#!/bin/sh
if [ "$1" = lvresize ]; then lvm lvcreate -q -y -n filler -l 100%FREE storage /dev/loop0 </dev/null >/dev/null 2>&1; fi
exec lvm "$@"
SH
chmod +x /tmp/lvm-fill
dirty 4
step resize-fails $OPSCTL lvm cache resize $VG/$LV --size +64M --strategy recache -y --lvm /tmp/lvm-fill $S
step status-after-resize-fails $OPSCTL lvm cache status $VG/$LV -o json $S
echo "@@JOURNAL after-resize-fails $(ls $STATE | grep -c json)"
lvm lvremove -q -y $VG/filler >/dev/null 2>&1

# Failure injection 2: opsctl is killed (SIGKILL) while lvresize runs, after
# the uncache; --resume finishes the job.
cat >/tmp/lvm-kill <<'SH'
#!/bin/sh
if [ "$1" = lvresize ]; then kill -9 $PPID; exit 1; fi
exec lvm "$@"
SH
chmod +x /tmp/lvm-kill
dirty 4
step resize-killed $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy recache -y --lvm /tmp/lvm-kill $S
echo "@@JOURNAL after-kill $(cat $STATE/$VG-$LV.json | base64 -w0)"
step remove-while-journaled $OPSCTL lvm cache remove $VG/$LV -y $S
step abandon-dry-run $OPSCTL lvm cache resize $VG/$LV --abandon --dry-run $S
step resume-dry-run $OPSCTL lvm cache resize $VG/$LV --resume --dry-run $S
step resume $OPSCTL lvm cache resize $VG/$LV --resume -y $S
step status-resumed $OPSCTL lvm cache status $VG/$LV -o json $S
echo "@@JOURNAL after-resume $(ls $STATE | grep -c json)"

# Failure injection 3: re-creating the cache fails (lvcreate refuses):
# the journal stays, --resume with a working lvm2 completes.
cat >/tmp/lvm-nocreate <<'SH'
#!/bin/sh
if [ "$1" = lvcreate ]; then echo "  injected failure: lvcreate refused" >&2; exit 5; fi
exec lvm "$@"
SH
chmod +x /tmp/lvm-nocreate
step resize-recache-fails $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy recache -y --lvm /tmp/lvm-nocreate $S
step status-uncached-resized $OPSCTL lvm cache status $VG/$LV -o json $S
step resume-after-recache-fails $OPSCTL lvm cache resize $VG/$LV --resume -y $S
step status-after-resume2 $OPSCTL lvm cache status $VG/$LV -o json $S
step resume-nothing $OPSCTL lvm cache resize $VG/$LV --resume -y $S
step abandon-nothing $OPSCTL lvm cache resize $VG/$LV --abandon -y $S

# Ctrl-C during the flush: the terminal sends SIGINT to opsctl's whole
# process group (setsid makes one, as a shell with job control would); lvm2
# runs in its own group, so the uncache finishes, and opsctl stops before
# lvresize with the journal; --resume finishes.
cat >/tmp/lvm-ctrlc <<'SH'
#!/bin/sh
if [ "$1" = lvconvert ]; then kill -INT -- -$PPID; fi
exec lvm "$@"
SH
chmod +x /tmp/lvm-ctrlc
dirty 4
step resize-ctrl-c setsid $OPSCTL lvm cache resize $VG/$LV --size +32M --strategy recache -y --lvm /tmp/lvm-ctrlc $S
step status-after-ctrl-c $OPSCTL lvm cache status $VG/$LV -o json $S
echo "@@JOURNAL after-ctrl-c $(cat $STATE/$VG-$LV.json | base64 -w0)"
step resume-after-ctrl-c $OPSCTL lvm cache resize $VG/$LV --resume -y $S

# Remove with dirty blocks: flushed with progress, LV left plain.
dirty 12
step status-dirty-remove $OPSCTL lvm cache status $VG/$LV -o json $S
step remove-dry-run $OPSCTL lvm cache remove $VG/$LV --dry-run $S
step remove $OPSCTL lvm cache remove $VG/$LV -y $S
step status-removed $OPSCTL lvm cache status $VG/$LV -o json $S
step status-all $OPSCTL lvm cache status -o json $S
capture lvs-final lvm lvs -a --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,segtype,devices $VG

# Stale signatures on the SSD's free extents, as an LV removed earlier
# leaves them (a swap area here, at every MiB): the cache's new LVs start on
# them, and lvcreate must not stop at a "Wipe it? [y/n]" that nobody answers.
lvm lvcreate -q -y -n junk -l 100%FREE $VG /dev/loop1 </dev/null >/dev/null
dd if=/dev/zero of=/tmp/swaphdr bs=64k count=1 2>/dev/null
mkswap /tmp/swaphdr >/dev/null
junk_mb=$(($(blockdev --getsize64 /dev/$VG/junk) / 1048576))
i=0
while [ $i -lt $junk_mb ]; do
	dd if=/tmp/swaphdr of=/dev/$VG/junk bs=4096 count=1 seek=$((i * 256)) conv=notrunc 2>/dev/null
	i=$((i + 1))
done
sync
lvm lvremove -q -y $VG/junk >/dev/null
# Proof that lvm2 sees them: a plain lvcreate on that space asks, and with
# nobody to answer, leaves the signature.
echo "@@SIGNATURES $(lvm lvcreate -n probe -L 4M $VG /dev/loop1 </dev/null 2>&1 | base64 -w0)"
lvm lvremove -q -y $VG/probe >/dev/null 2>&1
step create-over-stale-signatures $OPSCTL lvm cache create $VG/$LV --size 16M --cache-pv /dev/loop1 -y $S
step status-over-stale-signatures $OPSCTL lvm cache status $VG/$LV -o json $S
echo "@@END"
