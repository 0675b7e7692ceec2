// cce4long: the C fence around libfuse3's low-level API.
//
// Why a shim: libfuse's entry points are version macros (fuse_session_loop_mt maps to
// fuse_session_loop_mt_312 for the API pinned here), FUSE_ARGS_INIT is a macro,
// fuse_file_info's flags are bitfields, and syslog(3) is variadic: Swift can call none of
// these directly. Everything else (the ops struct, fuse_reply_*) Swift calls as is.
#ifndef CCE4_FUSE_H
#define CCE4_FUSE_H

// The libfuse API this code is written against: 3.12 (Debian 12 ships 3.14).
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>

#ifdef __cplusplus
extern "C" {
#endif

/// fuse_session_new over an argv (FUSE_ARGS_INIT); the args are copied by libfuse.
struct fuse_session *cce4_fuse_session_new(int argc, char **argv,
                                           const struct fuse_lowlevel_ops *ops, void *userdata);

/// fuse_session_loop_mt with a loop config: up to `max_threads` workers, `max_idle`
/// kept idle, and one /dev/fuse fd per thread when `clone_fd` is set.
int cce4_fuse_loop_mt(struct fuse_session *se, unsigned max_threads, unsigned max_idle, int clone_fd);

/// cce4fs's own request loop (docs/semantics.md, "The request loop"): leader/follower over
/// `threads` workers. Only the leader reads /dev/fuse (non-blocking), answering requests
/// itself; a handler about to block calls cce4_loop_handoff, which hands the lead to an idle
/// worker when requests come concurrently and keeps it otherwise (a watchdog thread takes a
/// lead blocked for more than 2 ms). After a request the leader polls the device for an
/// adaptive time of at most `spin_us` microseconds before it sleeps. Ends when the session
/// exits (unmount, fuse_session_exit, a stop signal: SIGINT, SIGTERM and SIGHUP reach the
/// calling thread only). Returns 0, or -errno when reading the device failed; fills `stats`
/// (if not NULL) at the end.
struct cce4_loop_stats {
    uint64_t handoffs_lazy;   // handlers that blocked keeping the lead
    uint64_t handoffs_eager;  // handlers that woke another worker to lead
    uint64_t steals;          // leads the watchdog took from a handler blocked too long
};
int cce4_fuse_loop_spin(struct fuse_session *se, unsigned threads, unsigned spin_us, struct cce4_loop_stats *stats);

/// Called by a request handler before it may block (store I/O): if this thread leads the
/// cce4_fuse_loop_spin loop and requests come concurrently, another worker takes over reading
/// requests. A no-op otherwise.
void cce4_loop_handoff(void);

/// FUSE over io_uring (uring.c; docs/semantics.md, "The request transport"). Whether the
/// kernel allows it: 1 (fuse.enable_uring=Y), 0 (N), -1 (no such parameter: before 6.14).
int cce4_uring_kernel_enabled(void);

struct cce4_uring;

/// Starts `per_queue` workers for each of the kernel's per-CPU queues, each pinned to its
/// queue's CPU with its own io_uring and one registered entry of `max_payload` bytes (at
/// least the kernel's max(max_write, max_pages pages)), and routes libfuse's replies to ring
/// requests into the rings (fuse_session_custom_io). Call after mounting and before the
/// loop: the workers register once the INIT reply has been written. After each request a
/// worker polls for its next one for `spin_us` microseconds before it sleeps. A worker's
/// failure ends the session (fuse_session_exit and SIGTERM to this process; see
/// cce4_uring_error). Returns NULL and *error = -errno if it could not start.
struct cce4_uring *cce4_uring_start(struct fuse_session *se, unsigned per_queue, size_t max_payload,
                                    unsigned spin_us, int *error);
/// Stops and joins the workers (after the loop has ended).
void cce4_uring_stop(struct cce4_uring *u);
/// Requests answered through the rings; entries that have served a request (both exact after
/// cce4_uring_stop); the first failure (-errno, or 0); the number of queues (the kernel's
/// possible CPUs).
uint64_t cce4_uring_served(const struct cce4_uring *u);
int cce4_uring_entries_used(const struct cce4_uring *u);
int cce4_uring_error(const struct cce4_uring *u);
unsigned cce4_uring_queues(const struct cce4_uring *u);

/// Bitfields of struct fuse_file_info.
void cce4_fi_set_keep_cache(struct fuse_file_info *fi, int on);
void cce4_fi_set_direct_io(struct fuse_file_info *fi, int on);
void cce4_fi_set_cache_readdir(struct fuse_file_info *fi, int on);

/// fuse_lowlevel_notify_store over one memory buffer (FUSE_BUFVEC_INIT is a macro): puts
/// `size` bytes at `offset` into the kernel's page cache of `ino`. Returns 0 or -errno.
int cce4_notify_store(struct fuse_session *se, fuse_ino_t ino, off_t offset, const void *data, size_t size);

/// syslog(3) with a fixed "%s" format (never a caller-controlled format string).
void cce4_syslog(int priority, const char *message);

/// The size fuse_add_direntry needs for a name (for sizing readdir replies).
size_t cce4_direntry_size(const char *name, int plus);

#ifdef __cplusplus
}
#endif
#endif
