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

	# The flush (issue 20): the same dirty blocks written back by opsctl's
	# flush (the cleaner policy; migration_threshold raised in steps) and
	# by lvm2's own uncache, on an idle LV.
	dcount() { dmsetup status $VG-$LV | awk '$3 == "cache" {print $14}'; }
	now() { cut -d' ' -f1 /proc/uptime; }
	# wb_at is when the kernel first showed fewer dirty blocks, clean_at
	# when it first showed none (or no cache): from one to the other is the
	# write-back's own time, without what the command does before its first
	# change and after it (lvm2 reports and the restore, which cost a second
	# or more each on this emulated CPU).
	measure_flush() {
		name=$1
		shift
		dirty "$measure_mb"
		blocks=$(dcount)
		start=$(now)
		"$@" >/tmp/measure.out 2>&1 &
		cpid=$!
		clean_at= wb_at=
		while kill -0 $cpid 2>/dev/null; do
			left=$(dcount)
			[ -z "$wb_at" ] && [ "${left:-0}" -lt "$blocks" ] && wb_at=$(now)
			[ -z "$clean_at" ] && [ "${left:-0}" = 0 ] && clean_at=$(now)
			sleep 0.1
		done
		wait $cpid
		rc=$?
		end=$(now)
		echo "@@MEASURE $name rc=$rc dirty_before=$blocks dirty_after=$(dcount) start=$start end=$end wb_at=${wb_at:-$end} clean_at=${clean_at:-$end} out=$(tail -n 1 /tmp/measure.out | base64 -w0)"
	}
	measure_flush flush-cleaner $OPSCTL lvm cache flush $VG/$LV --state-dir $STATE
	measure_flush flush-threshold $OPSCTL lvm cache flush $VG/$LV --method threshold --state-dir $STATE
	measure_flush uncache lvm lvconvert --uncache $VG/$LV
	$OPSCTL lvm cache create $VG/$LV --size $((measure_mb + 64))M --cache-pv /dev/loop1 -y --state-dir $STATE >/dev/null

	# A busy origin: a writer of 4 KiB blocks (direct I/O, one at a time)
	# to the LV's blocks outside the dirty ones runs alone for 20 s, then
	# during each flush, which may take 30 s at most. A write of part of a
	# block that is not cached goes to the origin, and smq promotes none
	# (it would for a whole block, or a read of a hot one, and demote dirty
	# blocks to make room): the origin stays busy and the cache as it is.
	# What the flush writes back says whether it gets anywhere; what the
	# writer writes, what it takes from the LV's users (on dm-delay a write
	# takes its delay whatever else is in flight: here, mostly CPU).
	reader() {
		n=0
		while [ ! -e /tmp/stop-reader ]; do
			dd if=/dev/zero of=$DEV bs=4k count=1 seek=$((32768 + (n * 17) % 65536)) oflag=direct conv=notrunc 2>/dev/null
			n=$((n + 1))
		done
		echo $n >/tmp/reader.count
	}
	measure_busy() {
		name=$1
		shift
		dirty "$measure_mb"
		blocks=$(dcount)
		rm -f /tmp/stop-reader /tmp/reader.count
		reader &
		rpid=$!
		start=$(now)
		if [ $# -gt 0 ]; then
			out=$("$@" 2>&1)
			rc=$?
		else
			sleep 20
			out= rc=0
		fi
		end=$(now)
		touch /tmp/stop-reader
		wait $rpid
		echo "@@MEASURE $name rc=$rc dirty_before=$blocks dirty_after=$(dcount) start=$start end=$end writes=$(cat /tmp/reader.count) out=$(echo "$out" | tail -n 1 | base64 -w0)"
	}
	measure_busy busy-writer-alone
	measure_busy busy-flush-cleaner $OPSCTL lvm cache flush $VG/$LV --for 30s --state-dir $STATE
	measure_busy busy-flush-threshold $OPSCTL lvm cache flush $VG/$LV --method threshold --for 30s --state-dir $STATE
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

# Flush (issue 20): dirty blocks with dm-cache's own writeback frozen
# (runtime migration_threshold 0) and a persistent setting
# (migration_threshold=4096, which a reload puts in the kernel): afterwards
# no dirty block, still cached in writeback, the same policy and settings in
# lvm's metadata, the runtime migration_threshold 0 again, the data intact.
lvm lvchange -q --cachesettings migration_threshold=4096 $VG/$LV
dirty 12
capture lvs-before-flush lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_settings,kernel_cache_policy $VG/$LV
capture dm-before-flush dmsetup status $VG-$LV
step flush-dry-run $OPSCTL lvm cache flush $VG/$LV --dry-run $S
step flush $OPSCTL lvm cache flush $VG/$LV -o json $S
capture lvs-after-flush lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_settings,kernel_cache_policy $VG/$LV
capture dm-after-flush dmsetup status $VG-$LV
step status-flushed $OPSCTL lvm cache status $VG/$LV -o json $S
step flush-clean $OPSCTL lvm cache flush $VG/$LV $S
lvm lvchange -q --cachesettings migration_threshold=default $VG/$LV

# Prometheus: the metrics, then at once lvm2's and dmsetup's view of the
# same counters (nothing reads or writes the LV in between).
dd if=$DEV of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null
capture prometheus $OPSCTL lvm cache status -o prometheus $S
capture lvs-counters lvm lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,cache_mode,cache_read_hits,cache_read_misses,cache_write_hits,cache_write_misses,cache_dirty_blocks,cache_used_blocks,cache_total_blocks $VG/$LV
capture dm-counters dmsetup status $VG-$LV
mkdir -p /tmp/prom
step status-textfile $OPSCTL lvm cache status $VG -o prometheus --textfile /tmp/prom $S
capture textfile cat /tmp/prom/opsctl_lvm_cache.prom
step status-textfile-missing $OPSCTL lvm cache status -o prometheus --textfile /tmp/nosuchdir $S

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

# Flushes on a slow origin (the dm-delay set-up of `make bench-lvm`, every
# write to the origin's PV delayed 500 ms): a window that ends first,
# SIGTERM mid-flush, SIGKILL mid-flush then --resume. Its own VG, LV and
# expected data. At 1 s a write, 448 dirty blocks take the cleaner some
# 15 s to write back (26 blocks/s measured on an idle machine): longer than
# the 5 s window, and long enough to be stopped mid-way.
DVG=slowvg
DLV=data
DDEV=/dev/$DVG/$DLV
DEXPECT=/tmp/expect-delayed
truncate -s 256M /tmp/dslow.img
truncate -s 64M /tmp/dfast.img
losetup /dev/loop3 /tmp/dslow.img
losetup /dev/loop4 /tmp/dfast.img
dmsetup create delayed --table "0 $(blockdev --getsz /dev/loop3) delay /dev/loop3 0 0 /dev/loop3 0 1000"
sed -i 's|^devices {|devices {\n\tglobal_filter = [ "r\|^/dev/loop3$\|" ]|' /etc/lvm/lvm.conf
dslow=/dev/$(dmsetup info -c --noheadings -o blkdevname delayed)
lvm pvcreate -q $dslow /dev/loop4 >/dev/null
lvm vgcreate -q $DVG $dslow /dev/loop4 >/dev/null
lvm lvcreate -q -n $DLV -L 64M $DVG $dslow </dev/null >/dev/null
dd if=/dev/zero of=$DEXPECT bs=1M count=1 2>/dev/null
$OPSCTL lvm cache create $DVG/$DLV --size 32M --cache-pv /dev/loop4 -y $S >/dev/null

# dstep is step on the delayed LV: its data checked against its copy.
dstep() {
	saved_dev=$DEV saved_expect=$EXPECT
	DEV=$DDEV EXPECT=$DEXPECT
	step "$@"
	DEV=$saved_dev EXPECT=$saved_expect
}

# ddirty makes 448 blocks of the delayed LV dirty, writeback frozen.
ddirty() {
	dmsetup message "$DVG-$DLV" 0 migration_threshold 0
	dd if=/dev/urandom of=/tmp/chunk bs=1M count=28 2>/dev/null
	dd if=/tmp/chunk of="$DDEV" bs=1M oflag=direct conv=notrunc 2>/dev/null
	dd if=/tmp/chunk of="$DEXPECT" bs=1M conv=notrunc 2>/dev/null
	sync
	rm -f /tmp/chunk
}

# start_flush starts a flush of the delayed LV in the background and
# returns once its journal says the write-back runs.
start_flush() {
	$OPSCTL lvm cache flush $DVG/$DLV -o json $S </dev/null >/tmp/bg.out 2>/tmp/bg.err &
	bgpid=$!
	i=0
	while [ $i -lt 600 ]; do
		if tr -d ' \n' <$STATE/$DVG-$DLV.json 2>/dev/null | grep -q '"kind":"write-back","args":null,"state":"running"'; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "@@INIT start_flush: the write-back of $DVG/$DLV never ran"
}

# end_flush reports the background flush as a step, once it has exited.
end_flush() {
	wait $bgpid
	rc=$?
	echo "@@STEP $1 rc=$rc out=$(b64 /tmp/bg.out) err=$(b64 /tmp/bg.err) t=$(cut -d' ' -f1 /proc/uptime)"
	saved_dev=$DEV saved_expect=$EXPECT
	DEV=$DDEV EXPECT=$DEXPECT
	check_data "$1"
	DEV=$saved_dev EXPECT=$saved_expect
}

ddirty
capture dm-delayed-before dmsetup status $DVG-$DLV
echo "@@TIME flush-window-start $(cut -d' ' -f1 /proc/uptime)"
dstep flush-window $OPSCTL lvm cache flush $DVG/$DLV --for 5s -o json $S
capture lvs-delayed-after-window lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_policy $DVG/$DLV
capture dm-delayed-after-window dmsetup status $DVG-$DLV

ddirty
start_flush
kill -TERM $bgpid
end_flush flush-sigterm
capture lvs-delayed-after-sigterm lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_policy $DVG/$DLV
capture dm-delayed-after-sigterm dmsetup status $DVG-$DLV
echo "@@JOURNAL after-flush-sigterm $(ls $STATE | grep -c json)"

ddirty
start_flush
kill -KILL $bgpid
end_flush flush-killed
capture lvs-delayed-after-kill lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_policy $DVG/$DLV
echo "@@JOURNAL after-flush-kill $(cat $STATE/$DVG-$DLV.json | base64 -w0)"
dstep remove-while-flush-journaled $OPSCTL lvm cache remove $DVG/$DLV -y $S
dstep flush-resume-dry-run $OPSCTL lvm cache flush $DVG/$DLV --resume --dry-run $S
dstep flush-resume $OPSCTL lvm cache flush $DVG/$DLV --resume -o json $S
capture lvs-delayed-after-resume lvm lvs --reportformat json -o lv_name,cache_mode,cache_policy,cache_settings,kernel_cache_policy $DVG/$DLV
capture dm-delayed-after-resume dmsetup status $DVG-$DLV
echo "@@JOURNAL after-flush-resume $(ls $STATE | grep -c json)"
echo "@@END"
