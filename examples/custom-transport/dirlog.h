/*
 * dirlog.h — the dirlog transport: an example plugin built outside the
 * eventbus tree against the installed <eventbus/transport.h> alone. Topics
 * are append-only files in a directory that processes on one machine share,
 * with no server. Its files:
 *   record.c   the record format and file names
 *   dirlog.c   the descriptor, config keys, a bus: publish, delivery
 *              callbacks, health, stats
 *   member.c   a subscription: its reader thread, the group's fail-over
 *              lock, the lane of unacknowledged records, commits
 *
 * Files under `dirlog.dir` (topic and group names escaped, dl_file_name):
 *   <topic>/log           the topic's records, appended, never rewritten
 *   <topic>/<group>.pos   the group's committed position: the byte offset in
 *                         `log` where its first unacknowledged record starts,
 *                         in decimal; replaced atomically (written to
 *                         <group>.pos.tmp, then renamed over it)
 *   <topic>/<group>.lock  locked (flock) by the group's active member
 * Nothing is ever deleted: remove a topic's directory when no process uses it.
 *
 * A record is one frame, written with one write() (integers little-endian):
 *   u32 magic 0x31524c44 ("DLR1")
 *   u32 body length
 *   u32 FNV-1a hash of the body
 *   body:
 *     i64 timestamp, ms since the epoch
 *     u32 key length; 0xffffffff: no key (0 is an empty key)
 *     u32 header count
 *     u32 payload length
 *     the key
 *     each header in order: u32 name length, u32 value length, the name,
 *                           a NUL, the value (binary; duplicates kept)
 *     the payload (binary)
 * A message's id is the byte offset of its frame in `log` ("4711").
 *
 * Locking between processes:
 *  - A publisher holds flock(LOCK_EX) on `log` while it appends one frame.
 *    Readers take no lock, except when they meet a frame that is cut short
 *    or damaged: they take flock(LOCK_SH), which waits for a writer in the
 *    middle of that frame; if the frame is still bad then, its writer died
 *    while writing, and readers skip to the next sound frame.
 *  - Groups fail over: the member that holds flock(LOCK_EX) on
 *    <group>.lock is active, reads from the committed position and alone
 *    writes <group>.pos. The other members stand by, trying the lock every
 *    `dirlog.poll.ms`. The active member leaves by committing then
 *    unlocking; if it dies the kernel drops its lock. Either way a standby
 *    takes over from the committed position: what the old member had not
 *    acknowledged is delivered again.
 *  - Anonymous members (no group) read the log themselves from their start
 *    position; they lock nothing and commit nothing.
 * Readers notice appends by polling every `dirlog.poll.ms`.
 *
 * Inside a process: flock does not exclude threads that share an open file,
 * so appends to a topic also take its mutex; each member has one mutex for
 * its lane and flags, taken by ack(), release() and resume() only briefly.
 * Every file is opened O_CLOEXEC; a process that forks with a bus open
 * shares its locks with the child until one of them closes them.
 */
#ifndef DIRLOG_H
#define DIRLOG_H

#include <eventbus/transport.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DL_VERSION "0.1.0"

/* ---------------------------------------------------------------- record.c */

#define DL_FRAME_MAGIC 0x31524c44u
#define DL_NO_KEY 0xffffffffu
enum { DL_FRAME_HEAD = 12 };       /* magic, body length, hash */
#define DL_BODY_MAX 0x7fffffffu    /* above message.max.bytes' largest */

typedef enum dl_frame_state {
    DL_FRAME_OK,    /* a whole, sound frame */
    DL_FRAME_SHORT, /* the bytes end inside it (being written, or torn) */
    DL_FRAME_BAD    /* not a frame: damaged, or not a frame's start */
} dl_frame_state;

/** Encodes `m`, stamped `timestamp_ms`, as one frame in a new buffer.
 *  @returns 0, EB_ERR_TOO_LARGE (body above DL_BODY_MAX) or EB_ERR_NOMEM. */
int dl_frame_encode(const eb_outgoing *m, int64_t timestamp_ms, uint8_t **out,
                    size_t *out_len);

/** Checks the frame at the start of buf[0..avail). *frame_len gets its whole
 *  length whenever its head is there (also for DL_FRAME_SHORT). */
dl_frame_state dl_frame_check(const uint8_t *buf, size_t avail, size_t *frame_len);

/** The header count of a checked frame. */
size_t dl_frame_header_count(const uint8_t *frame);

/** Points `msg`'s key, payload, headers and timestamp into a checked frame;
 *  `headers` has room for dl_frame_header_count() entries. */
void dl_frame_decode(const uint8_t *frame, eb_msg *msg, eb_header *headers);

/** Is there a sound frame at `pos` of the file `fd`, `end` bytes long? */
bool dl_frame_sound_at(int fd, uint64_t pos, uint64_t end);
/** Where the first sound frame at or after `from` starts in the file `fd`
 *  (which is `end` bytes long); `end` when there is none. */
uint64_t dl_frame_find(int fd, uint64_t from, uint64_t end);

/** Room for an escaped name and the longest suffix added to it. */
enum { DL_FILE_NAME_SIZE = 224 };
/** A topic or group name as a file name: [A-Za-z0-9_-] and non-leading dots
 *  kept, other bytes as %XX; a name that would grow past 180 bytes keeps
 *  its first 160 and ends in "~" and its 64-bit FNV-1a hash. */
void dl_file_name(const char *name, char out[DL_FILE_NAME_SIZE]);

/* ---------------------------------------------------------------- dirlog.c */

typedef struct dl_member dl_member;
typedef struct dl_topic dl_topic;
typedef struct dl_report dl_report;

/** One bus's view of the transport. */
typedef struct dl_bus {
    const eb_host *host;
    eb_host_bus *hb;
    char *dir;
    int dir_fd;
    int poll_ms;

    pthread_mutex_t topics_mu;   /* the topics this bus appended to */
    dl_topic *topics;

    pthread_mutex_t reports_mu;  /* delivery callbacks to run */
    pthread_cond_t reports_cv;   /* work for the callback thread */
    pthread_cond_t idle_cv;      /* flush() waits here */
    pthread_t reports_thread;
    dl_report *reports, **reports_tail;
    size_t reports_running;
    bool reports_stopping;

    pthread_mutex_t members_mu;  /* subscriptions, for stats */
    dl_member *members;

    atomic_ullong published, io_errors;
    atomic_bool failing;         /* the last file operation failed */
    pthread_mutex_t error_mu;    /* the last file error, for health */
    char error[640];             /* "" while the last operation worked */
} dl_bus;

/** Opens (creating it) the directory of `topic`. @returns an fd, or -1
 *  with errno set. */
int dl_topic_dir_open(dl_bus *b, const char *topic);
/** A file operation failed (`what` says which, then strerror(err) unless
 *  err is 0) or, with what == NULL, worked again: kept for health, logged
 *  when the error changes. */
void dl_note_io(dl_bus *b, const char *what, int err);

/* ---------------------------------------------------------------- member.c */

int dl_member_start(dl_bus *b, eb_host_sub *hs, const eb_sub_params *p,
                    dl_member **out, char *errstr, size_t errstr_size);
/** Leaves: revokes the lane (handlers get until `deadline_ns`, 0: the
 *  revoke timeout), commits, unlocks the group, joins the thread. */
int dl_member_stop(dl_member *m, int64_t deadline_ns);
void dl_member_free(dl_member *m);
void dl_member_ack(dl_member *m, eb_msg *const *msgs, size_t n);
void dl_member_release(dl_member *m, eb_msg *const *msgs, size_t n);
void dl_member_resume(dl_member *m);

/** What stats show of a member. */
typedef struct dl_member_info {
    const char *topic, *group; /* group NULL: anonymous */
    bool active;               /* false: standing by */
    uint64_t read;             /* where the next record is read */
    uint64_t committed;        /* where the unacknowledged records start */
    uint64_t in_flight;        /* records read and not acknowledged */
    uint64_t log_bytes;
} dl_member_info;
void dl_member_info_get(dl_member *m, dl_member_info *out);
/** The member's link in its bus's list (members_mu). */
dl_member **dl_member_next(dl_member *m);

#endif
