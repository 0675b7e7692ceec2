// cce4long: libfuse3 shim. See include/cce4_fuse.h for why each function exists.
#define _GNU_SOURCE  // ppoll
#include "cce4_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <linux/fuse.h>
#include <time.h>
#include <unistd.h>

// struct stat is re-declared nowhere here; fuse_entry_param embeds the system's.
_Static_assert(sizeof(fuse_ino_t) == 8, "fuse_ino_t is 64-bit");

struct fuse_session *cce4_fuse_session_new(int argc, char **argv,
                                           const struct fuse_lowlevel_ops *ops, void *userdata) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, sizeof(*ops), userdata);
    fuse_opt_free_args(&args);
    return se;
}

int cce4_fuse_loop_mt(struct fuse_session *se, unsigned max_threads, unsigned max_idle, int clone_fd) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) return -1;
    fuse_loop_cfg_set_clone_fd(cfg, clone_fd ? 1 : 0);
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, max_idle);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

// The leader/follower loop (cce4_fuse_loop_spin, cce4_loop_handoff). One thread at a time,
// the leader, reads /dev/fuse; the others wait on a condition variable. docs/semantics.md,
// "The request loop", has the rules; in short:
//
// - The leader answers requests answered from memory itself: a lookup wakes no other thread.
// - A handler about to block on the store calls cce4_loop_handoff. While requests come one
//   caller at a time, the handoff is lazy: the leader keeps the lead and reads the device
//   again when the handler returns, so a serial reader costs no thread wake at all. When a
//   request of another caller (the request header's pid) was waiting as the leader came back
//   from a blocking handler, or comes while another caller's handler is blocked, handoffs turn
//   eager for a while: an idle thread is woken to lead while the handler blocks, so requests
//   are served in parallel. A watchdog thread takes the lead from a leader blocked lazily for
//   more than a few milliseconds (a slow store), so a slow request never holds up the others
//   for long.
// - After a request the leader polls the (non-blocking) device before it sleeps in poll(2),
//   for an adaptive time up to spin_us: it grows when a request came soon after the leader
//   had given up, and shrinks when polling found nothing; an idle mount polls not at all.
struct lf_loop {
    struct fuse_session *se;
    int fd;             // the session's /dev/fuse fd, O_NONBLOCK while the loop runs
    int stop_fd;        // eventfd: written when the loop ends (wakes the leader and the main thread)
    uint64_t spin_ns;   // the longest poll
    uint64_t poll_ns;   // the current poll (adaptive); only the leader touches it
    pthread_mutex_t m;
    pthread_cond_t c;
    int has_leader;     // under m
    int idle;           // followers waiting on c, under m
    int done;           // under m
    int error;          // the first read error (-errno), under m
    _Atomic int eager;              // eager handoffs left (0: lazy)
    _Atomic int blocked;            // handlers blocked after an eager handoff or a steal
    _Atomic uint32_t blocked_pid;   // the caller of the last request handed off eagerly or stolen
    _Atomic uint64_t lazy_since;    // when the leader blocked lazily (0: it is not blocked)
    _Atomic uint32_t lazy_pid;      // the caller of the request it blocked for
    _Atomic int sleeping;           // the leader sleeps in poll(2)
    _Atomic uint64_t handoffs_lazy, handoffs_eager, steals;
    pthread_mutex_t wm;             // the watchdog's park
    pthread_cond_t wc;
    int watchdog_parked;            // under wm
    _Atomic int stopping;           // set by lf_finish (read by the watchdog without m)
    int watchdog;                   // a watchdog runs (threads > 1)
};

// Eager handoffs after a sign of concurrency; each later sign renews the run.
#define LF_EAGER_RUN 256
// The watchdog checks every LF_TICK_NS and takes the lead from a leader blocked lazily
// for LF_STEAL_NS or more.
#define LF_TICK_NS 2000000u
#define LF_STEAL_NS 2000000u

static __thread struct lf_loop *tl_loop;
static __thread int tl_leader;
static __thread int tl_handed;  // during a request: 1 handed off lazily, 2 eagerly
static __thread uint64_t tl_lazy_since; // this thread's lazy block (its value of lazy_since)
static __thread uint32_t tl_pid; // the caller of the request this thread serves (0: unknown)

// The calling thread of a request just read (0: unknown, or the kernel's own).
static uint32_t lf_caller(const struct fuse_buf *buf, int len) {
    if ((buf->flags & FUSE_BUF_IS_FD) || buf->mem == NULL || len < (int)sizeof(struct fuse_in_header)) return 0;
    return ((const struct fuse_in_header *)buf->mem)->pid;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Under m.
static void lf_finish(struct lf_loop *l, int error) {
    if (!l->done) {
        uint64_t one = 1;
        l->done = 1;
        if (error != 0 && l->error == 0) l->error = error;
        fuse_session_exit(l->se);
        pthread_cond_broadcast(&l->c);
        ssize_t w = write(l->stop_fd, &one, sizeof one);
        (void)w;
        atomic_store(&l->stopping, 1);
        pthread_mutex_lock(&l->wm);
        pthread_cond_signal(&l->wc);
        pthread_mutex_unlock(&l->wm);
    }
}

// Gives up the lead and wakes an idle thread to take it.
static void lf_pass_lead(struct lf_loop *l) {
    pthread_mutex_lock(&l->m);
    l->has_leader = 0;
    if (l->idle > 0) pthread_cond_signal(&l->c);
    pthread_mutex_unlock(&l->m);
}

void cce4_loop_handoff(void) {
    struct lf_loop *l = tl_loop;
    // With one worker there is nobody to hand the lead to: every request waits for the one
    // in progress, as under libfuse's loop with threads=1.
    if (l == NULL || !tl_leader || tl_handed != 0 || !l->watchdog) return;
    int e = atomic_load_explicit(&l->eager, memory_order_relaxed);
    if (e <= 0) {
        // Lazy: keep the lead; the watchdog takes it if this blocks for long.
        tl_handed = 1;
        atomic_fetch_add_explicit(&l->handoffs_lazy, 1, memory_order_relaxed);
        atomic_store_explicit(&l->lazy_pid, tl_pid, memory_order_relaxed);
        tl_lazy_since = now_ns();
        atomic_store(&l->lazy_since, tl_lazy_since);
        return;
    }
    atomic_fetch_sub_explicit(&l->eager, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->handoffs_eager, 1, memory_order_relaxed);
    tl_handed = 2;
    tl_leader = 0;
    atomic_store_explicit(&l->blocked_pid, tl_pid, memory_order_relaxed);
    atomic_fetch_add(&l->blocked, 1);
    lf_pass_lead(l);
}

// Leads until it loses the lead (returns 0) or the loop must end (returns 1, error set).
static int lf_lead(struct lf_loop *l, struct fuse_buf *buf, int *error) {
    // No polling until this leader has answered a request itself: a thread that took over
    // from a handler about to block would only take the CPU that handler needs.
    uint64_t last = 0;
    int back = 0;  // came back from a lazily blocked handler, not yet read the device
    struct pollfd fds[2] = { { .fd = l->fd, .events = POLLIN }, { .fd = l->stop_fd, .events = POLLIN } };
    while (tl_leader) {
        int res = fuse_session_receive_buf(l->se, buf);
        if (res > 0) {
            // A request of another caller was waiting while this leader was blocked, or comes
            // while another caller's handler is: there is concurrency, so handoffs wake a
            // thread for a while. The same caller's next request is no sign: a serial reader
            // sends it as soon as the reply reaches it, often before the leader reads again
            // (the kernel's readahead for a reader runs in that reader's name too).
            uint32_t pid = lf_caller(buf, res), prev = tl_pid;
            tl_pid = pid;
            if (pid != 0 && ((back && pid != prev) ||
                             (atomic_load_explicit(&l->blocked, memory_order_relaxed) > 0 &&
                              pid != atomic_load_explicit(&l->blocked_pid, memory_order_relaxed))))
                atomic_store_explicit(&l->eager, LF_EAGER_RUN, memory_order_relaxed);
            back = 0;
            tl_handed = 0;
            fuse_session_process_buf(l->se, buf);
            if (tl_handed == 2) {
                atomic_fetch_sub(&l->blocked, 1);
            } else if (tl_handed == 1) {
                // Back from a lazy block: the lead is still this thread's if lazy_since still
                // holds this block's value. Otherwise the watchdog took it (it cleared
                // lazy_since, counted this handler as blocked and woke another thread), and
                // lazy_since is 0 or the new leader's own block, which stays untouched.
                uint64_t mine = tl_lazy_since;
                if (!atomic_compare_exchange_strong(&l->lazy_since, &mine, 0)) {
                    tl_leader = 0;
                    atomic_fetch_sub(&l->blocked, 1);
                }
                back = 1;
            }
            tl_handed = 0;
            last = now_ns();
            continue;
        }
        if (res == 0 || fuse_session_exited(l->se)) return 1;  // unmounted (ENODEV) or exited
        if (res == -EINTR) continue;                            // an interrupted or aborted request
        if (res != -EAGAIN) { *error = res; return 1; }
        back = 0;
        // Polling yields the CPU to any other runnable thread (on 2 CPUs, the reader it serves).
        if (last != 0 && now_ns() - last < l->poll_ns) { sched_yield(); continue; }
        // Nothing came within the poll time: sleep until the device has a request.
        atomic_store_explicit(&l->sleeping, 1, memory_order_relaxed);
        int pr = poll(fds, 2, 1000);
        atomic_store_explicit(&l->sleeping, 0, memory_order_relaxed);
        if (pr < 0 && errno != EINTR) { *error = -errno; return 1; }
        if (fds[1].revents) return 1;
        if (last != 0 && pr > 0) {
            // Adapt the poll: a request that came within spin_us of the last one would have
            // been caught by a longer poll; one that came later means the poll was wasted.
            uint64_t gap = now_ns() - last;
            if (gap <= l->spin_ns) {
                uint64_t grown = l->poll_ns < 10000u ? 10000u : l->poll_ns * 2;
                l->poll_ns = grown > l->spin_ns ? l->spin_ns : grown;
            } else {
                l->poll_ns = l->poll_ns < 4000u ? 0 : l->poll_ns / 2;
            }
            last = 0;
        }
        if (pr > 0 && l->watchdog) {
            // A request came: a parked watchdog must watch again.
            pthread_mutex_lock(&l->wm);
            if (l->watchdog_parked) pthread_cond_signal(&l->wc);
            pthread_mutex_unlock(&l->wm);
        }
    }
    return 0;
}

// Takes the lead from a leader blocked lazily for LF_STEAL_NS; parks while the leader sleeps.
// Holds wm only to wait (lf_finish takes wm under m: never take m under wm).
static void *lf_watchdog(void *arg) {
    struct lf_loop *l = arg;
    int asleep_ticks = 0;
    while (!atomic_load(&l->stopping)) {
        pthread_mutex_lock(&l->wm);
        if (asleep_ticks >= 2 && atomic_load(&l->sleeping)) {
            // The leader has slept in poll(2) for two ticks: park until it wakes. `sleeping`
            // is checked again under wm: the leader clears it before it takes wm to see
            // whether to wake this thread, so a park cannot miss that wake.
            l->watchdog_parked = 1;
            if (!atomic_load(&l->stopping)) pthread_cond_wait(&l->wc, &l->wm);
            l->watchdog_parked = 0;
            pthread_mutex_unlock(&l->wm);
            asleep_ticks = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);  // wc waits on CLOCK_MONOTONIC
        ts.tv_nsec += LF_TICK_NS;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        if (!atomic_load(&l->stopping)) pthread_cond_timedwait(&l->wc, &l->wm, &ts);
        pthread_mutex_unlock(&l->wm);
        asleep_ticks = atomic_load_explicit(&l->sleeping, memory_order_relaxed) ? asleep_ticks + 1 : 0;
        uint64_t since = atomic_load(&l->lazy_since);
        if (since != 0 && now_ns() - since >= LF_STEAL_NS) {
            // Counted as blocked first (the handler's thread uncounts it when it returns, which
            // is after a successful steal), so requests of other callers that come meanwhile
            // turn handoffs eager, as behind an eager handoff.
            atomic_store_explicit(&l->blocked_pid, atomic_load_explicit(&l->lazy_pid, memory_order_relaxed), memory_order_relaxed);
            atomic_fetch_add(&l->blocked, 1);
            if (atomic_compare_exchange_strong(&l->lazy_since, &since, 0)) {
                // The blocked leader finds lazy_since cleared when it returns and steps down.
                atomic_fetch_add_explicit(&l->steals, 1, memory_order_relaxed);
                lf_pass_lead(l);
            } else {
                atomic_fetch_sub(&l->blocked, 1);
            }
        }
    }
    return NULL;
}

static void *lf_worker(void *arg) {
    struct lf_loop *l = arg;
    struct fuse_buf buf = { .mem = NULL };
    tl_loop = l;
    pthread_mutex_lock(&l->m);
    while (!l->done) {
        if (l->has_leader) {
            l->idle++;
            pthread_cond_wait(&l->c, &l->m);
            l->idle--;
            continue;
        }
        l->has_leader = 1;
        tl_leader = 1;
        pthread_mutex_unlock(&l->m);
        int error = 0;
        int end = lf_lead(l, &buf, &error);
        pthread_mutex_lock(&l->m);
        // Still leading: the loop ends (a thread that lost the lead leaves has_leader alone).
        if (tl_leader) { tl_leader = 0; l->has_leader = 0; }
        if (end) lf_finish(l, error);
    }
    pthread_mutex_unlock(&l->m);
    tl_loop = NULL;
    free(buf.mem);
    return NULL;
}

int cce4_fuse_loop_spin(struct fuse_session *se, unsigned threads, unsigned spin_us, struct cce4_loop_stats *stats) {
    if (threads == 0) threads = 1;
    struct lf_loop l = { .se = se, .fd = fuse_session_fd(se), .spin_ns = (uint64_t)spin_us * 1000u,
                         .poll_ns = (uint64_t)spin_us * 1000u };
    int flags = fcntl(l.fd, F_GETFL);
    if (flags < 0 || fcntl(l.fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
    l.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l.stop_fd < 0) { int e = errno; fcntl(l.fd, F_SETFL, flags); return -e; }
    pthread_mutex_init(&l.m, NULL);
    pthread_cond_init(&l.c, NULL);
    pthread_mutex_init(&l.wm, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);  // a step of the wall clock must not stall the ticks
    pthread_cond_init(&l.wc, &ca);
    pthread_condattr_destroy(&ca);
    l.watchdog = threads > 1;
    pthread_t *tids = calloc(threads + 1, sizeof *tids);
    int rc = -ENOMEM;
    if (tids != NULL) {
        // Workers block the stop signals: they reach this thread, which waits for them (or
        // for the loop's end) in ppoll and then ends the loop for all. The signals stay
        // blocked here outside ppoll, which unblocks them atomically: one that comes between
        // the check of fuse_session_exited and the wait interrupts the wait.
        sigset_t stop, old;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT); sigaddset(&stop, SIGTERM); sigaddset(&stop, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &stop, &old);
        sigset_t waiting = old;
        sigdelset(&waiting, SIGINT); sigdelset(&waiting, SIGTERM); sigdelset(&waiting, SIGHUP);
        unsigned started = 0;
        for (; started < threads; started++) {
            if (pthread_create(&tids[started], NULL, lf_worker, &l) != 0) break;
        }
        int watchdog_failed = started > 0 && l.watchdog && pthread_create(&tids[threads], NULL, lf_watchdog, &l) != 0;
        if (started == 0 || watchdog_failed) {
            pthread_mutex_lock(&l.m);
            lf_finish(&l, 0);
            pthread_mutex_unlock(&l.m);
            for (unsigned i = 0; i < started; i++) pthread_join(tids[i], NULL);
            rc = -EAGAIN;
        } else {
            struct pollfd p = { .fd = l.stop_fd, .events = POLLIN };
            while (!fuse_session_exited(se)) {
                if (ppoll(&p, 1, NULL, &waiting) > 0) break;
            }
            pthread_mutex_lock(&l.m);
            lf_finish(&l, 0);
            pthread_mutex_unlock(&l.m);
            for (unsigned i = 0; i < started; i++) pthread_join(tids[i], NULL);
            if (l.watchdog) pthread_join(tids[threads], NULL);
            rc = l.error;
            if (stats != NULL) {
                stats->handoffs_lazy = atomic_load(&l.handoffs_lazy);
                stats->handoffs_eager = atomic_load(&l.handoffs_eager);
                stats->steals = atomic_load(&l.steals);
            }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(tids);
    }
    pthread_cond_destroy(&l.c);
    pthread_mutex_destroy(&l.m);
    pthread_cond_destroy(&l.wc);
    pthread_mutex_destroy(&l.wm);
    close(l.stop_fd);
    fcntl(l.fd, F_SETFL, flags);
    return rc;
}

void cce4_fi_set_keep_cache(struct fuse_file_info *fi, int on) { fi->keep_cache = on ? 1 : 0; }
void cce4_fi_set_direct_io(struct fuse_file_info *fi, int on) { fi->direct_io = on ? 1 : 0; }
void cce4_fi_set_cache_readdir(struct fuse_file_info *fi, int on) { fi->cache_readdir = on ? 1 : 0; }

int cce4_notify_store(struct fuse_session *se, fuse_ino_t ino, off_t offset, const void *data, size_t size) {
    struct fuse_bufvec bufv = FUSE_BUFVEC_INIT(size);
    bufv.buf[0].mem = (void *)data;
    return fuse_lowlevel_notify_store(se, ino, offset, &bufv, 0);
}

void cce4_syslog(int priority, const char *message) { syslog(priority, "%s", message); }

size_t cce4_direntry_size(const char *name, int plus) {
    return plus ? fuse_add_direntry_plus(NULL, NULL, 0, name, NULL, 0)
                : fuse_add_direntry(NULL, NULL, 0, name, NULL, 0);
}
