/* fs_sys.h - Lua-free blocking file-system routines that io_fs.c runs on libuv's thread pool */
#ifndef TETHER_FS_SYS_H
#define TETHER_FS_SYS_H

/*
** Everything here blocks and runs on a pool thread: it never touches a
** lua_State, the loop or the scheduler.  Every function returns 0 (or a
** count) on success and a negative errno on failure (what libuv's error
** codes are on Unix; io_fs.c translates them with uv_translate_sys_error).
** The includer defines _DEFAULT_SOURCE before its first include (d_type,
** preadv/pwritev).
*/

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FSS_CHUNK   65536     /* read-ahead and copy buffer size */
#define FSS_IOV_MAX 64        /* iovecs per writev call (POSIX minimum: 16) */
#define FSS_DEPTH   256       /* deepest directory a recursive remove enters */

static int fss_err(void) { return errno ? -errno : -EIO; }

/* open(2) with O_CLOEXEC, retried on EINTR: a descriptor or -errno. */
static int fss_open(const char *path, int flags, int mode) {
  int fd;
  do fd = open(path, flags | O_CLOEXEC, mode); while (fd < 0 && errno == EINTR);
  return fd < 0 ? fss_err() : fd;
}

static void fss_close(int fd) {
  /* NOTE: never retry close on EINTR (Linux frees the descriptor anyway). */
  if (fd >= 0) close(fd);
}

/* Read up to `n` bytes at `off` (off < 0: at the descriptor's offset),
** until n or EOF: the count or -errno. */
static int64_t fss_read_full(int fd, char *buf, size_t n, int64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = off < 0 ? read(fd, buf + got, n - got)
                        : pread(fd, buf + got, n - got, (off_t)(off + (int64_t)got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return got > 0 ? (int64_t)got : fss_err();
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  return (int64_t)got;
}

/*
** Write every byte of iov[0..n) at `off`, or at the end when off < 0 (a
** descriptor opened with O_APPEND): the count or -errno.  Partial writes are
** continued; `iov` is consumed.
*/
static int64_t fss_write_all(int fd, struct iovec *iov, int n, int64_t off) {
  int64_t total = 0;
  while (n > 0) {
    int k = n < FSS_IOV_MAX ? n : FSS_IOV_MAX;
    ssize_t w = off < 0 ? writev(fd, iov, k)
                        : pwritev(fd, iov, k, (off_t)(off + total));
    if (w < 0) {
      if (errno == EINTR) continue;
      return fss_err();
    }
    total += w;
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return total;
}

/*
** Read the rest of `fd` from `off` (< 0: its offset) into a new malloc'd
** buffer (*out, *len; a NUL follows the bytes).  `hint` is the size the
** caller expects (fstat's), 0 when unknown.  0 or -errno.
*/
static int fss_read_rest(int fd, int64_t off, size_t hint, char **out,
                         size_t *len) {
  size_t cap = hint + 1 > 256 ? hint + 1 : 256, got = 0;
  char *buf = malloc(cap + 1);
  if (buf == NULL) return -ENOMEM;
  for (;;) {
    int64_t r;
    if (got == cap) {
      char *nb;
      if (cap > SIZE_MAX / 4) { free(buf); return -ENOMEM; }
      nb = realloc(buf, cap * 2 + 1);
      if (nb == NULL) { free(buf); return -ENOMEM; }
      buf = nb;
      cap *= 2;
    }
    r = fss_read_full(fd, buf + got, cap - got, off < 0 ? -1 : off + (int64_t)got);
    if (r < 0) { free(buf); return (int)r; }
    got += (size_t)r;
    if (got < cap) break;          /* a short read: EOF */
  }
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return 0;
}

/*
** The whole file at `path`: open, fstat, read, close in one go.  On
** failure returns -errno.
*/
static int fss_read_file(const char *path, char **out, size_t *len) {
  struct stat st;
  int fd = fss_open(path, O_RDONLY, 0), rc;
  if (fd < 0) return fd;
  if (fstat(fd, &st) != 0) { rc = fss_err(); fss_close(fd); return rc; }
  if (S_ISDIR(st.st_mode)) { fss_close(fd); return -EISDIR; }
  rc = fss_read_rest(fd, -1, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0,
                     out, len);
  fss_close(fd);
  return rc;
}

/* Write `data` to `path` (created with `perm`; truncated, or appended to). */
static int fss_write_file(const char *path, const char *data, size_t len,
                          int append, int perm) {
  struct iovec iov;
  int64_t w;
  int fd = fss_open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC),
                    perm), rc = 0;
  if (fd < 0) return fd;
  iov.iov_base = (void *)data;
  iov.iov_len = len;
  w = fss_write_all(fd, &iov, 1, -1);
  if (w < 0) rc = (int)w;
  if (close(fd) != 0 && rc == 0 && errno != EINTR) rc = fss_err();
  return rc;
}

/* mkdir -p: create `path` and its missing parents; an existing directory
** is no error.  `path` is copied (it is edited in place). */
static int fss_mkdir_parents(const char *path, int mode) {
  size_t n = strlen(path);
  char *p = malloc(n + 1), *s;
  int rc = 0;
  struct stat st;
  if (p == NULL) return -ENOMEM;
  memcpy(p, path, n + 1);
  while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
  for (s = p + 1; ; s++) {
    char c = *s;
    if (c != '/' && c != '\0') continue;
    *s = '\0';
    if (mkdir(p, (mode_t)mode) != 0) {
      int e = errno;
      if (e != EEXIST || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = e == EEXIST ? -ENOTDIR : -e;
        if (c == '\0' && e == EEXIST) rc = -EEXIST;
        break;
      }
    }
    *s = c;
    if (c == '\0') break;
  }
  free(p);
  return rc;
}

/*
** Remove the entries of the directory open as `dfd` (consumed), never
** following a link.  On failure *fail (if NULL so far) gets a malloc'd
** copy of the path that failed, built from `path`.
*/
static int fss_remove_tree(int dfd, const char *path, int depth, char **fail);

static char *fss_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *p = malloc(la + lb + 2);
  if (p == NULL) return NULL;
  memcpy(p, a, la);
  p[la] = '/';
  memcpy(p + la + 1, b, lb + 1);
  return p;
}

static int fss_fail(char **fail, const char *path, const char *name, int rc) {
  if (fail && *fail == NULL) *fail = name ? fss_join(path, name) : strdup(path);
  return rc;
}

static int fss_remove_entry(int dfd, const char *path, const char *name,
                            int depth, char **fail) {
  struct stat st;
  int fd;
  if (unlinkat(dfd, name, 0) == 0) return 0;
  if (errno != EISDIR && errno != EPERM)
    return fss_fail(fail, path, name, fss_err());
  /* Linux says EISDIR, POSIX allows EPERM: is it a real directory? */
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return fss_fail(fail, path, name, fss_err());
  if (!S_ISDIR(st.st_mode)) return fss_fail(fail, path, name, -EPERM);
  if (depth >= FSS_DEPTH) return fss_fail(fail, path, name, -ENAMETOOLONG);
  do fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return fss_fail(fail, path, name, fss_err());
  {
    char *sub = fss_join(path, name);
    int rc;
    if (sub == NULL) { fss_close(fd); return -ENOMEM; }
    rc = fss_remove_tree(fd, sub, depth + 1, fail);
    free(sub);
    if (rc != 0) return rc;
  }
  if (unlinkat(dfd, name, AT_REMOVEDIR) != 0)
    return fss_fail(fail, path, name, fss_err());
  return 0;
}

static int fss_remove_tree(int dfd, const char *path, int depth, char **fail) {
  DIR *d = fdopendir(dfd);
  struct dirent *e;
  int rc = 0;
  if (d == NULL) { rc = fss_err(); fss_close(dfd); return fss_fail(fail, path, NULL, rc); }
  for (;;) {
    errno = 0;
    e = readdir(d);
    if (e == NULL) {
      if (errno) rc = fss_fail(fail, path, NULL, fss_err());
      break;
    }
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
        (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    rc = fss_remove_entry(dirfd(d), path, e->d_name, depth, fail);
    if (rc != 0) break;
  }
  closedir(d);
  return rc;
}

/* Remove `path`: a file, a link or an empty directory; with `recursive` a
** directory and everything under it (links are removed, never followed). */
static int fss_remove(const char *path, int recursive, char **fail) {
  struct stat st;
  int fd, rc;
  if (lstat(path, &st) != 0) return fss_err();
  if (!S_ISDIR(st.st_mode))
    return unlink(path) == 0 ? 0 : fss_err();
  if (!recursive) return rmdir(path) == 0 ? 0 : fss_err();
  do fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return fss_err();
  rc = fss_remove_tree(fd, path, 0, fail);
  if (rc != 0) return rc;
  return rmdir(path) == 0 ? 0 : fss_err();
}

/*
** Copy the contents of `from` to `to` (created or truncated, with the
** source's permission bits).  *which is set to 1 when the failure was on
** `to`, 0 when on `from`.
*/
static int fss_copy(const char *from, const char *to, int *which) {
  struct stat st, dst;
  char *buf;
  int in, out, rc = 0;
  *which = 0;
  in = fss_open(from, O_RDONLY, 0);
  if (in < 0) return in;
  if (fstat(in, &st) != 0) { rc = fss_err(); fss_close(in); return rc; }
  if (S_ISDIR(st.st_mode)) { fss_close(in); return -EISDIR; }
  *which = 1;
  out = fss_open(to, O_WRONLY | O_CREAT, (int)(st.st_mode & 07777));
  if (out < 0) { fss_close(in); return out; }
  if (fstat(out, &dst) != 0) rc = fss_err();
  else if (dst.st_dev == st.st_dev && dst.st_ino == st.st_ino) rc = -EINVAL;
  else if (ftruncate(out, 0) != 0) rc = fss_err();
  buf = rc == 0 ? malloc(FSS_CHUNK) : NULL;
  if (rc == 0 && buf == NULL) rc = -ENOMEM;
  while (rc == 0) {
    struct iovec iov;
    int64_t r = fss_read_full(in, buf, FSS_CHUNK, -1), w;
    if (r < 0) { rc = (int)r; *which = 0; break; }
    if (r == 0) break;
    iov.iov_base = buf;
    iov.iov_len = (size_t)r;
    w = fss_write_all(out, &iov, 1, -1);
    if (w < 0) rc = (int)w;
    if (r < FSS_CHUNK) break;
  }
  free(buf);
  fss_close(in);
  if (close(out) != 0 && rc == 0 && errno != EINTR) rc = fss_err();
  return rc;
}

/* The kind of a d_type, or -1 when the directory did not say. */
static int fss_dtype_mode(unsigned char t) {
  switch (t) {
    case DT_REG: return S_IFREG;
    case DT_DIR: return S_IFDIR;
    case DT_LNK: return S_IFLNK;
    case DT_FIFO: return S_IFIFO;
    case DT_SOCK: return S_IFSOCK;
    case DT_CHR: return S_IFCHR;
    case DT_BLK: return S_IFBLK;
    default: return -1;
  }
}

/*
** Read up to `max` entries of `d` (never "." or "..") into a new malloc'd
** block of records "<type byte><name>\0", where the type byte is a mode's
** S_IFMT >> 12 (0: unknown).  The type comes from d_type, else from lstat.
** *eof is set when the directory has no more entries.  0 or -errno.
*/
static int fss_read_dir(DIR *d, int max, char **out, size_t *len, int *eof) {
  size_t cap = 4096, used = 0;
  char *buf = malloc(cap);
  int n = 0;
  if (buf == NULL) return -ENOMEM;
  *eof = 0;
  while (n < max) {
    struct dirent *e;
    size_t nl;
    int mode;
    errno = 0;
    e = readdir(d);
    if (e == NULL) {
      if (errno) { int rc = fss_err(); free(buf); return rc; }
      *eof = 1;
      break;
    }
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' ||
        (e->d_name[1] == '.' && e->d_name[2] == '\0')))
      continue;
    mode = fss_dtype_mode(e->d_type);
    if (mode < 0) {
      struct stat st;
      mode = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0
                 ? (int)(st.st_mode & S_IFMT) : 0;
    }
    nl = strlen(e->d_name);
    if (used + nl + 2 > cap) {
      char *nb;
      while (used + nl + 2 > cap) cap *= 2;
      nb = realloc(buf, cap);
      if (nb == NULL) { free(buf); return -ENOMEM; }
      buf = nb;
    }
    buf[used] = (char)(mode >> 12);
    memcpy(buf + used + 1, e->d_name, nl + 1);
    used += nl + 2;
    n++;
  }
  *out = buf;
  *len = used;
  return 0;
}

#endif
