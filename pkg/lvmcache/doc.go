// Package lvmcache creates, resizes, inspects and removes LVM writeback caches by running lvm2: the exec runner, report parsing and the plans.
package lvmcache
