// cce4long: libfuse3 shim. See include/cce4_fuse.h for why each function exists.
#define _GNU_SOURCE  // ppoll
#include "cce4_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <syslog.h>
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
// the leader, reads /dev/fuse; the others wait on a condition variable. The leader answers
// requests itself until a handler is about to block (a store read: it calls
// cce4_loop_handoff first), when leadership passes to an idle thread. So a lookup answered
// from memory wakes no other thread, and only the leader ever sleeps on the device: the
// kernel has exactly one waiter to wake. After a request, the leader keeps polling the
// (non-blocking) device for spin_us before it sleeps in poll(2).
struct lf_loop {
    struct fuse_session *se;
    int fd;             // the session's /dev/fuse fd, O_NONBLOCK while the loop runs
    int stop_fd;        // eventfd: written when the loop ends (wakes the leader and the main thread)
    uint64_t spin_ns;
    pthread_mutex_t m;
    pthread_cond_t c;
    int has_leader;     // under m
    int idle;           // followers waiting on c, under m
    int done;           // under m
    int error;          // the first read error (-errno), under m
};

static __thread struct lf_loop *tl_loop;
static __thread int tl_leader;

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
    }
}

void cce4_loop_handoff(void) {
    struct lf_loop *l = tl_loop;
    if (l == NULL || !tl_leader) return;
    tl_leader = 0;
    pthread_mutex_lock(&l->m);
    l->has_leader = 0;
    if (l->idle > 0) pthread_cond_signal(&l->c);
    pthread_mutex_unlock(&l->m);
}

// Leads until a handler hands off (returns 0) or the loop must end (returns 1, error set).
static int lf_lead(struct lf_loop *l, struct fuse_buf *buf, int *error) {
    // No spinning until this leader has answered a request itself: a thread that took over
    // from a handler about to block would only take the CPU that handler needs.
    uint64_t last = 0;
    struct pollfd fds[2] = { { .fd = l->fd, .events = POLLIN }, { .fd = l->stop_fd, .events = POLLIN } };
    while (tl_leader) {
        int res = fuse_session_receive_buf(l->se, buf);
        if (res > 0) {
            fuse_session_process_buf(l->se, buf);
            last = now_ns();
            continue;
        }
        if (res == 0 || fuse_session_exited(l->se)) return 1;  // unmounted (ENODEV) or exited
        if (res == -EINTR) continue;                            // an interrupted or aborted request
        if (res != -EAGAIN) { *error = res; return 1; }
        // Spinning yields the CPU to any other runnable thread (on 2 CPUs, the reader it serves).
        if (l->spin_ns > 0 && now_ns() - last < l->spin_ns) { sched_yield(); continue; }
        // Nothing came within the spin time: sleep until the device has a request.
        if (poll(fds, 2, 1000) < 0 && errno != EINTR) { *error = -errno; return 1; }
        if (fds[1].revents) return 1;
    }
    return 0;
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
        if (tl_leader) { tl_leader = 0; l->has_leader = 0; }
        if (end) lf_finish(l, error);
    }
    pthread_mutex_unlock(&l->m);
    tl_loop = NULL;
    free(buf.mem);
    return NULL;
}

int cce4_fuse_loop_spin(struct fuse_session *se, unsigned threads, unsigned spin_us) {
    if (threads == 0) threads = 1;
    struct lf_loop l = { .se = se, .fd = fuse_session_fd(se), .spin_ns = (uint64_t)spin_us * 1000u };
    int flags = fcntl(l.fd, F_GETFL);
    if (flags < 0 || fcntl(l.fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
    l.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l.stop_fd < 0) { int e = errno; fcntl(l.fd, F_SETFL, flags); return -e; }
    pthread_mutex_init(&l.m, NULL);
    pthread_cond_init(&l.c, NULL);
    pthread_t *tids = calloc(threads, sizeof *tids);
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
        if (started == 0) {
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
            rc = l.error;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        free(tids);
    }
    pthread_cond_destroy(&l.c);
    pthread_mutex_destroy(&l.m);
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
