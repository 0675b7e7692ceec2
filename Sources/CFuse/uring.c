// cce4long: FUSE over io_uring (Linux 6.14+, module parameter fuse.enable_uring=1).
//
// The kernel's per-CPU request queues (Documentation/filesystems/fuse-io-uring.rst): a
// request made on CPU n goes to queue n, into a buffer the daemon registered with an
// IORING_OP_URING_CMD; the daemon answers in the same buffer and fetches the next request
// with one COMMIT_AND_FETCH. No read(2)/writev(2) of /dev/fuse per request, and the thread
// that serves queue n is pinned to CPU n, so the request wakes a thread on the caller's own
// CPU (no cross-CPU wakeup, which on a VM is an IPI and an exit from HLT).
//
// libfuse 3.14 does not speak this protocol, so this file does, around libfuse's own request
// processing: each request is rebuilt in the /dev/fuse layout (in header, op header,
// payload) and given to fuse_session_process_buf, and the reply libfuse writes is caught by
// a custom io writev (fuse_session_custom_io) that copies it into the ring buffer instead.
// Everything that is not the reply to a ring request (INIT, FORGET and INTERRUPT, which the
// kernel still sends through /dev/fuse, and notifications such as NOTIFY_STORE) goes to
// /dev/fuse as before; libfuse's loop keeps reading /dev/fuse for those.
//
// Each worker thread owns one io_uring and one ring entry (one request in flight), pinned
// to its queue's CPU. The kernel gives a request to the most recently returned entry, so a
// lone caller keeps meeting the same, cache-warm thread; callers in parallel find other
// entries idle. A worker blocking on the store holds only its own entry.
#define _GNU_SOURCE
#include "cce4_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/fuse.h>

// The kernel ABI (include/uapi/linux/fuse.h, 7.42); Debian 12's headers predate it.
#define URING_IN_OUT_HEADER_SZ 128
#define URING_OP_IN_OUT_SZ 128
enum { URING_CMD_REGISTER = 1, URING_CMD_COMMIT_AND_FETCH = 2 };
struct uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;   // the request's unique: names it in the commit
    uint32_t payload_sz;  // bytes of payload, both ways
    uint32_t padding;
    uint64_t reserved;
};
struct uring_req_header {
    char in_out[URING_IN_OUT_HEADER_SZ];  // fuse_in_header, then the fuse_out_header
    char op_in[URING_OP_IN_OUT_SZ];       // the request's first argument (its op header)
    struct uring_ent_in_out ent;
};
struct uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};
_Static_assert(sizeof(struct uring_ent_in_out) == 32, "ABI");
_Static_assert(sizeof(struct uring_req_header) == 288, "ABI");
_Static_assert(sizeof(struct uring_cmd_req) <= 80, "fits the SQE128 command area");

// READs of at least this many bytes are served away from the requesting CPU.
#define MOVE_READS_FROM (256u << 10)

#define STOP_TAG UINT64_C(0xffffffffffffffff)
#define CMD_TAG UINT64_C(1)

struct cce4_uring;

struct uring_worker {
    struct cce4_uring *u;
    unsigned qid;
    pthread_t tid;
    int started;                     // thread created
    int used;                        // the kernel has given this entry a request
    struct io_uring ring;
    int ring_ok;
    struct uring_req_header *hdr;    // page-aligned (the kernel pins nothing, but copies to it)
    char *payload;
    struct iovec iov[2];
    char *req;                       // the request rebuilt in the /dev/fuse layout
    // The request being served (0: none) and whether its reply is in the buffers. Only the
    // worker's own thread touches them: every cce4fs handler replies before it returns.
    uint64_t unique;
    int replied;
    _Atomic uint64_t served;         // requests this worker answered (read by the stats)
};

struct cce4_uring {
    struct fuse_session *se;
    int fd;                          // the session's /dev/fuse
    int stop_fd;                     // eventfd, polled by every ring: the workers' stop
    unsigned queues, n;
    size_t payload_sz;
    _Atomic int stopping;
    _Atomic int error;               // the first failure (-errno), 0 if none
    uint64_t spin_ns;                // how long a worker polls for its next request
    // FUSE INIT: its unique (seen by uring_read), and whether its reply has been written.
    _Atomic uint64_t init_unique;
    int init_done;                   // under init_m
    pthread_mutex_t init_m;
    pthread_cond_t init_c;
    struct uring_worker *w;
};

static __thread struct uring_worker *tl_worker;
static struct cce4_uring *g_uring;   // the custom io's userdata is the session's, so a global

static ssize_t copy_reply(struct uring_worker *w, const struct iovec *iov, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += iov[i].iov_len;
    struct fuse_out_header oh;
    memcpy(&oh, iov[0].iov_base, sizeof oh);
    size_t len = 0;
    if (total - sizeof oh > w->u->payload_sz) {
        oh.error = -EIO;   // never happens: replies are bounded by max_read/max_pages
    } else {
        for (int i = 1; i < count; i++) {
            memcpy(w->payload + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
    }
    oh.len = (uint32_t)(sizeof oh + len);
    memcpy(w->hdr->in_out, &oh, sizeof oh);
    w->hdr->ent.payload_sz = (uint32_t)len;
    return (ssize_t)total;
}

static void init_replied(struct cce4_uring *u);

// libfuse's writes. The reply to the request this thread's ring worker is serving goes into
// the ring entry; everything else (INIT's reply, notifications, replies to requests read
// from /dev/fuse) goes to the device. A reply to a ring request written by another thread
// would go to the device too, where the kernel does not know it (ENOENT), and the worker
// answers EIO (serve): no cce4fs handler replies from another thread.
static ssize_t uring_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    struct cce4_uring *u = g_uring;
    uint64_t unique = 0;
    if (u != NULL && count >= 1 && iov[0].iov_len == sizeof(struct fuse_out_header))
        unique = ((const struct fuse_out_header *)iov[0].iov_base)->unique;
    struct uring_worker *w = tl_worker;
    if (unique != 0 && w != NULL && w->unique == unique) {
        w->replied = 1;
        return copy_reply(w, iov, count);
    }
    ssize_t n = writev(fd, iov, count);
    if (unique != 0 && unique == atomic_load(&u->init_unique)) init_replied(u);
    return n;
}

static ssize_t uring_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    struct cce4_uring *u = g_uring;
    if (u != NULL && n >= (ssize_t)sizeof(struct fuse_in_header)) {
        const struct fuse_in_header *in = buf;
        if (in->opcode == FUSE_INIT) atomic_store(&u->init_unique, in->unique);
    }
    return n;
}

// After the INIT reply has been written the kernel has set up the connection: the workers
// may register.
static void init_replied(struct cce4_uring *u) {
    pthread_mutex_lock(&u->init_m);
    u->init_done = 1;
    pthread_cond_broadcast(&u->init_c);
    pthread_mutex_unlock(&u->init_m);
}

// A worker's failure ends the session: the kernel would keep queueing requests of its CPU
// for entries that no thread serves any more. libfuse's loop sleeps in read(2) of /dev/fuse,
// so the exit is delivered as the stop signal its handler already takes.
static void fail(struct cce4_uring *u, int error) {
    int zero = 0;
    atomic_compare_exchange_strong(&u->error, &zero, error);
    if (!atomic_load(&u->stopping)) {
        fuse_session_exit(u->se);
        kill(getpid(), SIGTERM);
    }
}

static void prep_cmd(struct uring_worker *w, struct io_uring_sqe *sqe, uint32_t op, uint64_t commit_id) {
    memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = w->u->fd;
    sqe->cmd_op = op;
    if (op == URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)w->iov;
        sqe->len = 2;
    }
    struct uring_cmd_req *cmd = (struct uring_cmd_req *)sqe->cmd;
    cmd->commit_id = commit_id;
    cmd->qid = (uint16_t)w->qid;
    io_uring_sqe_set_data64(sqe, CMD_TAG);
}

// Serves the request in w's buffers and leaves its reply there. A request whose lengths do
// not add up is answered EIO and never passed on.
static void serve(struct uring_worker *w) {
    struct cce4_uring *u = w->u;
    struct fuse_in_header in;
    memcpy(&in, w->hdr->in_out, sizeof in);
    uint32_t psz = w->hdr->ent.payload_sz;
    size_t head = sizeof in;
    if (in.len < head || psz > u->payload_sz || in.len - head < psz || in.len - head - psz > URING_OP_IN_OUT_SZ) {
        struct fuse_out_header oh = { .len = sizeof oh, .error = -EIO, .unique = in.unique };
        memcpy(w->hdr->in_out, &oh, sizeof oh);
        w->hdr->ent.payload_sz = 0;
        return;
    }
    size_t opsz = in.len - head - psz;
    memcpy(w->req, &in, head);
    memcpy(w->req + head, w->hdr->op_in, opsz);
    memcpy(w->req + head + opsz, w->payload, psz);
    struct fuse_buf buf = { .mem = w->req, .size = in.len };
    w->replied = 0;
    w->unique = in.unique;
    fuse_session_process_buf(u->se, &buf);
    w->unique = 0;
    if (!w->replied) {
        // Every request on a ring gets a reply (FORGET, which gets none, comes on /dev/fuse);
        // the entry cannot fetch the next request before it answers this one.
        struct fuse_out_header oh = { .len = sizeof oh, .error = -EIO, .unique = in.unique };
        memcpy(w->hdr->in_out, &oh, sizeof oh);
        w->hdr->ent.payload_sz = 0;
    }
    atomic_store_explicit(&w->served, atomic_load_explicit(&w->served, memory_order_relaxed) + 1, memory_order_relaxed);
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Submits what is queued and waits for one completion. With spin_ns, first polls the
// completion queue that long, yielding the CPU between polls (to the caller the reply just
// woke, on this same CPU); a request given to this worker meanwhile is delivered by task
// work that runs when sched_yield returns, and appears in the queue.
static int submit_and_wait(struct uring_worker *w, struct io_uring_cqe **cqe) {
    uint64_t spin = w->u->spin_ns;
    if (spin > 0 && w->used) {
        int rc = io_uring_submit(&w->ring);
        if (rc < 0) return rc;
        uint64_t t0 = mono_ns();
        do {
            if (io_uring_peek_cqe(&w->ring, cqe) == 0) return 0;
            sched_yield();
        } while (mono_ns() - t0 < spin);
    }
    int rc = io_uring_submit_and_wait(&w->ring, 1);
    if (rc < 0) return rc;
    return io_uring_peek_cqe(&w->ring, cqe);
}

static void *worker_main(void *arg) {
    struct uring_worker *w = arg;
    struct cce4_uring *u = w->u;
    tl_worker = w;
    char name[16];
    snprintf(name, sizeof name, "cce4fs-ring%u", w->qid);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    // On the queue's CPU, where the kernel queues the requests of the tasks running there: a
    // request wakes a thread on its caller's CPU. Best effort (a cpuset may forbid it).
    cpu_set_t all, home, away;
    if (sched_getaffinity(0, sizeof all, &all) != 0) CPU_ZERO(&all);
    CPU_ZERO(&home);
    CPU_SET(w->qid, &home);
    away = all;
    CPU_CLR(w->qid, &away);
    int pinned = CPU_ISSET(w->qid, &all) && sched_setaffinity(0, sizeof home, &home) == 0;

    // Registering before the kernel has handled FUSE INIT fails with EAGAIN (and io_uring
    // would retry it on a thread of its own): wait for the INIT reply to have been written.
    pthread_mutex_lock(&u->init_m);
    while (!u->init_done && !atomic_load(&u->stopping)) pthread_cond_wait(&u->init_c, &u->init_m);
    pthread_mutex_unlock(&u->init_m);

    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    io_uring_prep_poll_add(sqe, u->stop_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, STOP_TAG);
    uint32_t op = URING_CMD_REGISTER;
    uint64_t commit_id = 0;
    int retries = 0;
    prep_cmd(w, io_uring_get_sqe(&w->ring), op, commit_id);

    while (!atomic_load(&u->stopping)) {
        struct io_uring_cqe *cqe = NULL;
        int rc = submit_and_wait(w, &cqe);
        if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) continue;
        if (rc < 0) { fail(u, rc); break; }
        uint64_t tag = io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&w->ring, cqe);
        if (tag == STOP_TAG || atomic_load(&u->stopping)) break;
        if (res == -EAGAIN || res == -EINTR) {
            // Not taken (INIT still pending, or interrupted): the same command again, shortly.
            if (++retries > 5000) { fail(u, res); break; }
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
            prep_cmd(w, io_uring_get_sqe(&w->ring), op, commit_id);
            continue;
        }
        if (res < 0) {
            // ENOTCONN, ECONNABORTED, ECANCELED: the mount ended. Anything else is a failure.
            if (res != -ENOTCONN && res != -ECONNABORTED && res != -ECANCELED) fail(u, res);
            break;
        }
        retries = 0;
        w->used = 1;
        commit_id = w->hdr->ent.commit_id;
        // A large read (readahead, mostly: several arrive at once from one reader) is
        // decrypted on another CPU: on its caller's it would compete with the caller and with
        // the other reads of the same queue.
        int moved = 0;
        if (pinned && CPU_COUNT(&away) > 0) {
            struct fuse_in_header in;
            struct fuse_read_in rd;
            memcpy(&in, w->hdr->in_out, sizeof in);
            memcpy(&rd, w->hdr->op_in, sizeof rd);
            if (in.opcode == FUSE_READ && rd.size >= MOVE_READS_FROM)
                moved = sched_setaffinity(0, sizeof away, &away) == 0;
        }
        serve(w);
        if (moved) (void)sched_setaffinity(0, sizeof home, &home);
        op = URING_CMD_COMMIT_AND_FETCH;
        prep_cmd(w, io_uring_get_sqe(&w->ring), op, commit_id);
    }
    tl_worker = NULL;
    return NULL;
}

int cce4_uring_kernel_enabled(void) {
    int fd = open("/sys/module/fuse/parameters/enable_uring", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char c = 0;
    ssize_t n = read(fd, &c, 1);
    close(fd);
    return n == 1 && (c == 'Y' || c == 'y' || c == '1') ? 1 : 0;
}

// A worker's ring and its large buffers (the header page stays: it is one page).
static void release(struct uring_worker *w) {
    if (w->ring_ok) { io_uring_queue_exit(&w->ring); w->ring_ok = 0; }
    free(w->payload); w->payload = NULL;
    free(w->req); w->req = NULL;
}

// Everything, when cce4_uring_start fails (no worker thread exists yet).
static void destroy(struct cce4_uring *u) {
    for (unsigned i = 0; u->w != NULL && i < u->n; i++) {
        release(&u->w[i]);
        free(u->w[i].hdr);
    }
    if (u->stop_fd >= 0) close(u->stop_fd);
    pthread_mutex_destroy(&u->init_m);
    pthread_cond_destroy(&u->init_c);
    free(u->w);
    free(u);
}

struct cce4_uring *cce4_uring_start(struct fuse_session *se, unsigned per_queue, size_t max_payload,
                                    unsigned spin_us, int *error) {
    *error = 0;
    if (g_uring != NULL) { *error = -EBUSY; return NULL; }
    struct cce4_uring *u = calloc(1, sizeof *u);
    if (u == NULL) { *error = -ENOMEM; return NULL; }
    u->se = se;
    u->fd = fuse_session_fd(se);
    u->spin_ns = (uint64_t)spin_us * 1000u;
    pthread_mutex_init(&u->init_m, NULL);
    pthread_cond_init(&u->init_c, NULL);
    u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int np = get_nprocs_conf();
    u->queues = np > 0 ? (unsigned)np : 1;
    u->n = u->queues * (per_queue > 0 ? per_queue : 1);
    // The kernel's payload buffer size: max(8 KiB, max_write, max_pages * page size).
    u->payload_sz = max_payload < 8192 ? 8192 : max_payload;
    u->w = calloc(u->n, sizeof *u->w);
    if (u->stop_fd < 0 || u->w == NULL) { *error = -ENOMEM; destroy(u); return NULL; }
    long page = sysconf(_SC_PAGESIZE);
    for (unsigned i = 0; i < u->n; i++) {
        struct uring_worker *w = &u->w[i];
        w->u = u;
        w->qid = i % u->queues;
        void *hdr = NULL, *payload = NULL;
        if (posix_memalign(&hdr, (size_t)page, (size_t)page) != 0 ||
            posix_memalign(&payload, (size_t)page, u->payload_sz) != 0) {
            free(hdr);
            *error = -ENOMEM; destroy(u); return NULL;
        }
        memset(hdr, 0, (size_t)page);
        w->hdr = hdr;
        w->payload = payload;
        w->iov[0] = (struct iovec){ .iov_base = w->hdr, .iov_len = sizeof *w->hdr };
        w->iov[1] = (struct iovec){ .iov_base = w->payload, .iov_len = u->payload_sz };
        w->req = malloc(sizeof(struct fuse_in_header) + URING_OP_IN_OUT_SZ + u->payload_sz);
        if (w->req == NULL) { *error = -ENOMEM; destroy(u); return NULL; }
        struct io_uring_params p = { .flags = IORING_SETUP_SQE128 };
        int rc = io_uring_queue_init_params(4, &w->ring, &p);
        if (rc != 0) { *error = rc; destroy(u); return NULL; }
        w->ring_ok = 1;
    }
    static const struct fuse_custom_io io = { .writev = uring_writev, .read = uring_read };
    g_uring = u;
    int rc = fuse_session_custom_io(se, &io, u->fd);
    if (rc != 0) { g_uring = NULL; *error = rc < 0 ? rc : -EINVAL; destroy(u); return NULL; }
    // Workers never take the stop signals: those reach the thread running libfuse's loop.
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT); sigaddset(&stop, SIGTERM); sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    for (unsigned i = 0; i < u->n; i++) {
        if (pthread_create(&u->w[i].tid, NULL, worker_main, &u->w[i]) != 0) {
            *error = -EAGAIN;
            break;
        }
        u->w[i].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (*error != 0) { cce4_uring_stop(u); return NULL; }
    return u;
}

void cce4_uring_stop(struct cce4_uring *u) {
    if (u == NULL) return;
    atomic_store(&u->stopping, 1);
    init_replied(u);   // wakes workers still waiting for INIT
    uint64_t one = 1;
    ssize_t wr = write(u->stop_fd, &one, sizeof one);
    (void)wr;
    for (unsigned i = 0; i < u->n; i++) {
        if (u->w[i].started) pthread_join(u->w[i].tid, NULL);
    }
    // The custom io stays installed (libfuse keeps it until the session is destroyed);
    // with g_uring cleared it writes everything to /dev/fuse. The workers' rings and
    // buffers go; the small structures stay, since another thread (a notification) may be
    // reading them.
    g_uring = NULL;
    for (unsigned i = 0; i < u->n; i++) release(&u->w[i]);
}

uint64_t cce4_uring_served(const struct cce4_uring *u) {
    uint64_t n = 0;
    for (unsigned i = 0; u != NULL && i < u->n; i++) n += atomic_load_explicit(&u->w[i].served, memory_order_relaxed);
    return n;
}
int cce4_uring_entries_used(const struct cce4_uring *u) {
    int n = 0;
    for (unsigned i = 0; u != NULL && i < u->n; i++) n += u->w[i].used;
    return n;
}
int cce4_uring_error(const struct cce4_uring *u) { return u ? atomic_load(&u->error) : 0; }
unsigned cce4_uring_queues(const struct cce4_uring *u) { return u ? u->queues : 0; }
