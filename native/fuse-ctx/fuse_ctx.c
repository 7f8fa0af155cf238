// Caller context for fuse-native: fuse-native 2.2.6 never hands the FUSE caller's uid/gid/pid to JavaScript
// (fuse-friends/fuse-native#22). Loaded RTLD_GLOBAL before the mount, this object interposes libfuse's fuse_new:
// every operation that takes a path gets a trampoline that runs on the FUSE worker thread, reads fuse_get_context()
// there, and hands the operation on with the path prefixed "\x01UID GID PID\x01/path". lib/pem-fs/fuse-ctx.ts strips
// the prefix. The prefixed path lives on the worker's stack, which is blocked until JavaScript answers.
//
// No libfuse or Node headers are needed: the libfuse 2.9 ABI (struct fuse_operations slot order, struct fuse_context)
// is stable and declared here; the object registers itself as an (empty) N-API module so Node's dlopen keeps it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

struct fuse_context_abi { void *fuse; uid_t uid; gid_t gid; pid_t pid; void *private_data; mode_t umask; };

typedef long (*op6_t)(const char *, long, long, long, long, long);
typedef void *(*fuse_new_t)(void *, void *, const void *, size_t, void *);
typedef struct fuse_context_abi *(*get_context_t)(void);

// struct fuse_operations (libfuse 2.9): 38 function pointers, then flag bits, then ioctl..fallocate.
#define SLOTS 38
#define SLOT_INIT 29
#define SLOT_DESTROY 30
#define FLAG_UTIME_OMIT_OK 4u // bit 2 of the flag word after the 38 pointers
#define PREFIX_MAX 48
// A path from the mount as libfuse builds it: "/" + up to 4,095 bytes (the longest path a caller can pass, PATH_MAX
// counting its NUL, is 4,095 bytes below the mount point).
#define PATH_BYTES 4096

static op6_t originals[SLOTS];
static get_context_t get_context;

static long forward (int slot, const char *path, long a, long b, long c, long d, long e) {
  char buf[PREFIX_MAX + PATH_BYTES + 1];
  struct fuse_context_abi *cx = get_context();
  size_t len = path == NULL ? 0 : strlen(path);
  if (len > PATH_BYTES) return -ENAMETOOLONG;
  int n = snprintf(buf, PREFIX_MAX, "\x01%u %u %d\x01", (unsigned) cx->uid, (unsigned) cx->gid, (int) cx->pid);
  memcpy(buf + n, path == NULL ? "" : path, len + 1);
  return originals[slot](buf, a, b, c, d, e);
}

#define TRAMP(i) static long tramp_##i (const char *p, long a, long b, long c, long d, long e) { return forward(i, p, a, b, c, d, e); }
TRAMP(0) TRAMP(1) TRAMP(2) TRAMP(3) TRAMP(4) TRAMP(5) TRAMP(6) TRAMP(7) TRAMP(8) TRAMP(9)
TRAMP(10) TRAMP(11) TRAMP(12) TRAMP(13) TRAMP(14) TRAMP(15) TRAMP(16) TRAMP(17) TRAMP(18) TRAMP(19)
TRAMP(20) TRAMP(21) TRAMP(22) TRAMP(23) TRAMP(24) TRAMP(25) TRAMP(26) TRAMP(27) TRAMP(28)
TRAMP(31) TRAMP(32) TRAMP(33) TRAMP(34) TRAMP(35) TRAMP(36) TRAMP(37)

static const op6_t trampolines[SLOTS] = {
  tramp_0, tramp_1, tramp_2, tramp_3, tramp_4, tramp_5, tramp_6, tramp_7, tramp_8, tramp_9,
  tramp_10, tramp_11, tramp_12, tramp_13, tramp_14, tramp_15, tramp_16, tramp_17, tramp_18, tramp_19,
  tramp_20, tramp_21, tramp_22, tramp_23, tramp_24, tramp_25, tramp_26, tramp_27, tramp_28,
  NULL, NULL, tramp_31, tramp_32, tramp_33, tramp_34, tramp_35, tramp_36, tramp_37
};

// One mount per process, so one table of originals is enough.
void *fuse_new (void *ch, void *args, const void *ops, size_t op_size, void *user_data) {
  void *lib = dlopen("libfuse.so.2", RTLD_NOW | RTLD_NOLOAD);
  if (lib == NULL) lib = dlopen("libfuse.so.2", RTLD_NOW);
  if (lib == NULL) return NULL;
  // libfuse.so.2 keeps old ABIs under older symbol versions: ask for the ones fuse-native links against.
  fuse_new_t real = (fuse_new_t) dlvsym(lib, "fuse_new", "FUSE_2.6");
  get_context = (get_context_t) dlvsym(lib, "fuse_get_context", "FUSE_2.8");
  if (real == NULL || get_context == NULL || op_size < SLOTS * sizeof(void *) || op_size > 128 * sizeof(void *)) return NULL;
  void *copy[128];
  memcpy(copy, ops, op_size);
  for (int i = 0; i < SLOTS; i++) {
    if (i == SLOT_INIT || i == SLOT_DESTROY || copy[i] == NULL) continue;
    originals[i] = (op6_t) copy[i];
    copy[i] = (void *) trampolines[i];
  }
  // Without this flag libfuse silently drops a utimens that sets only one of the two times (touch -m, touch -a).
  unsigned int flags;
  memcpy(&flags, (char *) copy + SLOTS * sizeof(void *), sizeof flags);
  flags |= FLAG_UTIME_OMIT_OK;
  memcpy((char *) copy + SLOTS * sizeof(void *), &flags, sizeof flags);
  return real(ch, args, copy, op_size, user_data);
}

int pemfs_fuse_ctx_active (void) { return 1; }

// Node keeps a dlopen'ed object only if it registers a module; this one exports nothing.
void *napi_register_module_v1 (void *env, void *exports) { (void) env; return exports; }
