/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Trimmed vmlinux.h for copyscope: only the kernel types the programs in
 * bpf/ read. Written from `bpftool btf dump file /sys/kernel/btf/vmlinux
 * format c` (Linux 6.18, x86_64) and cut down to the fields used. Every
 * struct carries preserve_access_index, so field offsets are relocated by
 * CO-RE against the running kernel's BTF at load time: the layout here
 * only has to name the fields, not match the kernel's offsets.
 */
#ifndef __COPYSCOPE_VMLINUX_H__
#define __COPYSCOPE_VMLINUX_H__

typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef unsigned short umode_t;
typedef int pid_t;
typedef unsigned int dev_t;

enum {
	false = 0,
	true = 1,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LRU_PERCPU_HASH = 10,
	BPF_MAP_TYPE_QUEUE = 22,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_MMAPABLE = 1024,
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

/* x86_64 syscall register frame: args in di, si, dx, r10, r8, r9. */
struct pt_regs {
	long unsigned int r10;
	long unsigned int r9;
	long unsigned int r8;
	long unsigned int dx;
	long unsigned int si;
	long unsigned int di;
	long unsigned int orig_ax;
};

struct inode {
	umode_t i_mode;
	dev_t i_rdev; /* character devices: (major << 20) | minor */
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct sock_common {
	__be16 skc_dport; /* remote port, network order */
	__u16 skc_num;    /* local port, host order */
	long unsigned int skc_flags;
};

typedef struct {
	int counter;
} atomic_t;

struct sock {
	struct sock_common __sk_common;
	atomic_t sk_zckey; /* next MSG_ZEROCOPY notification id */
};

struct socket {
	struct sock *sk;
};

/* Starts with struct sock in the kernel (inet_connection_sock first). */
struct tcp_sock {
	u64 bytes_received; /* bytes the connection received (lowcost.bpf.c) */
	u32 rcv_nxt;        /* what we want to receive next */
	u32 copied_seq;     /* head of yet unread data */
};

enum sock_flags {
	SOCK_ZEROCOPY = 18,
};

/* Used only to load one pointer through bpf_rdonly_cast (fd_file). */
struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct kernfs_node {
	u64 id;
};

struct cgroup {
	int level; /* depth below the root cgroup (0) */
	struct kernfs_node *kn;
	struct cgroup *ancestors[]; /* by level, this cgroup last */
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

struct sched_entity {
	u64 sum_exec_runtime;
};

struct task_struct {
	struct sched_entity se;
	pid_t pid;
	pid_t tgid;
	char comm[16];
	struct files_struct *files;
	struct css_set *cgroups;
	long unsigned int nvcsw;
	long unsigned int nivcsw;
};

struct io_kiocb {
	struct file *file;
	u8 opcode;
};

struct io_uring_cqe {
	u64 user_data;
	s32 res;
	u32 flags;
};

#pragma clang attribute pop

#endif /* __COPYSCOPE_VMLINUX_H__ */
