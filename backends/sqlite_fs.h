/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * sqlite_fs.h: which filesystems the sqlite:// backend accepts a database
 * on.  SQLite's locking (POSIX advisory locks, and a shared-memory index
 * mapped by every process for WAL) and anylock's monotonic expiry clock are
 * only sound when every process runs on one host against a local
 * filesystem; over NFS, SMB and the like two hosts could both believe they
 * hold a lock.  The decision is a pure function of statfs(2)'s f_type, kept
 * in this header so that tests/test_sqlite.c checks the whole table.
 */
#ifndef ANYLOCK_SQLITE_FS_H
#define ANYLOCK_SQLITE_FS_H

typedef enum sq_fs_verdict {
    SQ_FS_LOCAL = 0, /* a local filesystem: fine */
    SQ_FS_WARN = 1,  /* may be remote (FUSE: sshfs, or a local overlay): used, with a warning */
    SQ_FS_REFUSE = 2 /* a network or cluster filesystem: refused (ANYLOCK_STORE_UNSAFE) */
} sq_fs_verdict;

/* The filesystems' magic numbers (linux/magic.h and the filesystems'
 * sources), so that the table does not depend on kernel headers. */
#define SQ_FS_NFS 0x6969L
#define SQ_FS_SMB 0x517BL
#define SQ_FS_CIFS 0xFF534D42L
#define SQ_FS_SMB2 0xFE534D42L
#define SQ_FS_AFS 0x5346414FL
#define SQ_FS_KAFS 0x6B414653L
#define SQ_FS_CODA 0x73757245L
#define SQ_FS_NCP 0x564CL
#define SQ_FS_9P 0x01021997L
#define SQ_FS_CEPH 0x00C36400L
#define SQ_FS_LUSTRE 0x0BD00BD0L
#define SQ_FS_GPFS 0x47504653L
#define SQ_FS_FUSE 0x65735546L

/* The verdict for a filesystem type, and its name for messages. */
static inline sq_fs_verdict sq_fs_judge(long f_type, const char **name)
{
    static const struct {
        long type;
        const char *name;
        sq_fs_verdict verdict;
    } table[] = {
        {SQ_FS_NFS, "NFS", SQ_FS_REFUSE},       {SQ_FS_SMB, "SMB", SQ_FS_REFUSE},
        {SQ_FS_CIFS, "CIFS", SQ_FS_REFUSE},     {SQ_FS_SMB2, "SMB2", SQ_FS_REFUSE},
        {SQ_FS_AFS, "AFS", SQ_FS_REFUSE},       {SQ_FS_KAFS, "AFS", SQ_FS_REFUSE},
        {SQ_FS_CODA, "Coda", SQ_FS_REFUSE},     {SQ_FS_NCP, "NCP", SQ_FS_REFUSE},
        {SQ_FS_9P, "9P", SQ_FS_REFUSE},         {SQ_FS_CEPH, "CephFS", SQ_FS_REFUSE},
        {SQ_FS_LUSTRE, "Lustre", SQ_FS_REFUSE}, {SQ_FS_GPFS, "GPFS", SQ_FS_REFUSE},
        {SQ_FS_FUSE, "FUSE", SQ_FS_WARN},
    };
    /* f_type is a signed long of a 32-bit magic: compare the low 32 bits. */
    unsigned long t = (unsigned long)f_type & 0xFFFFFFFFUL;
    for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (t == ((unsigned long)table[i].type & 0xFFFFFFFFUL)) {
            if (name)
                *name = table[i].name;
            return table[i].verdict;
        }
    }
    if (name)
        *name = "local";
    return SQ_FS_LOCAL;
}

#endif
