/*
 * powerloss.so — an LD_PRELOAD shim that makes SIGKILL behave like a power cut for chosen files.
 *
 * Writes (pwrite/pwrite64) to files whose path starts with $PB_POWERLOSS_PREFIX (except SQLite's -shm
 * index, which SQLite rebuilds after a crash) are kept in this process's memory instead of reaching the
 * kernel. Reads (pread) and sizes (fstat) see them, so the program works as usual. fsync/fdatasync write
 * the kept pages to the file and then sync it: only then are they on disk. When the process is SIGKILLed,
 * its memory - every write not yet synced - is gone, exactly what a power cut does to the page cache.
 *
 * Model and its limits (docs/CHAOS.md, R3): all unsynced writes of a file are lost together; no torn or
 * reordered pages; ftruncate is a sync point (it writes the kept pages, then truncates for real); file
 * creation, rename and unlink are immediate (directory entries are not modelled); read()/write() without
 * an offset pass through (SQLite uses pread/pwrite). It prints "powerloss: active for <prefix>" to stderr
 * at load; $PB_POWERLOSS_LOG=1 also prints each sync.
 *
 * Build: gcc -shared -fPIC -O2 -o powerloss.so powerloss.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 65536

struct seg {
  off_t off;
  size_t len;
  struct seg *next;
  unsigned char data[];
};

struct file {
  dev_t dev;
  ino_t ino;
  off_t size; /* the size the program sees: disk size grown by kept writes */
  struct seg *head, *tail;
  size_t kept;
  struct file *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char tracked[MAX_FD];
static struct file *files;
static char prefix[4096];
static size_t prefix_len;
static int log_syncs;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_fstat)(int, struct stat *);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);

__attribute__((constructor)) static void init(void) {
  real_open = dlsym(RTLD_NEXT, "open");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_pread = dlsym(RTLD_NEXT, "pread");
  real_pwrite = dlsym(RTLD_NEXT, "pwrite");
  real_fstat = dlsym(RTLD_NEXT, "fstat");
  real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_close = dlsym(RTLD_NEXT, "close");
  real_unlink = dlsym(RTLD_NEXT, "unlink");
  const char *p = getenv("PB_POWERLOSS_PREFIX");
  if (p && *p && strlen(p) < sizeof prefix) {
    strcpy(prefix, p);
    prefix_len = strlen(p);
  }
  log_syncs = getenv("PB_POWERLOSS_LOG") != NULL;
  /* one line per process, so a scenario can prove the shim was in place for every start */
  if (prefix_len) fprintf(stderr, "powerloss: active for %s\n", prefix);
}

static int matches(const char *path) {
  if (!prefix_len || !path || strncmp(path, prefix, prefix_len) != 0) return 0;
  size_t n = strlen(path);
  return !(n >= 4 && strcmp(path + n - 4, "-shm") == 0);
}

static struct file *find(dev_t dev, ino_t ino) {
  for (struct file *f = files; f; f = f->next)
    if (f->dev == dev && f->ino == ino) return f;
  return NULL;
}

static struct file *file_of(int fd, int create) {
  struct stat st;
  if (real_fstat(fd, &st) != 0) return NULL;
  struct file *f = find(st.st_dev, st.st_ino);
  if (!f && create) {
    f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->next = files;
    files = f;
  }
  return f;
}

/* writes the kept pages of f through fd, in the order they were written; the caller syncs */
static int flush(int fd, struct file *f) {
  size_t n = 0, bytes = f->kept;
  for (struct seg *s = f->head; s;) {
    size_t done = 0;
    while (done < s->len) {
      ssize_t w = real_pwrite(fd, s->data + done, s->len - done, s->off + (off_t)done);
      if (w < 0) {
        if (errno == EINTR) continue;
        return -1; /* kept pages from s on stay kept: a later sync retries them */
      }
      done += (size_t)w;
    }
    struct seg *next = s->next;
    free(s);
    s = next;
    f->head = s;
    n++;
  }
  f->tail = NULL;
  f->kept = 0;
  if (log_syncs && n) fprintf(stderr, "powerloss: synced %zu writes (%zu bytes) of inode %lu\n", n, bytes, (unsigned long)f->ino);
  return 0;
}

static void track(int fd, const char *path) {
  if (fd >= 0 && fd < MAX_FD) tracked[fd] = (unsigned char)matches(path);
}

int open(const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real_open(path, flags, mode);
  if (fd >= 0) {
    pthread_mutex_lock(&mu);
    track(fd, path);
    pthread_mutex_unlock(&mu);
  }
  return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  int fd = real_openat(dirfd, path, flags, mode);
  if (fd >= 0) {
    pthread_mutex_lock(&mu);
    track(fd, path[0] == '/' ? path : NULL);
    pthread_mutex_unlock(&mu);
  }
  return fd;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
  if (fd < 0 || fd >= MAX_FD || !tracked[fd]) return real_pwrite(fd, buf, len, off);
  pthread_mutex_lock(&mu);
  struct file *f = file_of(fd, 1);
  struct seg *s = f ? malloc(sizeof *s + len) : NULL;
  if (!s) {
    pthread_mutex_unlock(&mu);
    errno = ENOMEM;
    return -1;
  }
  s->off = off;
  s->len = len;
  s->next = NULL;
  memcpy(s->data, buf, len);
  if (f->tail) f->tail->next = s;
  else f->head = s;
  f->tail = s;
  f->kept += len;
  if (off + (off_t)len > f->size) f->size = off + (off_t)len;
  pthread_mutex_unlock(&mu);
  return (ssize_t)len;
}

ssize_t pread(int fd, void *buf, size_t len, off_t off) {
  if (fd < 0 || fd >= MAX_FD || !tracked[fd]) return real_pread(fd, buf, len, off);
  pthread_mutex_lock(&mu);
  struct file *f = file_of(fd, 0);
  ssize_t r = real_pread(fd, buf, len, off);
  if (!f || r < 0) {
    pthread_mutex_unlock(&mu);
    return r;
  }
  /* what the program would read: the file at its kept size, the kept writes laid over the disk's bytes */
  size_t want = off >= f->size ? 0 : (size_t)(f->size - off) < len ? (size_t)(f->size - off) : len;
  if ((size_t)r < want) memset((unsigned char *)buf + r, 0, want - (size_t)r);
  for (struct seg *s = f->head; s; s = s->next) {
    off_t lo = s->off > off ? s->off : off;
    off_t hi = s->off + (off_t)s->len < off + (off_t)want ? s->off + (off_t)s->len : off + (off_t)want;
    if (lo < hi) memcpy((unsigned char *)buf + (lo - off), s->data + (lo - s->off), (size_t)(hi - lo));
  }
  pthread_mutex_unlock(&mu);
  return (ssize_t)want > r ? (ssize_t)want : r;
}

int fstat(int fd, struct stat *st) {
  int r = real_fstat(fd, st);
  if (r != 0 || fd < 0 || fd >= MAX_FD || !tracked[fd]) return r;
  pthread_mutex_lock(&mu);
  struct file *f = find(st->st_dev, st->st_ino);
  if (f && f->size > st->st_size) st->st_size = f->size;
  pthread_mutex_unlock(&mu);
  return r;
}

static int sync_with(int fd, int (*real)(int)) {
  if (fd >= 0 && fd < MAX_FD && tracked[fd]) {
    pthread_mutex_lock(&mu);
    struct file *f = file_of(fd, 0);
    int r = f ? flush(fd, f) : 0;
    pthread_mutex_unlock(&mu);
    if (r != 0) return -1;
  }
  return real(fd);
}

int fsync(int fd) { return sync_with(fd, real_fsync); }
int fdatasync(int fd) { return sync_with(fd, real_fdatasync); }

int ftruncate(int fd, off_t len) {
  if (fd >= 0 && fd < MAX_FD && tracked[fd]) {
    pthread_mutex_lock(&mu);
    struct file *f = file_of(fd, 0);
    int r = f ? flush(fd, f) : 0;
    if (r == 0) {
      r = real_ftruncate(fd, len);
      if (r == 0 && f) f->size = len;
    }
    pthread_mutex_unlock(&mu);
    return r;
  }
  return real_ftruncate(fd, len);
}

int close(int fd) {
  if (fd >= 0 && fd < MAX_FD) tracked[fd] = 0; /* the kept pages stay with the inode, as in a page cache */
  return real_close(fd);
}

int unlink(const char *path) {
  if (matches(path)) {
    struct stat st;
    pthread_mutex_lock(&mu);
    if (stat(path, &st) == 0) {
      for (struct file **p = &files; *p; p = &(*p)->next) {
        if ((*p)->dev == st.st_dev && (*p)->ino == st.st_ino) {
          struct file *gone = *p;
          *p = gone->next;
          for (struct seg *s = gone->head; s;) {
            struct seg *n = s->next;
            free(s);
            s = n;
          }
          free(gone);
          break;
        }
      }
    }
    pthread_mutex_unlock(&mu);
  }
  return real_unlink(path);
}

/* the 64-bit names: the same calls on LP64 Linux, where off64_t is off_t and struct stat64 is struct stat */
_Static_assert(sizeof(off64_t) == sizeof(off_t) && sizeof(struct stat64) == sizeof(struct stat), "LP64 Linux only");

int open64(const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  return open(path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  return openat(dirfd, path, flags, mode);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off) { return pwrite(fd, buf, len, off); }
ssize_t pread64(int fd, void *buf, size_t len, off64_t off) { return pread(fd, buf, len, off); }
int fstat64(int fd, struct stat64 *st) { return fstat(fd, (struct stat *)st); }
int ftruncate64(int fd, off64_t len) { return ftruncate(fd, len); }
