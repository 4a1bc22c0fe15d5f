/*
 * anylock_faults.h: faults on purpose, for testing what an application does
 * when locking goes wrong.
 *
 * faults://?store=URL&PARAM=VALUE... wraps any store (memory://faults when
 * store= is left out) and misbehaves as its parameters say, the same way on
 * every run.  Everything else (exclusion, expiries, modes, tokens) is the
 * wrapped store's.  docs/testing.md shows how an application's tests use it.
 *
 *   fail_acquire=N[:STATUS]   the next N acquires fail with STATUS (a status
 *   fail_release=N[:STATUS]   name such as IO, CONNECT, TIMEOUT, BUSY,
 *   fail_extend=N[:STATUS]    OUTCOME_UNKNOWN, STORE; default IO), sending
 *                             nothing to the store
 *   acquire_delay=SECS        every acquire first waits this long (no
 *                             longer than its own deadline: then TIMEOUT)
 *   lose_after=SECS           a lock is lost this long after it was taken:
 *                             the store lets it go and its holder is told at
 *                             once (the lost-lock callback, with
 *                             ANYLOCK_NOT_HELD)
 *   lose_after_renewals=N     the Nth extend of a lock (renewal or
 *                             anylock_extend) finds it gone
 *   renewal_pause=SECS        each renewal by the library's renewal threads
 *                             first stalls this long, as a paused process
 *                             or a stalled store would
 *   chaos=P                   each acquire, release and extend fails with IO
 *                             with probability P (0 to 1) ...
 *   seed=N                    ... drawn from a generator seeded with N
 *                             (default 1): the same seed, the same faults
 *
 * A parameter set to 0 turns its fault off.
 */
#ifndef ANYLOCK_FAULTS_H
#define ANYLOCK_FAULTS_H

#include "anylock.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Changes a faults:// client's faults while it runs, with the URL's syntax
 * ("fail_acquire=2:CONNECT&lose_after=0.5"); the others stay as they were.
 * ANYLOCK_INVALID for a client that is not faults://; URL_UNKNOWN_PARAM or
 * URL_BAD_PARAM for a bad parameter (then nothing changes). */
ANYLOCK_EXPORT anylock_status anylock_faults_set(anylock_client *client, const char *params);

/* Loses a lock held through a faults:// client now: the store lets it go
 * and the lock's holder is told (its lost-lock callback runs).
 * ANYLOCK_NOT_HELD if the handle holds nothing; ANYLOCK_INVALID for a lock
 * that is not on a faults:// client. */
ANYLOCK_EXPORT anylock_status anylock_faults_lose(anylock_lock *lock);

#ifdef __cplusplus
}
#endif
#endif /* ANYLOCK_FAULTS_H */
