/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * file:///path/to/dir: kernel locks on one host, the same locks flock(1)
 * takes.  A lock NAME is the file DIR/NAME, locked with flock(2) on a
 * descriptor of its own: `anylock --url file:///var/lock/app run NAME cmd` and
 * `flock /var/lock/app/NAME cmd` exclude each other.  docs/file.md is the
 * user's page; this comment is the design.
 *
 * Files.  DIR/NAME is the lock file (never written, never removed except by
 * reset, as flock(1) leaves it).  Who holds it is kept in a sidecar,
 * DIR/.anylock/NAME (the record file), which flock(1) users never need: a
 * 4 KiB header (magic, the lock's key, the doorbell)
 * followed by 1 KiB slots, one per holder; the store's fencing-token
 * counter is DIR/.anylock/.anylock.  A holder owns its slot by an open-file-description (OFD) write lock on the slot's
 * byte range, so a slot is live exactly while its holder's descriptor is
 * open: a crashed holder's slot dies with it, like its flock.  A slot names
 * the lock file's inode it belongs to, so that records left on an inode a
 * reset unlinked are not mistaken for holders of the new one.
 *
 * Names.  The key (the prefix, then the name; the default prefix "lock:"
 * stands for none, so that plain names are exactly DIR/NAME) is the file
 * name when it is a safe one: not "." or "..", no '/', not starting with
 * '%', not ".anylock", and at most NAME_MAX bytes.  Otherwise it is '%'
 * followed by the key with '/' and '%' percent-encoded, or, when that is
 * too long, "%#" and the SHA-256 of the key in hex (the key itself is then
 * read back from the record file's header).
 *
 * Waiting.  A waiter sleeps in the kernel: a helper thread does the blocking
 * flock(2) on the waiter's own descriptors (the lock file's, and for the
 * writer-preference gate the record file's), with asynchronous cancellation
 * enabled around the system calls only.  The acquiring thread waits on a
 * condition variable for the helper, for the deadline, or for the client's
 * inotify watcher to report that DIR/NAME was removed or replaced (reset,
 * or a script's rm); on a timeout or such an event it cancels the helper
 * and joins it, and then a non-blocking flock on the same descriptor tells
 * whether the lock was granted at the last moment.  After every successful
 * flock the inode is checked again (fstat of the descriptor against stat of
 * the path): a lock taken on a file that was unlinked meanwhile is let go
 * and the path opened again, so the classic unlink race never lets two
 * holders in.
 *
 * Modes.  Exclusive is LOCK_EX, shared is LOCK_SH.  flock(2) has no writer
 * preference (a LOCK_SH request is granted while a LOCK_EX request waits),
 * so anylock adds a gate: a flock(2) of the record file, which is
 * independent of the OFD locks on its slots.  An exclusive acquirer that has
 * to wait holds the gate while it waits; a shared acquirer takes the gate
 * (waiting for it if a writer holds it) before it takes LOCK_SH and lets it
 * go after.  A semaphore holder takes LOCK_SH on the lock file and a slot;
 * the permits in use are the live semaphore slots of this lock file,
 * counted and claimed under the gate.  A permit waiter sleeps on inotify
 * events of the record file (every release writes the doorbell after it
 * unlocks its slot; a dead holder's descriptors are closed).  Every mode's
 * check and claim is thus atomic: it happens under the gate or LOCK_EX.
 *
 * Sessions.  The kernel frees a lock when its holder's descriptor is closed,
 * so the store is ANYLOCK_BACKEND_SESSION: no expiry is needed; one given is
 * enforced by the holder's own process (the core releases at its end).
 * Nothing can take a flock away from its holder, but a reset can remove the
 * file: the client's watcher thread notices when DIR/NAME of a held lock is
 * removed or replaced and reports the lock lost; extend checks it too.
 */
/* OFD locks (F_OFD_SETLK), pipe2 and syscall are GNU/Linux interfaces. */
#define _GNU_SOURCE
#include "builtin.h"

#ifdef __linux__

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* The sidecar directory in DIR, and so a name no plain lock file may have. */
#define FL_SIDE ".anylock"
#define FL_SIDE_LEN 8

/* The record file: a header, then slots. */
#define FL_HEADER 4096
#define FL_SLOT 1024
#define FL_MAX_SLOTS 4096 /* holders of one name at most (and a semaphore's most permits) */
#define FL_MAGIC "anylockR"
#define FL_VERSION 1
#define FL_OFF_VERSION 8
#define FL_OFF_KEYLEN 12
#define FL_OFF_TOKEN 16    /* reserved */
#define FL_OFF_DOORBELL 24 /* written after a semaphore permit is let go, to wake waiters */
#define FL_OFF_GATE 32     /* reserved (the gate is a flock of the whole record file) */
#define FL_OFF_KEY 64
#define FL_SLOT_MAGIC 0x31544c53u /* "SLT1" */

/* The store's fencing-token counter: DIR/.anylock/.anylock, a name no
 * record file has (a lock named ".anylock" is "%.anylock").  A magic, then
 * the counter (uint64) at FL_TOK_OFF, advanced atomically through a shared
 * mapping of the file's first page. */
#define FL_TOK_FILE FL_SIDE
#define FL_TOK_MAGIC "anylockT"
#define FL_TOK_OFF 16
#define FL_TOK_SIZE 4096
/* What a helper thread's stack needs: two system calls, and room for
 * sanitizers and the unwinder of a cancellation. */
#define FL_HELPER_STACK (256 * 1024)

/* How often a lost lock's loss is reported again, in case the first report
 * came before the core had marked the acquisition held. */
static const int64_t fl_rereport_ms[] = {1, 10, 100, 1000};
#define FL_REREPORTS ((int)(sizeof fl_rereport_ms / sizeof fl_rereport_ms[0]))

/* After a close event that finds every permit still taken: the kernel sends
 * the event a moment before it drops a dead holder's locks. */
static const int64_t fl_settle_ms[] = {1, 10, 100};
#define FL_SETTLES ((int)(sizeof fl_settle_ms / sizeof fl_settle_ms[0]))

/* ---- access modes (the access= parameter) ---- */

typedef struct fl_access {
    const char *name;
    mode_t dir_mode;
    mode_t file_mode;
} fl_access;

static const fl_access fl_accesses[] = {
    {"user", 0700, 0600},   /* the default: this user only */
    {"group", 02770, 0660}, /* the directory's group (setgid keeps it on new files) */
    {"all", 01777, 0666},   /* every user, as /run/lock (sticky) */
};
#define FL_DEFAULT_ACCESS 0

static const char *const fl_params[] = {"access", "network", NULL};

/* ---- network filesystems ---- */

/* f_type values of statfs(2) (linux/magic.h and the filesystems' own). */
static const struct {
    unsigned long type;
    const char *name;
} fl_network_fs[] = {
    {0x6969, "NFS"},          {0x517B, "SMB"},      {0xFF534D42, "CIFS"},   {0xFE534D42, "SMB2"},
    {0x73757245, "Coda"},     {0x5346414F, "AFS"},  {0x6B414653, "kAFS"},   {0x7461636f, "OCFS2"},
    {0x01161970, "GFS2"},     {0x00C36400, "Ceph"}, {0x01021997, "9P"},     {0x0BD00BD0, "Lustre"},
    {0x47504653, "GPFS"},     {0x564c, "NCP"},      {0x19830326, "OrangeFS"}, {0x013111A8, "IBRIX"},
    {0xAAD7AAEA, "PanFS"},    {0x61636673, "ACFS"},
};
#define FL_FUSE_MAGIC 0x65735546UL

int anylock__file_fs_verdict(unsigned long f_type, const char **name)
{
    for (size_t i = 0; i < sizeof fl_network_fs / sizeof fl_network_fs[0]; i++)
        if (fl_network_fs[i].type == (f_type & 0xffffffffUL)) {
            if (name)
                *name = fl_network_fs[i].name;
            return ANYLOCK__FS_NETWORK;
        }
    if ((f_type & 0xffffffffUL) == FL_FUSE_MAGIC) {
        if (name)
            *name = "FUSE";
        return ANYLOCK__FS_FUSE;
    }
    if (name)
        *name = "local";
    return ANYLOCK__FS_LOCAL;
}

/* ---- state ---- */

typedef struct fl_watch fl_watch;

/* Something the watcher thread looks out for. */
enum { FW_HOLDER, FW_WAITER };

struct fl_watch {
    fl_watch *next;
    int kind;
    int linked;
    const char *fname; /* the file name in DIR it is about */
    int wd;            /* a record file's watch (semaphore waiters), or -1 */
    /* waiter */
    pthread_cond_t *cond;
    int fired;
    /* holder */
    anylock_lock *lock;
    const char *path;
    dev_t dev;
    ino_t ino;
    int lost;
    int reports;
    int64_t report_at; /* monotonic ns of the next report of the loss */
};

typedef struct fl_recwatch {
    int wd;
    unsigned refs;
} fl_recwatch;

typedef struct fl_client {
    char *dir;
    size_t dir_len;
    char *side; /* DIR/.anylock */
    mode_t dir_mode, file_mode;
    size_t name_max;
    int strip; /* the client's prefix is the default one, which stands for none */

    pthread_mutex_t mu; /* guards everything below, and the helpers' results */
    int mu_ready;
    int started;       /* the watcher thread runs */
    int watch_failed;  /* inotify is not available */
    int warn_errno;    /* why, until said in the log */
    int ifd;           /* inotify */
    int dir_wd;        /* DIR's watch, -1 when gone */
    int wake[2];       /* a pipe that stops the watcher */
    pthread_t thread;
    fl_watch *watches;
    fl_recwatch *recw;
    size_t nrecw, caprecw;
    /* the store's token counter, mapped shared (opened at the first acquire) */
    int tok_fd;
    void *tok_map;
    uint64_t *tok;
} fl_client;

typedef struct fl_lock {
    char *path;     /* DIR/FNAME */
    char *rec_path; /* DIR/.anylock/FNAME */
    const char *fname;
    int held;
    int fd;     /* the lock file, while held */
    int rec_fd; /* the record file, kept open across acquisitions; valid when rec_open */
    int rec_open;
    dev_t dev;
    ino_t ino;
    long slot;
    anylock_mode mode;
    fl_watch holder;
} fl_lock;

/* One holder's slot, as it is stored (native byte order: the store is one
 * host's). */
typedef struct fl_slot {
    uint32_t magic;
    uint32_t state; /* 1: in use (live while its byte range is locked) */
    uint32_t mode;
    uint32_t permits;
    int64_t pid;
    uint64_t dev, ino;  /* of the lock file it belongs to */
    int64_t expires_at; /* monotonic ms; 0: never */
    uint64_t token;
    uint32_t id_len;
    uint32_t meta_len;
    char id[ANYLOCK_ID_MAX];
    char meta[ANYLOCK_META_MAX];
} fl_slot;

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(fl_slot) <= FL_SLOT, "a slot must fit its byte range");
_Static_assert(FL_OFF_KEY + ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX < FL_HEADER - 1, "the key must fit the header");
#endif

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    return anylock_now_ns() / 1000000;
}

static anylock_status errno_status(int e, anylock_status other)
{
    switch (e) {
    case EACCES:
    case EPERM:
    case EROFS:
        return ANYLOCK_ACCESS;
    case ENOMEM:
        return ANYLOCK_NOMEM;
    default:
        return other;
    }
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
    char *s = malloc(na + nb + nc + 1);
    if (!s)
        return NULL;
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc + 1);
    return s;
}

/* mkdir -p, each directory it makes getting mode exactly. */
static int mkdir_p(const char *path, mode_t mode)
{
    struct stat sb;
    if (stat(path, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
    if (errno != ENOENT)
        return -1;
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int rc = 0;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(copy, mode) == 0) {
            if (chmod(copy, mode) != 0) { /* mkdir obeys the umask and drops setgid */
                rc = -1;
                break;
            }
        } else if (errno != EEXIST) {
            rc = -1;
            break;
        } else if (stat(copy, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            errno = ENOTDIR;
            rc = -1;
            break;
        }
        *p = c;
        if (!c)
            break;
    }
    int e = errno;
    free(copy);
    errno = e;
    return rc;
}

/* Runs fn in a new thread with every signal blocked (so that no signal
 * meant for the process interrupts it) and a small stack. */
static int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    pthread_attr_setstacksize(&attr, FL_HELPER_STACK);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

/* ---- names ---- */

/* Whether s[0..n) is UTF-8 without control characters (C0, DEL, C1), as the
 * core requires of names and prefixes. */
static int valid_text(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (!len || c > 0xf4 || i + len > n)
            return 0;
        unsigned cp = c & (0x3f >> (len - 1));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return 0;
        i += len;
    }
    return 1;
}

/* The key a lock is stored under: the name alone when the client's prefix
 * is the default one. */
static const char *eff_key(const fl_client *fc, const anylock_op *op, size_t *len)
{
    if (fc->strip) {
        *len = op->name_len;
        return op->name;
    }
    *len = op->key_len;
    return op->key;
}

static int is_hex_hash(const char *f)
{
    if (f[0] != '%' || f[1] != '#' || strlen(f) != 66)
        return 0;
    for (int i = 2; i < 66; i++)
        if (!((f[i] >= '0' && f[i] <= '9') || (f[i] >= 'a' && f[i] <= 'f')))
            return 0;
    return 1;
}

/* The file name in DIR for key k (out: at least name_max + 1 bytes). */
static void map_name(const fl_client *fc, const char *k, size_t n, char *out)
{
    int plain = n >= 1 && n <= fc->name_max && !memchr(k, '/', n) && k[0] != '%' &&
                !(n == 1 && k[0] == '.') && !(n == 2 && k[0] == '.' && k[1] == '.') &&
                !(n == FL_SIDE_LEN && !memcmp(k, FL_SIDE, FL_SIDE_LEN));
    if (plain) {
        memcpy(out, k, n);
        out[n] = '\0';
        return;
    }
    size_t o = 0;
    out[o++] = '%';
    for (size_t i = 0; i < n; i++) {
        int esc = k[i] == '/' || k[i] == '%';
        if (o + (esc ? 3 : 1) > fc->name_max)
            goto hash;
        if (esc) {
            out[o++] = '%';
            out[o++] = '2';
            out[o++] = k[i] == '/' ? 'F' : '5';
        } else {
            out[o++] = k[i];
        }
    }
    out[o] = '\0';
    return;
hash:;
    static const char hex[] = "0123456789abcdef";
    unsigned char h[32];
    anylock_sha256(k, n, h);
    out[0] = '%';
    out[1] = '#';
    for (int i = 0; i < 32; i++) {
        out[2 + 2 * i] = hex[h[i] >> 4];
        out[3 + 2 * i] = hex[h[i] & 15];
    }
    out[66] = '\0';
}

/* The key a file name in DIR stands for, into out (at least
 * ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX bytes): its length; -2 for a hashed
 * name (the key is in the record file); -1 for a file that is no lock of
 * ours. */
static long unmap_name(const fl_client *fc, const char *f, char *out)
{
    size_t n = strlen(f);
    if (!strcmp(f, ".") || !strcmp(f, "..") || !strcmp(f, FL_SIDE))
        return -1;
    if (f[0] != '%') {
        if (n > ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX || !valid_text((const unsigned char *)f, n))
            return -1;
        memcpy(out, f, n);
        return (long)n;
    }
    if (is_hex_hash(f))
        return -2;
    size_t o = 0;
    for (size_t i = 1; i < n; i++) {
        if (o >= ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX)
            return -1;
        if (f[i] == '%') {
            if (i + 2 >= n || f[i + 1] != '2' || (f[i + 2] != 'F' && f[i + 2] != '5'))
                return -1;
            out[o++] = f[i + 2] == 'F' ? '/' : '%';
            i += 2;
        } else {
            out[o++] = f[i];
        }
    }
    if (!o || !valid_text((const unsigned char *)out, o))
        return -1;
    /* Only the one spelling map_name gives is ours. */
    char again[NAME_MAX + 1];
    map_name(fc, out, o, again);
    return strcmp(again, f) ? -1 : (long)o;
}

/* ---- the watcher: losses of held locks, and wake-ups of waiters ---- */

static void report_loss(fl_watch *w)
{
    anylock_lock_lost(w->lock, ANYLOCK_NOT_HELD,
                      "file %.200s was removed or replaced while held (reset, or removed by another program)",
                      w->path);
}

/* Checks a held lock's file; reports it lost if the path no longer names
 * the locked inode.  fc->mu held. */
static void check_holder(fl_watch *w, int64_t now)
{
    if (w->lost)
        return;
    struct stat sb;
    if (stat(w->path, &sb) == 0 && sb.st_dev == w->dev && sb.st_ino == w->ino)
        return;
    w->lost = 1;
    w->reports = 0;
    w->report_at = now + fl_rereport_ms[0] * 1000000;
    report_loss(w);
}

/* Wakes or checks what an event is about.  fc->mu held. */
static void touch(fl_client *fc, const char *name, int wd, int all, int64_t now)
{
    for (fl_watch *w = fc->watches; w; w = w->next) {
        int hit = all || (name && !strcmp(name, w->fname)) || (wd >= 0 && wd == w->wd);
        if (!hit)
            continue;
        if (w->kind == FW_HOLDER) {
            check_holder(w, now);
        } else {
            w->fired = 1;
            pthread_cond_broadcast(w->cond);
        }
    }
}

static void *watcher_main(void *arg)
{
    fl_client *fc = arg;
    /* Aligned as inotify_event requires. */
    union {
        struct inotify_event ev;
        char buf[16384];
    } u;
    for (;;) {
        int timeout = -1;
        pthread_mutex_lock(&fc->mu);
        int64_t now = anylock_now_ns();
        for (fl_watch *w = fc->watches; w; w = w->next) {
            if (w->kind != FW_HOLDER || !w->lost || w->reports >= FL_REREPORTS)
                continue;
            if (w->report_at <= now) {
                report_loss(w);
                if (++w->reports < FL_REREPORTS)
                    w->report_at = now + fl_rereport_ms[w->reports] * 1000000;
                continue;
            }
            int64_t ms = (w->report_at - now + 999999) / 1000000;
            if (timeout < 0 || ms < timeout)
                timeout = (int)ms;
        }
        pthread_mutex_unlock(&fc->mu);

        struct pollfd p[2] = {{.fd = fc->ifd, .events = POLLIN}, {.fd = fc->wake[0], .events = POLLIN}};
        if (poll(p, 2, timeout) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        for (;;) {
            ssize_t n = read(fc->ifd, u.buf, sizeof u.buf);
            if (n <= 0)
                break;
            pthread_mutex_lock(&fc->mu);
            now = anylock_now_ns();
            for (char *q = u.buf; q < u.buf + n;) {
                struct inotify_event *ev = (struct inotify_event *)(void *)q;
                int all = (ev->mask & IN_Q_OVERFLOW) != 0;
                if (ev->wd == fc->dir_wd) {
                    if (ev->mask & IN_IGNORED)
                        fc->dir_wd = -1;
                    if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT))
                        all = 1;
                    touch(fc, ev->len ? ev->name : NULL, -1, all, now);
                } else {
                    touch(fc, NULL, ev->wd, all, now);
                }
                q += sizeof *ev + ev->len;
            }
            pthread_mutex_unlock(&fc->mu);
        }
    }
    return NULL;
}

#define FL_DIR_EVENTS (IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF)

/* Starts the watcher if needed and makes sure DIR is watched: 0, or -1 when
 * inotify is not to be had (said once in the log).  fc->mu held. */
static int watcher_ready(fl_client *fc)
{
    if (fc->watch_failed)
        return -1;
    if (!fc->started) {
        fc->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fc->ifd < 0)
            goto failed;
        if (pipe2(fc->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
            close(fc->ifd);
            fc->ifd = -1;
            goto failed;
        }
        if (thread_start(&fc->thread, watcher_main, fc) != 0) {
            close(fc->ifd);
            close(fc->wake[0]);
            close(fc->wake[1]);
            fc->ifd = -1;
            goto failed;
        }
        fc->started = 1;
    }
    if (fc->dir_wd < 0) {
        fc->dir_wd = inotify_add_watch(fc->ifd, fc->dir, FL_DIR_EVENTS);
        if (fc->dir_wd < 0)
            return -1; /* DIR is gone; the caller's open will say so */
    }
    return 0;
failed:
    fc->watch_failed = 1;
    fc->warn_errno = errno ? errno : EINVAL;
    return -1;
}

/* Says, once, that inotify could not be had (outside fc->mu, since a log
 * callback may call the library). */
static void watch_warn(anylock_op *op, fl_client *fc)
{
    pthread_mutex_lock(&fc->mu);
    int e = fc->warn_errno;
    fc->warn_errno = 0;
    pthread_mutex_unlock(&fc->mu);
    if (e)
        anylock_op_log(op, ANYLOCK_LOG_WARNING, ANYLOCK_EVENT_MESSAGE,
                       "file %.200s: no inotify (%s): a waiter is not woken by a reset, and a holder hears of one "
                       "only when it renews",
                       fc->dir, strerror(e));
}

static void watch_add(fl_client *fc, fl_watch *w)
{
    if (w->linked)
        return;
    w->next = fc->watches;
    fc->watches = w;
    w->linked = 1;
}

static void watch_del(fl_client *fc, fl_watch *w)
{
    if (!w->linked)
        return;
    for (fl_watch **p = &fc->watches; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    w->linked = 0;
}

/* A watch on a record file for semaphore waiters: its descriptor, counted,
 * or -1.  fc->mu held. */
static int recwatch_get(fl_client *fc, const char *path)
{
    int wd = inotify_add_watch(fc->ifd, path, IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
    if (wd < 0)
        return -1;
    for (size_t i = 0; i < fc->nrecw; i++)
        if (fc->recw[i].wd == wd) {
            fc->recw[i].refs++;
            return wd;
        }
    if (fc->nrecw == fc->caprecw) {
        size_t cap = fc->caprecw ? fc->caprecw * 2 : 4;
        fl_recwatch *g = realloc(fc->recw, cap * sizeof *g);
        if (!g) {
            inotify_rm_watch(fc->ifd, wd);
            return -1;
        }
        fc->recw = g;
        fc->caprecw = cap;
    }
    fc->recw[fc->nrecw].wd = wd;
    fc->recw[fc->nrecw].refs = 1;
    fc->nrecw++;
    return wd;
}

static void recwatch_put(fl_client *fc, int wd)
{
    for (size_t i = 0; i < fc->nrecw; i++)
        if (fc->recw[i].wd == wd) {
            if (--fc->recw[i].refs == 0) {
                inotify_rm_watch(fc->ifd, wd);
                fc->recw[i] = fc->recw[--fc->nrecw];
            }
            return;
        }
}

/* ---- open and close ---- */

static anylock_status fl_open(anylock_op *op, const anylock_url *url)
{
    fl_client *fc = op->state;
    fc->ifd = -1;
    fc->dir_wd = -1;
    fc->tok_fd = -1;
    fc->wake[0] = fc->wake[1] = -1;
    if (pthread_mutex_init(&fc->mu, NULL))
        return ANYLOCK_NOMEM;
    fc->mu_ready = 1;
    if (url->user || url->password)
        return anylock_op_error(op, ANYLOCK_URL_BAD_USERINFO, "file:// takes no user or password");
    if (url->nhosts > 1 || (url->nhosts && (url->hosts[0].port || strcmp(url->hosts[0].host, "localhost"))))
        return anylock_op_error(op, ANYLOCK_URL_BAD_HOST,
                                "file:// takes no host (locks are one host's): use file:///path/to/dir");
    const char *path = url->path;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n <= 1 || path[0] != '/')
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH,
                                "file:// needs the absolute path of a directory: file:///path/to/dir");
    if (n > PATH_MAX - NAME_MAX - FL_SIDE_LEN - 3)
        return anylock_op_error(op, ANYLOCK_URL_BAD_PATH, "file://: the directory's path is too long");
    if (!(fc->dir = strndup(path, n)))
        return ANYLOCK_NOMEM;
    fc->dir_len = n;
    if (!(fc->side = join(fc->dir, "/", FL_SIDE)))
        return ANYLOCK_NOMEM;

    const fl_access *acc = &fl_accesses[FL_DEFAULT_ACCESS];
    const char *a = anylock_url_param_get(url, "access");
    if (a) {
        acc = NULL;
        for (size_t i = 0; i < sizeof fl_accesses / sizeof fl_accesses[0]; i++)
            if (!strcmp(a, fl_accesses[i].name))
                acc = &fl_accesses[i];
        if (!acc)
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "file://: access=%.32s: use access=user, access=group or access=all", a);
    }
    fc->dir_mode = acc->dir_mode;
    fc->file_mode = acc->file_mode;
    int allow_network = 0;
    const char *net = anylock_url_param_get(url, "network");
    if (net) {
        if (!strcmp(net, "allow"))
            allow_network = 1;
        else if (strcmp(net, "refuse"))
            return anylock_op_error(op, ANYLOCK_URL_BAD_PARAM,
                                    "file://: network=%.32s: use network=refuse or network=allow", net);
    }
    fc->strip = !strcmp(op->prefix, ANYLOCK_DEFAULT_PREFIX);

    if (mkdir_p(fc->dir, fc->dir_mode) != 0) {
        int e = errno;
        anylock_status st = e == ENOTDIR ? ANYLOCK_URL_BAD_PATH : errno_status(e, ANYLOCK_CONNECT);
        return anylock_op_error(op, st, "file %.200s: cannot create the directory: %s", fc->dir, strerror(e));
    }
    struct statfs fs;
    if (statfs(fc->dir, &fs) != 0)
        return anylock_op_error(op, ANYLOCK_CONNECT, "file %.200s: statfs: %s", fc->dir, strerror(errno));
    const char *fsname = NULL;
    int verdict = anylock__file_fs_verdict((unsigned long)fs.f_type, &fsname);
    if (verdict == ANYLOCK__FS_NETWORK && !allow_network)
        return anylock_op_error(op, ANYLOCK_STORE_UNSAFE,
                                "file %.200s is on a network filesystem (%s): flock(2) there is emulated or "
                                "local to one client, so processes on different machines would not exclude "
                                "each other; use a local directory (or network=allow at your own risk)",
                                fc->dir, fsname);
    if (verdict != ANYLOCK__FS_LOCAL)
        anylock_op_log(op, ANYLOCK_LOG_WARNING, ANYLOCK_EVENT_MESSAGE,
                       "file %.200s is on %s: flock(2) may exclude only the processes of this host", fc->dir,
                       verdict == ANYLOCK__FS_FUSE ? "a FUSE filesystem" : fsname);
    long nm = pathconf(fc->dir, _PC_NAME_MAX);
    fc->name_max = nm <= 0 || nm > NAME_MAX ? NAME_MAX : (size_t)nm;
    if (fc->name_max < 66)
        return anylock_op_error(op, ANYLOCK_STORE_UNSAFE,
                                "file %.200s: its filesystem allows file names of only %zu bytes", fc->dir,
                                fc->name_max);
    return ANYLOCK_OK;
}

static void fl_close(anylock_op *op)
{
    fl_client *fc = op->state;
    if (fc->started) {
        char c = 1;
        while (write(fc->wake[1], &c, 1) < 0 && errno == EINTR)
            ;
        pthread_join(fc->thread, NULL);
        close(fc->ifd);
        close(fc->wake[0]);
        close(fc->wake[1]);
    }
    free(fc->recw);
    if (fc->tok_map)
        munmap(fc->tok_map, FL_TOK_SIZE);
    if (fc->tok_fd >= 0)
        close(fc->tok_fd);
    if (fc->mu_ready)
        pthread_mutex_destroy(&fc->mu);
    free(fc->dir);
    free(fc->side);
}

/* ---- files ---- */

/* The paths of a lock's files, made once per handle. */
static anylock_status lock_paths(anylock_op *op, fl_client *fc, fl_lock *lk)
{
    if (lk->path)
        return ANYLOCK_OK;
    size_t n;
    const char *k = eff_key(fc, op, &n);
    char fname[NAME_MAX + 1];
    map_name(fc, k, n, fname);
    lk->path = join(fc->dir, "/", fname);
    lk->rec_path = join(fc->side, "/", fname);
    if (!lk->path || !lk->rec_path) {
        free(lk->path);
        free(lk->rec_path);
        lk->path = lk->rec_path = NULL;
        return ANYLOCK_NOMEM;
    }
    lk->fname = lk->path + fc->dir_len + 1;
    return ANYLOCK_OK;
}

/* Opens path (creating it with the client's file mode if create and it is
 * missing, and DIR too if that went missing), as flock(1) does: read-only,
 * so that a lock file another user made readable can be locked.  The
 * descriptor, with *sb its fstat, or -1 with errno. */
static int open_file(fl_client *fc, const char *path, int create, int flags, struct stat *sb)
{
    int dir_made = 0;
    flags |= O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    for (;;) {
        int fd = open(path, flags);
        if (fd < 0 && errno == ENOENT && create) {
            fd = open(path, flags | O_CREAT | O_EXCL, fc->file_mode);
            if (fd < 0 && errno == EEXIST)
                continue;
            if (fd < 0 && errno == ENOENT && !dir_made) {
                /* The directory went missing (removed by hand): make it
                 * again, as open did. */
                dir_made = 1;
                if (mkdir_p(create == 2 ? fc->side : fc->dir, fc->dir_mode) != 0)
                    return -1;
                continue;
            }
            if (fd >= 0 && fchmod(fd, fc->file_mode) != 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
            }
        }
        if (fd < 0)
            return -1;
        if (fstat(fd, sb) != 0 || !S_ISREG(sb->st_mode)) {
            int e = S_ISREG(sb->st_mode) ? errno : EISDIR;
            close(fd);
            errno = e;
            return -1;
        }
        return fd;
    }
}

/* 1 if path still names the inode sb describes. */
static int same_file(const char *path, const struct stat *sb)
{
    struct stat now;
    return stat(path, &now) == 0 && now.st_dev == sb->st_dev && now.st_ino == sb->st_ino;
}

static anylock_status file_error(anylock_op *op, const char *path, const char *what, int e)
{
    if (e == EISDIR)
        return anylock_op_error(op, ANYLOCK_STORE, "file %.200s: not a regular file", path);
    return anylock_op_error(op, errno_status(e, ANYLOCK_IO), "file %.200s: %s: %s", path, what, strerror(e));
}

static void rec_close(fl_lock *lk)
{
    if (!lk->rec_open)
        return;
    close(lk->rec_fd);
    lk->rec_open = 0;
}

/* Makes sure the handle's record file is open, mapped and initialised. */
static anylock_status rec_ready(anylock_op *op, fl_client *fc, fl_lock *lk)
{
    struct stat sb;
    if (lk->rec_open) {
        if (fstat(lk->rec_fd, &sb) == 0 && sb.st_nlink > 0)
            return ANYLOCK_OK;
        rec_close(lk); /* removed by hand: start a new one */
    }
    int fd = open_file(fc, lk->rec_path, 2, O_RDWR | O_NOFOLLOW, &sb);
    if (fd < 0)
        return file_error(op, lk->rec_path, "cannot open the holder record file", errno);
    char head[16] = {0};
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got == (ssize_t)sizeof head && memcmp(head, FL_MAGIC, 8) && memcmp(head, "\0\0\0\0\0\0\0\0", 8)) {
        close(fd);
        return anylock_op_error(op, ANYLOCK_STORE, "file %.200s: not an anylock holder record file", lk->rec_path);
    }
    if (got < (ssize_t)sizeof head || memcmp(head, FL_MAGIC, 8) || sb.st_size < FL_HEADER) {
        /* New (or being made by another process at once: the same bytes).
         * The last header byte gives the file its size without ever
         * shrinking it. */
        size_t kn;
        const char *k = eff_key(fc, op, &kn);
        char h[FL_OFF_KEY + ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX];
        memset(h, 0, FL_OFF_KEY);
        memcpy(h, FL_MAGIC, 8);
        uint32_t v = FL_VERSION, kl = (uint32_t)kn;
        memcpy(h + FL_OFF_VERSION, &v, 4);
        memcpy(h + FL_OFF_KEYLEN, &kl, 4);
        memcpy(h + FL_OFF_KEY, k, kn);
        char zero = 0;
        /* Magic, version and key only: the token and doorbell are left as
         * they are. */
        if (pwrite(fd, h + FL_OFF_KEY, kn, FL_OFF_KEY) != (ssize_t)kn ||
            pwrite(fd, h + FL_OFF_VERSION, 8, FL_OFF_VERSION) != 8 || pwrite(fd, h, 8, 0) != 8 ||
            pwrite(fd, &zero, 1, FL_HEADER - 1) != 1) {
            int e = errno;
            close(fd);
            return file_error(op, lk->rec_path, "cannot write the holder record file", e);
        }
    }
    lk->rec_fd = fd;
    lk->rec_open = 1;
    return ANYLOCK_OK;
}

/* OFD locks on the record file's slots. */
static int ofd(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static off_t slot_off(long i)
{
    return FL_HEADER + (off_t)i * FL_SLOT;
}

/* The writer-preference gate is a flock(2) of the record file, which is
 * independent of the OFD locks on its slots (flock and record locks do not
 * interact on a local filesystem).  A flock, not an OFD lock, because a
 * blocking flock is a system call every tool (valgrind among them) knows
 * to wait in.  1 if the gate was free and is now held by fd, 0 if another
 * holds it, -1. */
static int gate_try(int fd)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 1;
    return errno == EWOULDBLOCK ? 0 : -1;
}

static void gate_release(int fd)
{
    flock(fd, LOCK_UN);
}

/* ---- reading the records ---- */

/* Calls fn for each live holder of the lock file (dev, ino) in the record
 * file open on fd (which must own no slot).  Returns 0, or -1 with errno. */
typedef int (*slot_fn)(void *ud, const fl_slot *s);

/* Whether s is a claimed slot of the lock file dev/ino. */
static int slot_live(const fl_slot *s, dev_t dev, ino_t ino)
{
    return s->magic == FL_SLOT_MAGIC && s->state == 1 && s->dev == (uint64_t)dev && s->ino == (uint64_t)ino &&
           s->id_len <= ANYLOCK_ID_MAX && s->meta_len <= ANYLOCK_META_MAX;
}

static int scan_slots(int fd, dev_t dev, ino_t ino, slot_fn fn, void *ud)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return -1;
    if (sb.st_size <= FL_HEADER)
        return 0;
    long nslots = (long)((sb.st_size - FL_HEADER + FL_SLOT - 1) / FL_SLOT);
    if (nslots > FL_MAX_SLOTS)
        nslots = FL_MAX_SLOTS;
    size_t size = (size_t)nslots * FL_SLOT;
    char *buf = malloc(size);
    if (!buf)
        return -1;
    ssize_t got = pread(fd, buf, size, FL_HEADER);
    if (got < 0) {
        int e = errno;
        free(buf);
        errno = e;
        return -1;
    }
    int stop = 0;
    nslots = (long)(got / FL_SLOT); /* every claim writes a whole slot */
    for (long i = 0; i < nslots && !stop; i++) {
        fl_slot s;
        memcpy(&s, buf + i * FL_SLOT, sizeof s);
        if (!slot_live(&s, dev, ino))
            continue;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = slot_off(i), .l_len = FL_SLOT};
        if (fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
            continue; /* its holder is gone */
        /* Between the read and the test its holder may have left and
         * another taken the slot (a holder clears its slot before it lets
         * go of it): what counts is what the slot holds now that it is
         * known to be held. */
        if (pread(fd, &s, sizeof s, slot_off(i)) != (ssize_t)sizeof s || !slot_live(&s, dev, ino))
            continue;
        stop = fn(ud, &s);
    }
    free(buf);
    return 0;
}

typedef struct fl_found {
    const anylock_op *op;
    int own;
    int shared, exclusive, semaphore;
    unsigned permits; /* of a live semaphore holder */
} fl_found;

static int found_fn(void *ud, const fl_slot *s)
{
    fl_found *f = ud;
    if (s->id_len == f->op->id_len && !memcmp(s->id, f->op->id, s->id_len))
        f->own = 1;
    if (s->mode == ANYLOCK_SHARED)
        f->shared++;
    else if (s->mode == ANYLOCK_SEMAPHORE) {
        f->semaphore++;
        f->permits = s->permits;
    } else
        f->exclusive++;
    return 0;
}

/* Who holds the lock file sb (besides this handle, which holds nothing):
 * ALREADY_HELD for op->id, MODE_CONFLICT for holders of an incompatible
 * kind, else OK (with *f filled). */
static anylock_status holders_check(anylock_op *op, fl_lock *lk, const struct stat *sb, fl_found *f)
{
    memset(f, 0, sizeof *f);
    f->op = op;
    if (scan_slots(lk->rec_fd, sb->st_dev, sb->st_ino, found_fn, f) != 0)
        return file_error(op, lk->rec_path, "cannot read the holder records", errno);
    if (f->own)
        return anylock_op_error(op, ANYLOCK_ALREADY_HELD, "lock \"%.64s\" is already held by this owner id",
                                op->name);
    if (op->mode == ANYLOCK_SEMAPHORE && f->semaphore && f->permits != op->permits)
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is a semaphore of %u permits, not %u",
                                op->name, f->permits, op->permits);
    if ((op->mode == ANYLOCK_SEMAPHORE && (f->shared || f->exclusive)) ||
        (op->mode != ANYLOCK_SEMAPHORE && f->semaphore))
        return anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as %s", op->name,
                                f->semaphore ? "a semaphore" : "a lock, not a semaphore");
    return ANYLOCK_OK;
}

/* ---- waiting in the kernel ---- */

typedef struct fl_helper {
    fl_client *fc;
    pthread_cond_t *cond;
    int lock_fd, rec_fd;
    int how;  /* LOCK_EX or LOCK_SH on lock_fd, or 0 */
    int gate; /* take the gate first */
    int done, rc, err;
} fl_helper;

/* The helper keeps nothing on its stack whose address is taken: a
 * cancellation unwinds its frame without running its epilogue, which would
 * leave a sanitizer's stack redzones poisoned behind. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FL_NO_ASAN __attribute__((no_sanitize_address))
#endif
#endif
#if !defined(FL_NO_ASAN) && defined(__SANITIZE_ADDRESS__)
#define FL_NO_ASAN __attribute__((no_sanitize_address))
#endif
#ifndef FL_NO_ASAN
#define FL_NO_ASAN
#endif

FL_NO_ASAN static void *helper_main(void *arg)
{
    fl_helper *h = arg;
    /* Cancellation may strike only inside the blocking system calls below,
     * which touch nothing but the kernel's lock tables: the canceller then
     * finds out from the descriptors themselves what was granted. */
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    long rc = 0;
    if (h->gate)
        rc = syscall(SYS_flock, h->rec_fd, LOCK_EX);
    if (rc == 0 && h->how)
        rc = syscall(SYS_flock, h->lock_fd, h->how);
    int err = rc ? errno : 0;
    /* Deferred first: the cancellation signal may arrive late (a sanitizer
     * holds signals back, and the canceller's check and its signal are not
     * one step), and glibc's handler unwinds whenever the type is
     * asynchronous, whatever the state; a late one must not unwind this
     * thread while it holds the mutex below.  Disabled then, so that no
     * cancellation point acts either. */
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&h->fc->mu);
    h->done = 1;
    h->rc = (int)rc;
    h->err = err;
    pthread_cond_broadcast(h->cond);
    pthread_mutex_unlock(&h->fc->mu);
    return NULL;
}

enum { WAIT_GOT, WAIT_RETRY, WAIT_TIMEOUT };

/* Waits, until op->deadline, for the gate (if gate) and then how on fd, or
 * for an event on w.  WAIT_GOT: both are held; WAIT_RETRY: the file was
 * removed or replaced (nothing held); WAIT_TIMEOUT (nothing held); or an
 * error status (negative). */
static int wait_kernel(anylock_op *op, fl_client *fc, fl_lock *lk, fl_watch *w, int fd, int how, int gate,
                       anylock_status *err)
{
    fl_helper h = {.fc = fc, .cond = w->cond, .lock_fd = fd, .rec_fd = lk->rec_fd, .how = how, .gate = gate};
    pthread_t t;
    if (thread_start(&t, helper_main, &h) != 0) {
        *err = anylock_op_error(op, ANYLOCK_INTERNAL, "file %.200s: cannot start a thread to wait in", lk->path);
        return -1;
    }
    pthread_mutex_lock(&fc->mu);
    while (!h.done && !w->fired) {
        if (anylock_cond_wait_until(w->cond, &fc->mu, op->deadline) == ETIMEDOUT)
            break;
    }
    int done = h.done, fired = w->fired;
    pthread_mutex_unlock(&fc->mu);
    if (!done)
        pthread_cancel(t);
    pthread_join(t, NULL);
    /* Whatever the helper got or not, the descriptors tell: a lock already
     * held by this descriptor is granted again at once. */
    int have_gate = !gate || gate_try(lk->rec_fd) == 1;
    int have = have_gate && (!how || flock(fd, how | LOCK_NB) == 0);
    if (have)
        return WAIT_GOT;
    if (how)
        flock(fd, LOCK_UN);
    if (gate && have_gate)
        gate_release(lk->rec_fd);
    if (done && h.rc != 0 && h.err != EINTR) {
        *err = file_error(op, lk->path, "flock", h.err);
        return -1;
    }
    if (fired)
        return WAIT_RETRY;
    if (op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline)
        return WAIT_TIMEOUT;
    return WAIT_RETRY;
}

/* Waits for an event on w (a semaphore waiter) until wake; 1 if one came. */
static int wait_event(fl_client *fc, fl_watch *w, int64_t wake)
{
    pthread_mutex_lock(&fc->mu);
    while (!w->fired)
        if (anylock_cond_wait_until(w->cond, &fc->mu, wake) == ETIMEDOUT)
            break;
    int fired = w->fired;
    pthread_mutex_unlock(&fc->mu);
    return fired;
}

/* ---- acquire ---- */

/* Claims the first free slot and writes the holder's record: 0, or -1 with
 * errno. */
static int claim_slot(anylock_op *op, fl_lock *lk, uint64_t *tok, const struct stat *sb)
{
    long i = 0;
    for (; i < FL_MAX_SLOTS; i++) {
        if (ofd(lk->rec_fd, F_OFD_SETLK, F_WRLCK, slot_off(i), FL_SLOT) == 0)
            break;
        if (errno != EAGAIN && errno != EACCES)
            return -1;
    }
    if (i == FL_MAX_SLOTS) {
        errno = ENOSPC;
        return -1;
    }
    char buf[FL_SLOT];
    memset(buf, 0, sizeof buf);
    fl_slot s;
    memset(&s, 0, sizeof s);
    s.magic = FL_SLOT_MAGIC;
    s.state = 1;
    s.mode = (uint32_t)op->mode;
    s.permits = op->mode == ANYLOCK_SEMAPHORE ? op->permits : 0;
    s.pid = (int64_t)getpid();
    s.dev = (uint64_t)sb->st_dev;
    s.ino = (uint64_t)sb->st_ino;
    op->granted_at = anylock_now_ns();
    s.expires_at = op->expires_ms ? op->granted_at / 1000000 + op->expires_ms : 0;
    /* The token is advanced after the lock is had and its inode checked,
     * atomically in the shared mapping, so every acquisition in the store
     * gets its own number, greater than every earlier one. */
    s.token = __atomic_add_fetch(tok, 1, __ATOMIC_SEQ_CST);
    op->token = s.token;
    s.id_len = (uint32_t)op->id_len;
    memcpy(s.id, op->id, op->id_len);
    s.meta_len = (uint32_t)(op->meta_len > ANYLOCK_META_MAX ? ANYLOCK_META_MAX : op->meta_len);
    if (s.meta_len)
        memcpy(s.meta, op->meta, s.meta_len);
    memcpy(buf, &s, sizeof s);
    if (pwrite(lk->rec_fd, buf, sizeof buf, slot_off(i)) != (ssize_t)sizeof buf) {
        int e = errno;
        ofd(lk->rec_fd, F_OFD_SETLK, F_UNLCK, slot_off(i), FL_SLOT);
        errno = e ? e : EIO;
        return -1;
    }
    lk->slot = i;
    return 0;
}

/* Empties the handle's slot and lets it go; rings the doorbell for
 * semaphore waiters. */
static void slot_release(fl_lock *lk)
{
    if (lk->slot < 0)
        return;
    uint32_t zero = 0;
    (void)!pwrite(lk->rec_fd, &zero, sizeof zero, slot_off(lk->slot) + 4);
    ofd(lk->rec_fd, F_OFD_SETLK, F_UNLCK, slot_off(lk->slot), FL_SLOT);
    if (lk->mode == ANYLOCK_SEMAPHORE) {
        uint32_t ring = (uint32_t)getpid();
        (void)!pwrite(lk->rec_fd, &ring, sizeof ring, FL_OFF_DOORBELL);
    }
    lk->slot = -1;
}

static int drop_held(fl_client *fc, fl_lock *lk);

/* The store's token counter, opened and mapped once per client. */
static anylock_status tokens_ready(anylock_op *op, fl_client *fc, uint64_t **out)
{
    pthread_mutex_lock(&fc->mu);
    uint64_t *tok = fc->tok;
    pthread_mutex_unlock(&fc->mu);
    if (tok) {
        *out = tok;
        return ANYLOCK_OK;
    }
    char *path = join(fc->side, "/", FL_TOK_FILE);
    if (!path)
        return ANYLOCK_NOMEM;
    struct stat sb;
    anylock_status st = ANYLOCK_OK;
    int fd = open_file(fc, path, 2, O_RDWR | O_NOFOLLOW, &sb);
    char head[8] = {0};
    char zero = 0;
    if (fd < 0) {
        st = file_error(op, path, "cannot open the token counter", errno);
    } else if (pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head && memcmp(head, FL_TOK_MAGIC, 8) &&
               memcmp(head, "\0\0\0\0\0\0\0\0", 8)) {
        st = anylock_op_error(op, ANYLOCK_STORE, "file %.200s: not an anylock token counter", path);
    } else if ((sb.st_size < FL_TOK_SIZE && pwrite(fd, &zero, 1, FL_TOK_SIZE - 1) != 1) ||
               (memcmp(head, FL_TOK_MAGIC, 8) && pwrite(fd, FL_TOK_MAGIC, 8, 0) != 8)) {
        st = file_error(op, path, "cannot write the token counter", errno);
    } else {
        void *map = mmap(NULL, FL_TOK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            st = file_error(op, path, "cannot map the token counter", errno);
        } else {
            pthread_mutex_lock(&fc->mu);
            if (!fc->tok) {
                fc->tok_map = map;
                fc->tok = (uint64_t *)(void *)((char *)map + FL_TOK_OFF);
                fc->tok_fd = fd;
                fd = -1;
                map = NULL;
            }
            tok = fc->tok;
            pthread_mutex_unlock(&fc->mu);
            if (map)
                munmap(map, FL_TOK_SIZE);
        }
    }
    if (fd >= 0)
        close(fd);
    free(path);
    *out = tok;
    return st;
}

static anylock_status fl_acquire(anylock_op *op)
{
    fl_client *fc = op->state;
    fl_lock *lk = op->lock_state;
    if (op->mode == ANYLOCK_SEMAPHORE && op->permits > FL_MAX_SLOTS)
        return anylock_op_error(op, ANYLOCK_MODE_UNSUPPORTED, "file://: a semaphore has at most %d permits, not %u",
                                FL_MAX_SLOTS, op->permits);
    if (lk->held)
        drop_held(fc, lk); /* an acquisition the core has given up on */
    uint64_t *tok = NULL;
    anylock_status st = lock_paths(op, fc, lk);
    if (st == ANYLOCK_OK)
        st = rec_ready(op, fc, lk);
    if (st == ANYLOCK_OK)
        st = tokens_ready(op, fc, &tok);
    if (st != ANYLOCK_OK)
        return st;
    lk->slot = -1;

    pthread_cond_t cond; /* made when first needed: most acquires never wait */
    int cond_ready = 0;
    fl_watch w = {.kind = FW_WAITER, .fname = lk->fname, .wd = -1, .cond = &cond};
    int sem = op->mode == ANYLOCK_SEMAPHORE;
    int how = op->mode == ANYLOCK_EXCLUSIVE ? LOCK_EX : LOCK_SH;
    int settles = 0;
    int fd = -1, gate = 0;

    if (sem && op->deadline != 0) {
        /* A permit waiter sleeps on the record file's events: watch it before
         * the first try, so that no release is missed. */
        anylock_cond_init(&cond);
        cond_ready = 1;
        pthread_mutex_lock(&fc->mu);
        if (watcher_ready(fc) == 0 && (w.wd = recwatch_get(fc, lk->rec_path)) >= 0)
            watch_add(fc, &w);
        pthread_mutex_unlock(&fc->mu);
    }
    for (;;) {
        pthread_mutex_lock(&fc->mu);
        w.fired = 0;
        pthread_mutex_unlock(&fc->mu);
        struct stat sb;
        fd = open_file(fc, lk->path, 1, O_RDONLY, &sb);
        if (fd < 0) {
            st = file_error(op, lk->path, "cannot open the lock file", errno);
            break;
        }
        /* Shared and semaphore acquirers pass the gate, which a waiting
         * writer holds. */
        gate = 0;
        if (op->mode != ANYLOCK_EXCLUSIVE && (gate = gate_try(lk->rec_fd)) < 0) {
            st = file_error(op, lk->rec_path, "cannot lock the gate", errno);
            gate = 0;
            break;
        }
        int got = 0;
        if (op->mode == ANYLOCK_EXCLUSIVE || gate) {
            got = flock(fd, how | LOCK_NB) == 0;
            if (!got && errno != EWOULDBLOCK) {
                st = file_error(op, lk->path, "flock", errno);
                break;
            }
        }
        if (!got) {
            fl_found f;
            st = holders_check(op, lk, &sb, &f);
            if (st == ANYLOCK_OK && sem && gate)
                /* Gate passed, so an exclusive holder keeps LOCK_SH out: a
                 * lock, not a semaphore. */
                st = anylock_op_error(op, ANYLOCK_MODE_CONFLICT, "lock \"%.64s\" is held as a lock, not a semaphore",
                                      op->name);
            if (st == ANYLOCK_OK && op->deadline == 0)
                st = ANYLOCK_BUSY;
            if (st != ANYLOCK_OK)
                break;
            /* Sleep in the kernel, watching for the file's removal. */
            if (!cond_ready) {
                anylock_cond_init(&cond);
                cond_ready = 1;
            }
            pthread_mutex_lock(&fc->mu);
            if (watcher_ready(fc) == 0)
                watch_add(fc, &w);
            pthread_mutex_unlock(&fc->mu);
            if (!same_file(lk->path, &sb)) {
                if (gate)
                    gate_release(lk->rec_fd);
                close(fd);
                fd = -1;
                continue;
            }
            int r = wait_kernel(op, fc, lk, &w, fd, sem ? 0 : how, !gate, &st);
            if (r < 0)
                break;
            if (r == WAIT_TIMEOUT) {
                st = ANYLOCK_TIMEOUT;
                break;
            }
            if (r == WAIT_RETRY) {
                if (gate)
                    gate_release(lk->rec_fd);
                close(fd);
                fd = -1;
                continue;
            }
            gate = op->mode != ANYLOCK_EXCLUSIVE;
            if (op->mode == ANYLOCK_EXCLUSIVE)
                gate_release(lk->rec_fd); /* held while waiting only */
            if (sem) {
                /* Through the gate: now the lock file itself. */
                if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
                    st = errno == EWOULDBLOCK ? ANYLOCK_OK : file_error(op, lk->path, "flock", errno);
                    if (st == ANYLOCK_OK && (st = holders_check(op, lk, &sb, &f)) == ANYLOCK_OK)
                        st = anylock_op_error(op, ANYLOCK_MODE_CONFLICT,
                                              "lock \"%.64s\" is held as a lock, not a semaphore", op->name);
                    break;
                }
            }
        }
        /* Held (and the gate, for shared and semaphore).  Watched for the
         * file's removal from now on, and then: is it still the file the
         * path names?  (In that order, so that no removal goes unseen.) */
        lk->holder = (fl_watch){.kind = FW_HOLDER, .fname = lk->fname, .wd = -1, .lock = op->lock,
                                .path = lk->path, .dev = sb.st_dev, .ino = sb.st_ino};
        pthread_mutex_lock(&fc->mu);
        if (watcher_ready(fc) == 0)
            watch_add(fc, &lk->holder);
        pthread_mutex_unlock(&fc->mu);
        if (!same_file(lk->path, &sb)) {
            pthread_mutex_lock(&fc->mu);
            watch_del(fc, &lk->holder);
            pthread_mutex_unlock(&fc->mu);
            flock(fd, LOCK_UN);
            if (gate)
                gate_release(lk->rec_fd);
            close(fd);
            fd = -1;
            continue;
        }
        fl_found f = {0};
        if (op->mode != ANYLOCK_EXCLUSIVE) {
            st = holders_check(op, lk, &sb, &f);
            if (st != ANYLOCK_OK) {
                flock(fd, LOCK_UN);
                break;
            }
        }
        /* A semaphore's permits are its live holders of this file, counted
         * under the gate that every semaphore acquirer holds while it counts
         * and claims (holders of a file a reset removed do not count). */
        if (!sem || (unsigned)f.semaphore < op->permits) {
            if (claim_slot(op, lk, tok, &sb) != 0) {
                st = file_error(op, lk->rec_path, "cannot write the holder record", errno);
                flock(fd, LOCK_UN);
                break;
            }
        } else {
            /* Every permit is taken. */
            pthread_mutex_lock(&fc->mu);
            watch_del(fc, &lk->holder);
            pthread_mutex_unlock(&fc->mu);
            flock(fd, LOCK_UN);
            gate_release(lk->rec_fd);
            gate = 0;
            close(fd);
            fd = -1;
            if (op->deadline == 0) {
                st = ANYLOCK_BUSY;
                break;
            }
            int64_t wake = op->deadline;
            int settling = 0;
            if (settles > 0 && settles <= FL_SETTLES) {
                int64_t at = anylock_now_ns() + fl_settle_ms[settles - 1] * 1000000;
                if (at < wake) {
                    wake = at;
                    settling = 1;
                }
            }
            if (w.wd < 0 && !w.linked) {
                /* No inotify: the settle schedule is all there is. */
                int64_t at = anylock_now_ns() + fl_settle_ms[FL_SETTLES - 1] * 1000000;
                if (at < wake) {
                    wake = at;
                    settling = 1;
                }
            }
            if (wait_event(fc, &w, wake))
                settles = 1; /* an event: look now, and again soon if it was too early */
            else if (settling)
                settles++;
            else if (op->deadline != ANYLOCK_DEADLINE_NEVER && anylock_now_ns() >= op->deadline) {
                st = ANYLOCK_TIMEOUT;
                break;
            }
            continue;
        }
        if (gate)
            gate_release(lk->rec_fd);
        gate = 0;
        lk->fd = fd;
        fd = -1;
        lk->held = 1;
        lk->dev = sb.st_dev;
        lk->ino = sb.st_ino;
        lk->mode = op->mode;
        st = ANYLOCK_OK;
        break;
    }
    if (gate)
        gate_release(lk->rec_fd);
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&fc->mu);
    watch_del(fc, &w);
    if (w.wd >= 0)
        recwatch_put(fc, w.wd);
    if (st != ANYLOCK_OK)
        watch_del(fc, &lk->holder);
    pthread_mutex_unlock(&fc->mu);
    if (cond_ready)
        pthread_cond_destroy(&cond);
    watch_warn(op, fc);
    return st;
}

/* ---- release, extend ---- */

/* Lets go of what the handle holds (its watch, its slot, its flock) and
 * says whether the path still named the locked file. */
static int drop_held(fl_client *fc, fl_lock *lk)
{
    pthread_mutex_lock(&fc->mu);
    watch_del(fc, &lk->holder); /* no loss is reported after this */
    int lost = lk->holder.lost;
    pthread_mutex_unlock(&fc->mu);
    /* Removed (the watcher saw it, or the inode has no name left): this
     * lock was reset.  A descriptor's fstat needs no path lookup. */
    struct stat sb;
    int ours = !lost && fstat(lk->fd, &sb) == 0 && sb.st_nlink > 0;
    slot_release(lk);
    /* LOCK_UN acts on the open file description, which a forked child may
     * share: the lock is free now, whoever else has the descriptor. */
    flock(lk->fd, LOCK_UN);
    close(lk->fd);
    lk->fd = -1;
    lk->held = 0;
    return ours;
}

static anylock_status fl_release(anylock_op *op)
{
    fl_lock *lk = op->lock_state;
    if (!lk->held)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", op->name);
    if (!drop_held(op->state, lk))
        return anylock_op_error(op, ANYLOCK_NOT_HELD,
                                "lock \"%.64s\": file %.200s was removed or replaced while held (reset?)", op->name,
                                lk->path);
    return ANYLOCK_OK;
}

static anylock_status fl_extend(anylock_op *op)
{
    fl_lock *lk = op->lock_state;
    if (!lk->held)
        return anylock_op_error(op, ANYLOCK_NOT_HELD, "lock \"%.64s\" is not held by this handle", op->name);
    struct stat sb = {.st_dev = lk->dev, .st_ino = lk->ino};
    if (!same_file(lk->path, &sb)) {
        /* The core takes NOT_HELD as the end of this acquisition (it does
         * not release it): let go here. */
        drop_held(op->state, lk);
        return anylock_op_error(op, ANYLOCK_NOT_HELD,
                                "lock \"%.64s\": file %.200s was removed or replaced while held (reset?)", op->name,
                                lk->path);
    }
    op->granted_at = anylock_now_ns();
    int64_t at = op->granted_at / 1000000 + op->expires_ms;
    if (lk->slot >= 0 &&
        pwrite(lk->rec_fd, &at, sizeof at, slot_off(lk->slot) + offsetof(fl_slot, expires_at)) != (ssize_t)sizeof at)
        return file_error(op, lk->rec_path, "cannot write the holder record", errno);
    return ANYLOCK_OK;
}

static void fl_forget(anylock_op *op)
{
    fl_lock *lk = op->lock_state;
    if (lk->held)
        drop_held(op->state, lk);
    rec_close(lk);
    free(lk->path);
    free(lk->rec_path);
    lk->path = lk->rec_path = NULL;
}

/* ---- inspect, list, reset ---- */

/* Whether someone holds the lock file open on fd: 0 free, 1 exclusively,
 * 2 shared, -1 with errno.  The probe takes the lock for a moment on a
 * descriptor of its own. */
static int probe(int fd)
{
    if (flock(fd, LOCK_SH | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? 1 : -1;
    flock(fd, LOCK_UN);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? 2 : -1;
    flock(fd, LOCK_UN);
    return 0;
}

typedef struct fl_emit {
    anylock_emitter *em;
    const char *name;
    size_t name_len;
    int64_t now;
    int n;
    int stop;
} fl_emit;

static int emit_fn(void *ud, const fl_slot *s)
{
    fl_emit *e = ud;
    int64_t left = s->expires_at ? s->expires_at - e->now : -1;
    anylock_record r = {
        .name = e->name,
        .name_len = e->name_len,
        .id = s->id,
        .id_len = s->id_len,
        .expires_in_ms = s->expires_at ? (left > 0 ? left : 0) : -1,
        .mode = (anylock_mode)s->mode,
        .permits = s->permits,
        .meta = s->meta_len ? s->meta : NULL,
        .meta_len = s->meta_len,
    };
    e->n++;
    e->stop = anylock_emit(e->em, &r);
    return e->stop;
}

/* Emits the holders of the lock in file fname of DIR, called name.
 * Returns 1 to stop. */
static int emit_file(anylock_op *op, fl_client *fc, const char *fname, const char *name, size_t name_len,
                     anylock_emitter *em, anylock_status *st)
{
    char *path = join(fc->dir, "/", fname), *rec = join(fc->side, "/", fname);
    int stop = 0;
    if (!path || !rec) {
        *st = ANYLOCK_NOMEM;
        goto done;
    }
    struct stat sb;
    int fd = open_file(fc, path, 0, O_RDONLY, &sb);
    if (fd < 0) {
        if (errno != ENOENT)
            *st = file_error(op, path, "cannot open the lock file", errno);
        goto done;
    }
    fl_emit e = {.em = em, .name = name, .name_len = name_len, .now = now_ms()};
    struct stat rsb;
    int rfd = open_file(fc, rec, 0, O_RDONLY | O_NOFOLLOW, &rsb);
    if (rfd >= 0) {
        if (scan_slots(rfd, sb.st_dev, sb.st_ino, emit_fn, &e) != 0)
            *st = file_error(op, rec, "cannot read the holder records", errno);
        close(rfd);
    } else if (errno != ENOENT) {
        *st = file_error(op, rec, "cannot open the holder record file", errno);
    }
    if (e.n == 0 && *st == ANYLOCK_OK) {
        /* No anylock holder: flock(1) or another program may hold it. */
        int p = probe(fd);
        if (p < 0) {
            *st = file_error(op, path, "flock", errno);
        } else if (p > 0) {
            anylock_record r = {.name = name, .name_len = name_len, .id = "", .id_len = 0, .expires_in_ms = -1,
                                .mode = p == 1 ? ANYLOCK_EXCLUSIVE : ANYLOCK_SHARED};
            e.stop = anylock_emit(em, &r);
        }
    }
    stop = e.stop;
    close(fd);
done:
    free(path);
    free(rec);
    return stop;
}

/* Reads the key of a hashed file name from its record file's header; its
 * length or -1. */
static long hashed_key(fl_client *fc, const char *fname, char *out)
{
    char *rec = join(fc->side, "/", fname);
    if (!rec)
        return -1;
    struct stat sb;
    int fd = open_file(fc, rec, 0, O_RDONLY | O_NOFOLLOW, &sb);
    free(rec);
    if (fd < 0)
        return -1;
    char head[FL_OFF_KEY];
    uint32_t kl = 0;
    long n = -1;
    if (pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head && !memcmp(head, FL_MAGIC, 8)) {
        memcpy(&kl, head + FL_OFF_KEYLEN, 4);
        if (kl >= 1 && kl <= ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX && pread(fd, out, kl, FL_OFF_KEY) == (ssize_t)kl) {
            char again[NAME_MAX + 1];
            map_name(fc, out, kl, again);
            if (!strcmp(again, fname) && valid_text((const unsigned char *)out, kl))
                n = kl;
        }
    }
    close(fd);
    return n;
}

/* Calls fn for every lock file in DIR under the client's prefix. */
typedef int (*file_fn)(anylock_op *op, fl_client *fc, const char *fname, const char *name, size_t name_len,
                       void *ud, anylock_status *st);

static anylock_status each_file(anylock_op *op, fl_client *fc, file_fn fn, void *ud)
{
    DIR *d = opendir(fc->dir);
    if (!d)
        return anylock_op_error(op, errno_status(errno, ANYLOCK_IO), "file %.200s: cannot read the directory: %s",
                                fc->dir, strerror(errno));
    const char *pfx = fc->strip ? "" : op->prefix;
    size_t plen = fc->strip ? 0 : op->prefix_len;
    char *key = malloc(ANYLOCK_PREFIX_MAX + ANYLOCK_NAME_MAX + 1);
    anylock_status st = key ? ANYLOCK_OK : ANYLOCK_NOMEM;
    struct dirent *de;
    while (st == ANYLOCK_OK && (de = readdir(d))) {
        if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
            continue;
        long n = unmap_name(fc, de->d_name, key);
        if (n == -2)
            n = hashed_key(fc, de->d_name, key);
        if (n < 0 || (size_t)n <= plen || memcmp(key, pfx, plen) || (size_t)n - plen > ANYLOCK_NAME_MAX)
            continue;
        if (fn(op, fc, de->d_name, key + plen, (size_t)n - plen, ud, &st))
            break;
    }
    free(key);
    closedir(d);
    return st;
}

static int list_fn(anylock_op *op, fl_client *fc, const char *fname, const char *name, size_t name_len, void *ud,
                   anylock_status *st)
{
    return emit_file(op, fc, fname, name, name_len, ud, st);
}

static anylock_status fl_enumerate(anylock_op *op, anylock_emitter *em)
{
    fl_client *fc = op->state;
    anylock_status st = ANYLOCK_OK;
    if (!op->name)
        return each_file(op, fc, list_fn, em);
    size_t n;
    const char *k = eff_key(fc, op, &n);
    char fname[NAME_MAX + 1];
    map_name(fc, k, n, fname);
    emit_file(op, fc, fname, op->name, op->name_len, em, &st);
    return st;
}

/* Frees the lock in file fname if someone holds it, by removing the file:
 * 1 if it was held, 0 if not, -1 with *st set. */
static int reset_file(anylock_op *op, fl_client *fc, const char *fname, anylock_status *st)
{
    char *path = join(fc->dir, "/", fname);
    if (!path) {
        *st = ANYLOCK_NOMEM;
        return -1;
    }
    struct stat sb;
    int held = 0;
    int fd = open_file(fc, path, 0, O_RDONLY, &sb);
    if (fd < 0) {
        if (errno != ENOENT) {
            *st = file_error(op, path, "cannot open the lock file", errno);
            held = -1;
        }
    } else {
        int p = probe(fd);
        close(fd);
        if (p < 0) {
            *st = file_error(op, path, "flock", errno);
            held = -1;
        } else if (p > 0) {
            /* Held: a free file is left alone, since removing one a flock(1)
             * user has just opened would let two of them in. */
            held = 1;
            if (unlink(path) != 0 && errno != ENOENT) {
                *st = file_error(op, path, "cannot remove the lock file", errno);
                held = -1;
            }
        }
    }
    free(path);
    return held;
}

static anylock_status fl_reset(anylock_op *op)
{
    fl_client *fc = op->state;
    size_t n;
    const char *k = eff_key(fc, op, &n);
    char fname[NAME_MAX + 1];
    map_name(fc, k, n, fname);
    anylock_status st = ANYLOCK_OK;
    reset_file(op, fc, fname, &st);
    return st;
}

static int reset_fn(anylock_op *op, fl_client *fc, const char *fname, const char *name, size_t name_len, void *ud,
                    anylock_status *st)
{
    (void)name;
    (void)name_len;
    int r = reset_file(op, fc, fname, st);
    if (r > 0)
        (*(size_t *)ud)++;
    return r < 0;
}

static anylock_status fl_reset_all(anylock_op *op, size_t *count)
{
    *count = 0;
    return each_file(op, op->state, reset_fn, count);
}

const anylock_backend anylock__file_backend = {
    .version = ANYLOCK_BACKEND_VERSION,
    .name = "file",
    .state_size = sizeof(fl_client),
    .flags = ANYLOCK_BACKEND_SESSION | ANYLOCK_BACKEND_SHARED | ANYLOCK_BACKEND_SEMAPHORE | ANYLOCK_BACKEND_TOKEN |
             ANYLOCK_BACKEND_LIST,
    .expiry_resolution_ms = 1,
    .params = fl_params,
    .open = fl_open,
    .close = fl_close,
    .acquire = fl_acquire,
    .release = fl_release,
    .extend = fl_extend,
    .reset = fl_reset,
    .reset_all = fl_reset_all,
    .lock_size = sizeof(fl_lock),
    .enumerate = fl_enumerate,
    .forget = fl_forget,
};

#endif /* __linux__ */
