/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by every copyscope BPF object: the in-kernel filter (which threads
 * are watched) and small helpers. Each object declares these maps; the Go
 * loader creates them once and hands the same maps to every object
 * (CollectionOptions.MapReplacements), so one AddThreads reaches them all.
 */
#ifndef __COPYSCOPE_COMMON_H__
#define __COPYSCOPE_COMMON_H__

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define MAX_THREADS 16384

/*
 * The filter is two bitmaps indexed by thread id number: watched_tgids (a
 * bit per process: watch every thread, or only the listed ones) and
 * watched_tids (a bit per thread). They are array maps, whose lookups the
 * verifier inlines into a bounds check and an add, so an unwatched thread
 * costs one array read per event instead of a hash lookup. Sized for
 * PID_MAX_LIMIT on 64-bit (4194304 ids): 1 MiB + 512 KiB.
 */
#define PID_MAX_LIMIT 4194304
#define PID_WORDS (PID_MAX_LIMIT / 64)

struct tgid_bits {
	__u64 all;  /* bit set: every thread of the process, present and future */
	__u64 some; /* bit set: only the threads set in watched_tids */
};

/*
 * Constants the Go side shares are enums, never #defines: bpf2go emits an
 * enum used by a map's key or value as Go constants, and any other enum
 * named with -type in probes/gen.go. Clang describes a type in BTF only
 * when something uses it; BTF_EMIT_ENUM makes it describe an enum of which
 * only the constants are used (an unused pointer, as in cilium/ebpf's
 * examples).
 */
#define BTF_EMIT_ENUM(name) const enum name *__btf_emit_##name __attribute__((unused))

/* Why an event was not counted: the key of the shared drops array. */
enum drop_reason {
	DROP_MAP_FULL, /* a counters map had no room for a new thread */
	DROP_READ,     /* a kernel struct could not be read */
	DROP_MMSG,     /* a sendmmsg/recvmmsg batch beyond MAX_MMSG messages */
	DROP_TID,      /* a watched thread id at or above pid_max at load */
	DROP_REUSED,   /* a new thread got the id of an exited one not yet read */
	NUM_DROPS,
};

/* The optional cgroup filter: count every thread of one cgroup v2 and of
 * its descendants, nested at any depth. */
struct filter_cfg {
	__u64 cgroup_id;    /* 0: no cgroup filter */
	__u32 cgroup_level; /* its depth below the root cgroup */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_WORDS);
	__type(key, __u32); /* tgid / 64 */
	__type(value, struct tgid_bits);
} watched_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_WORDS);
	__type(key, __u32); /* tid / 64 */
	__type(value, __u64);
} watched_tids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_cfg);
} filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_DROPS);
	__type(key, enum drop_reason);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(enum drop_reason why)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &why);
	if (v)
		*v += 1;
}

/*
 * tgid_watch decides from the bitmaps alone: 1 watched, 0 not watched,
 * -1 process not listed (the caller may still match the cgroup). An
 * unwatched thread costs this one inlined array read.
 */
static __always_inline int tgid_watch(__u32 tgid, __u32 tid)
{
	__u32 w = tgid / 64;
	__u64 bit = 1ULL << (tgid % 64);
	struct tgid_bits *b = bpf_map_lookup_elem(&watched_tgids, &w);
	if (!b)
		return -1;
	if (b->all & bit)
		return 1;
	if (!(b->some & bit))
		return -1;
	w = tid / 64;
	__u64 *t = bpf_map_lookup_elem(&watched_tids, &w);
	return t && (*t & (1ULL << (tid % 64)));
}

static __always_inline struct filter_cfg *cgroup_filter(void)
{
	__u32 zero = 0;
	struct filter_cfg *cfg = bpf_map_lookup_elem(&filter, &zero); /* array: inlined */
	return cfg && cfg->cgroup_id ? cfg : 0;
}

/* watched_current reports whether the current thread is counted: its
 * cgroup, or the ancestor at the watched cgroup's depth, is the watched one. */
static __always_inline bool watched_current(__u64 pid_tgid)
{
	int w = tgid_watch(pid_tgid >> 32, (__u32)pid_tgid);
	if (w >= 0)
		return w;
	struct filter_cfg *cfg = cgroup_filter();
	return cfg && bpf_get_current_ancestor_cgroup_id(cfg->cgroup_level) == cfg->cgroup_id;
}

/* watched_task reports whether a task (not necessarily current) is counted. */
static __always_inline bool watched_task(struct task_struct *t, __u32 tgid, __u32 tid)
{
	int w = tgid_watch(tgid, tid);
	if (w >= 0)
		return w;
	struct filter_cfg *cfg = cgroup_filter();
	if (!cfg)
		return false;
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	__u32 level = cfg->cgroup_level;
	if (!cg || BPF_CORE_READ(cg, level) < (int)level)
		return false;
	struct cgroup *anc = 0;
	if (bpf_core_read(&anc, sizeof(anc), &cg->ancestors[level & 0xffff]))
		return false;
	return anc && BPF_CORE_READ(anc, kn, id) == cfg->cgroup_id;
}

/*
 * lookup_or_init returns the map value for key, inserting a zeroed one
 * first if needed. Used on per-CPU hashes: the value is this CPU's slot.
 */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	/* Fails harmlessly if another CPU inserted it first. */
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (!v)
		count_drop(DROP_MAP_FULL);
	return v;
}

#endif /* __COPYSCOPE_COMMON_H__ */
