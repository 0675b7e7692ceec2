// cce4long: libfuse3 shim. See include/cce4_fuse.h for why each function exists.
#include "cce4_fuse.h"

#include <string.h>
#include <syslog.h>

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
