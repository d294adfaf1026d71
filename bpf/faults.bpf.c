//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Page faults, file-mapping faults, page cache misses and disk reads per
 * thread. Page and file-mapping faults from tp_btf; page cache and block
 * events from classic tracepoints (the trace record carries the folio
 * order and the request's rwbs, which tp_btf would have to dig out of
 * kernel structs), whose context structs are written from
 * /sys/kernel/tracing/events/<sys>/<event>/format (Linux 6.18).
 */
#include "common.h"

char __license[] SEC("license") = "GPL";

/* The highest user address on x86_64 with 5-level paging is below 2^56;
 * kernel addresses have the top bit set. */
#define USER_ADDR_LIMIT (1UL << 56)

struct fault_counters {
	__u64 user_faults;        /* exceptions:page_fault_user */
	__u64 kernel_user_faults; /* exceptions:page_fault_kernel on a user address (copy_to/from_user) */
	__u64 filemap_faults;     /* filemap:mm_filemap_fault events */
	__u64 map_pages_events;   /* filemap:mm_filemap_map_pages events (fault-around) */
	__u64 map_pages_pages;    /* pages in those fault-around ranges */
	__u64 page_cache_adds;    /* pages added to the page cache (misses) */
	__u64 disk_read_bytes;    /* completed block reads this thread issued */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32); /* tid */
	__type(value, struct fault_counters);
} fault_counts SEC(".maps");

struct rq_key {
	__u32 dev;
	__u32 pad;
	__u64 sector;
};

/* Block read requests issued by watched threads, until they complete. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rq_key);
	__type(value, __u32); /* issuing tid */
} inflight SEC(".maps");

static const struct fault_counters fault_zero;

/* format: filemap/mm_filemap_add_to_page_cache */
struct filemap_add_args {
	__u64 common;
	unsigned long pfn;
	unsigned long i_ino;
	unsigned long index;
	dev_t s_dev;
	unsigned char order;
};

/* format: block/block_rq_issue */
struct block_rq_issue_args {
	__u64 common;
	dev_t dev;
	__u64 sector;
	unsigned int nr_sector;
	unsigned int bytes;
	unsigned short ioprio;
	char rwbs[10];
};

/* format: block/block_rq_complete */
struct block_rq_complete_args {
	__u64 common;
	dev_t dev;
	__u64 sector;
	unsigned int nr_sector;
	int error;
};

static __always_inline struct fault_counters *current_counters(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!watched_current(pid_tgid))
		return 0;
	__u32 tid = (__u32)pid_tgid;
	return lookup_or_init(&fault_counts, &tid, &fault_zero);
}

/*
 * Page faults fire system-wide far more often than the other events here,
 * so they use tp_btf (raw tracepoints: no trace record is built before the
 * program runs): about 300 ns less per fault than the classic tracepoint
 * for every thread, watched or not.
 */
SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	struct fault_counters *c = current_counters();
	if (c)
		c->user_faults += 1;
	return 0;
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(page_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	if (address >= USER_ADDR_LIMIT)
		return 0;
	struct fault_counters *c = current_counters();
	if (c)
		c->kernel_user_faults += 1;
	return 0;
}

/* File-mapping faults are frequent system-wide too (every program's code
 * pages): tp_btf as well. */
SEC("tp_btf/mm_filemap_fault")
int BPF_PROG(filemap_fault, void *mapping, unsigned long index)
{
	struct fault_counters *c = current_counters();
	if (c)
		c->filemap_faults += 1;
	return 0;
}

SEC("tp_btf/mm_filemap_map_pages")
int BPF_PROG(filemap_map_pages, void *mapping, unsigned long index, unsigned long last_index)
{
	struct fault_counters *c = current_counters();
	if (!c)
		return 0;
	c->map_pages_events += 1;
	if (last_index >= index)
		c->map_pages_pages += last_index - index + 1;
	return 0;
}

SEC("tracepoint/filemap/mm_filemap_add_to_page_cache")
int filemap_add_to_page_cache(struct filemap_add_args *ctx)
{
	struct fault_counters *c = current_counters();
	if (c)
		c->page_cache_adds += 1UL << (ctx->order & 31);
	return 0;
}

SEC("tracepoint/block/block_rq_issue")
int block_rq_issue(struct block_rq_issue_args *ctx)
{
	/* rwbs: an optional leading F (flush), then R for reads. */
	if (ctx->rwbs[0] != 'R' && !(ctx->rwbs[0] == 'F' && ctx->rwbs[1] == 'R'))
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!watched_current(pid_tgid))
		return 0;
	struct rq_key k = {.dev = ctx->dev, .sector = ctx->sector};
	__u32 tid = (__u32)pid_tgid;
	bpf_map_update_elem(&inflight, &k, &tid, BPF_ANY);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int block_rq_complete(struct block_rq_complete_args *ctx)
{
	struct rq_key k = {.dev = ctx->dev, .sector = ctx->sector};
	__u32 *tid = bpf_map_lookup_elem(&inflight, &k);
	if (!tid)
		return 0;
	__u32 t = *tid;
	bpf_map_delete_elem(&inflight, &k);
	if (ctx->error)
		return 0;
	struct fault_counters *c = lookup_or_init(&fault_counts, &t, &fault_zero);
	if (c)
		c->disk_read_bytes += (__u64)ctx->nr_sector << 9;
	return 0;
}
