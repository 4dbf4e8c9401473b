/* px: the replication wire protocol between two mirrord nodes.
 * See blkmirror-protocol(7) for the message table, the state diagram and
 * the version history.
 *
 * Every message is a 24-byte header followed by `len` payload bytes.  All
 * integers are big endian.  Each message type has a maximum payload
 * length; a header that names an unknown type, a length above that limit,
 * a bad magic or a non-zero reserved field is a protocol error and ends
 * the connection.  Nothing but HELLO, CHALLENGE, AUTH and AUTH_OK is
 * accepted before both sides have proven knowledge of the shared secret.
 *
 * Links: one "meta" link per peer pair (handshake, state, bitmaps, pings,
 * resync control) and one "data" link per queue (writes, acks, flushes,
 * resync data).  The node whose name sorts first connects; the other
 * listens.  Every link authenticates on its own. */
#ifndef BLKMIRROR_PX_H
#define BLKMIRROR_PX_H

#include <stddef.h>
#include <stdint.h>

#define PX_MAGIC    0x424d5831u   /* "BMX1" */
#define PX_VERSION  3             /* highest version this build speaks */
/* From version 3: READ_REQ / READ_DATA (a diskless primary reads from the
 * peer's disk); never sent on a session of an older version. */
#define PX_VERSION_READ_REQ 3
#define PX_HDR_SIZE 24
#define PX_NAME_MAX 64
#define PX_CHALLENGE_LEN 32
#define PX_MAC_LEN  32            /* HMAC-SHA256 */
#define PX_MAX_DATA (32u << 20)   /* hard ceiling on any data payload */

/* Feature bits negotiated in HELLO (the intersection is used). */
#define PX_FEAT_CSUM_RESYNC (1u << 0)  /* checksum-based resync */
#define PX_FEAT_VERIFY      (1u << 1)  /* online verify */

enum px_type {
	/* handshake, any link, before and during authentication */
	PX_HELLO = 1,        /* struct px_hello */
	PX_CHALLENGE = 2,    /* PX_CHALLENGE_LEN random bytes */
	PX_AUTH = 3,         /* PX_MAC_LEN bytes: HMAC over the peer's challenge */
	PX_AUTH_OK = 4,      /* empty */
	/* meta link */
	PX_STATE = 16,       /* struct px_state */
	PX_BITMAP = 17,      /* struct px_bitmap + bitmap bytes */
	PX_BITMAP_DONE = 18, /* empty: the sender's whole bitmap was sent */
	PX_PING = 19,        /* empty; answered by PING_ACK */
	PX_PING_ACK = 20,    /* empty */
	PX_SYNC_DONE = 21,   /* struct px_state: resync finished, new state */
	PX_DISCONNECT = 22,  /* empty: the sender is closing on purpose */
	/* data links */
	PX_WRITE = 32,       /* struct px_io + data; id names it in acks */
	PX_WRITE_ACK = 33,   /* struct px_ack: written on the peer's disk */
	PX_RECV_ACK = 34,    /* empty (id): received (semi-sync) */
	PX_FLUSH = 35,       /* empty (id): make every earlier write on this link durable */
	PX_FLUSH_ACK = 36,   /* struct px_ack */
	PX_RS_DATA = 37,     /* struct px_io + data: resync write, source -> target */
	PX_RS_ACK = 38,      /* struct px_ack */
	PX_TRIM = 39,        /* struct px_io, no data: trim/zero a range */
	PX_CSUM_REQ = 40,    /* struct px_io: target asks for a hash (verify, csum resync) */
	PX_CSUM = 41,        /* struct px_csum */
	PX_OOS = 42,         /* struct px_io, no data: mark a range out of sync */
	PX_READ_REQ = 43,    /* struct px_io: a diskless primary reads from the peer's disk */
	PX_READ_DATA = 44,   /* struct px_ack + the px_io's length of data when status is 0 */
	PX_TYPE_MAX
};

/* The common header.  24 bytes on the wire. */
struct px_hdr {
	uint32_t magic;      /* PX_MAGIC */
	uint16_t type;       /* enum px_type */
	uint16_t flags;      /* per type; PX_F_* */
	uint32_t len;        /* payload bytes that follow */
	uint32_t reserved;   /* zero */
	uint64_t id;         /* request id, echoed by its ack; 0 when unused */
} __attribute__((packed));

#define PX_F_FUA     (1u << 0)  /* PX_WRITE, PX_TRIM, PX_RS_DATA: durable before the ack */
#define PX_F_NO_HOLE (1u << 1)  /* PX_TRIM used as write-zeroes that allocates */
#define PX_F_ZERO    (1u << 2)  /* PX_TRIM: write zeroes (else trim) */
#define PX_F_APP     (1u << 3)  /* PX_FLUSH: an application's flush (else the link's own) */
#define PX_F_OUTDATE (1u << 4)  /* PX_DISCONNECT: the sender (primary) goes on writing
				 * without the receiver, which is outdated from now */
#define PX_F_AHEAD   (1u << 5)  /* PX_OOS: the sender pulled ahead (else: a verify found
				 * the range different) */

enum px_link { PX_LINK_META = 1, PX_LINK_DATA = 2 };

struct px_hello {
	uint32_t version_min;       /* lowest version the sender speaks (1) */
	uint32_t version_max;       /* highest (PX_VERSION) */
	uint32_t features;          /* PX_FEAT_* the sender supports */
	uint16_t link;              /* enum px_link */
	uint16_t queue;             /* data link: queue index, else 0 */
	uint64_t session;           /* data link: the meta link's session id, else 0 */
	char node[PX_NAME_MAX];     /* sender's node name, NUL padded */
	char peer[PX_NAME_MAX];     /* node name the sender expects to reach */
	char resource[PX_NAME_MAX]; /* resource name; both must agree */
} __attribute__((packed));

#define PX_HISTORY 4
struct px_state {
	uint8_t role;               /* 0 secondary, 1 primary */
	uint8_t disk;               /* rsm disk state number (uptodate 0 ...) */
	uint16_t reserved;
	uint32_t flags;             /* the sender's META_F_* flags */
	uint64_t data_size;         /* bytes of data */
	uint32_t granularity;       /* bitmap bytes per bit: must match */
	uint32_t reserved2;
	uint64_t gen_current;
	uint64_t gen_bitmap;
	uint64_t gen_history[PX_HISTORY];
	uint64_t oos_bits;          /* bits set in the sender's bitmap */
	uint64_t node_uuid;
} __attribute__((packed));

/* A bitmap chunk: bits [first_bit, first_bit + 8 * (len - sizeof) ) */
struct px_bitmap {
	uint64_t first_bit;         /* multiple of 8 */
} __attribute__((packed));
#define PX_BITMAP_CHUNK (64u * 1024)  /* bytes of bitmap per message, at most */

struct px_io {
	uint64_t offset;            /* bytes into the data area */
	uint32_t length;            /* bytes; data payloads carry exactly this many */
	uint32_t reserved;
} __attribute__((packed));

struct px_ack {
	int32_t status;             /* 0 or a negative errno from the peer's disk */
	uint32_t reserved;
} __attribute__((packed));

struct px_csum {
	uint64_t offset;
	uint32_t length;
	uint32_t reserved;
	uint8_t sha256[32];
} __attribute__((packed));

/* Decoded header, host order. */
struct px_msg {
	uint16_t type;
	uint16_t flags;
	uint32_t len;
	uint64_t id;
};

/* Encodes a header into buf (PX_HDR_SIZE bytes). */
void px_hdr_encode(void *buf, uint16_t type, uint16_t flags, uint32_t len, uint64_t id);
/* Decodes and validates a header: magic, reserved, known type, flags
 * allowed for the type, len within the type's limits: exact for fixed-size
 * types, sizeof(struct px_io) .. sizeof(struct px_io) + max_data for WRITE
 * and RS_DATA, sizeof(struct px_bitmap) .. + PX_BITMAP_CHUNK for BITMAP.
 * max_data above PX_MAX_DATA counts as PX_MAX_DATA.  Returns 0, -EPROTO
 * (bad magic, reserved, type or flags) or -EMSGSIZE (any length the type
 * does not allow, too long or too short), with why set (why may be NULL).
 * out is written only on success.  why never holds raw peer bytes. */
int px_hdr_decode(const void *buf, uint32_t max_data, struct px_msg *out, char *why,
		  size_t whylen);
/* Largest payload the type may carry given max_data; 0 for unknown types. */
uint32_t px_max_len(uint16_t type, uint32_t max_data);
/* "WRITE", "HELLO", ...; "UNKNOWN" for a type not in the table. */
const char *px_type_name(uint16_t type);

/* Fixed payloads: encode into buf / decode from buf of exactly len bytes.
 * Decoders check the length before they read any byte (buf may end right
 * after len bytes, or be NULL with len 0), then the reserved fields: 0 or
 * -EPROTO. */
void px_io_encode(void *buf, uint64_t off, uint32_t length);
int px_io_decode(const void *buf, uint32_t len, struct px_io *out);
void px_ack_encode(void *buf, int32_t status);
int px_ack_decode(const void *buf, uint32_t len, struct px_ack *out);
void px_state_encode(void *buf, const struct px_state *s);
/* Also checks role 0/1, disk <= 4, granularity a power of two >= 4096 and
 * data_size a non-zero multiple of 4096. */
int px_state_decode(const void *buf, uint32_t len, struct px_state *out);
/* The struct px_io that leads a WRITE or RS_DATA payload of len bytes:
 * its length must equal len - sizeof(struct px_io).  Also rejects ranges
 * that wrap (px_io_decode too).  0 or -EPROTO. */
int px_data_decode(const void *buf, uint32_t len, struct px_io *out);
/* BITMAP: first_bit must be a multiple of 8; the bitmap bytes follow the
 * struct in the same payload.  0 or -EPROTO. */
void px_bitmap_encode(void *buf, uint64_t first_bit);
int px_bitmap_decode(const void *buf, uint32_t len, struct px_bitmap *out);
void px_csum_encode(void *buf, uint64_t off, uint32_t length, const uint8_t sha256[32]);
int px_csum_decode(const void *buf, uint32_t len, struct px_csum *out);

/* The handshake of one link, on a blocking socket with timeouts set by the
 * caller.  Exchanges HELLO, checks versions, resource and node names, then
 * authenticates both ways: each side sends a CHALLENGE; each answers with
 * AUTH = HMAC-SHA256(secret, label || challenge || hello_client || hello_server)
 * where label is "blkmirror v1 client" or "blkmirror v1 server" (19 bytes,
 * no NUL) and hello_* are the two HELLO payloads as sent (not headers),
 * followed on a TLS link (s->tls) of agreed version 2 or more by the TLS
 * exporter (px_tls_binding), so that an AUTH made in one TLS session fails
 * in any other; a side that verifies the other's AUTH sends AUTH_OK.  Comparison is
 * constant time.  The listener sends its HELLO before judging the
 * connector's, so both sides report the same mismatch; it sends its
 * CHALLENGE only if the connector's HELLO is acceptable.  The exact
 * sequence is at the top of px_auth.c and in blkmirror-protocol(7). */
struct px_hs_params {
	int initiator;              /* 1: we connected (client role) */
	const char *node, *peer, *resource; /* 1..63 printable ASCII bytes */
	const void *secret;         /* 1..4096 bytes (px_load_secret) */
	size_t secret_len;
	uint16_t link;              /* connector only: the listener takes the
				     * connector's link and queue */
	uint16_t queue;             /* connector, data link: queue index */
	uint64_t session;           /* data links: must match the peer's; the
				     * listener's 0 refuses every data link */
	uint32_t features;
};

struct px_hs_result {
	uint32_t version;           /* agreed: min of both maxima */
	uint32_t features;          /* intersection */
	uint16_t link, queue;       /* what the peer says this link is */
	uint64_t session;           /* meta link: a new id, the same on both
				     * sides, never 0, to pass as session for
				     * this peer's data links; data link: the
				     * session both HELLOs carried */
};

/* Returns 0 when the peer is authenticated, -EACCES for a wrong secret
 * (either direction), -EPROTO for garbage or unexpected messages (including
 * any length error), -EPROTONOSUPPORT when no common version, -ENOENT for a
 * resource or node name mismatch, -ESTALE for a data link whose session is
 * not the current meta link's, -ETIMEDOUT when a socket timeout expired,
 * -ECONNRESET when the peer closed (other than after our AUTH), -EINVAL for
 * bad params, or -errno from the socket; err (may be NULL) says which in one
 * line, with only validated peer names in it.  Does not close fd: the
 * caller closes on failure, which is how the peer learns of it.  Writes
 * with write(2): the caller must ignore SIGPIPE.  Any thread. */
int px_handshake(int fd, const struct px_hs_params *p, struct px_hs_result *out, char *err,
		 size_t errlen);

/* Blocking helpers for the meta link (control thread): send one message
 * (header + payload, one writev) / receive one into buf (at most cap payload
 * bytes; larger is -EMSGSIZE and the payload is left unread, so the caller
 * must drop the connection).  px_recv returns what px_hdr_decode returns
 * for a bad header.  px_send refuses (-EINVAL) a message the peer would
 * reject with max_data PX_MAX_DATA.  0 or -errno; -ECONNRESET on EOF.
 * The caller must ignore SIGPIPE. */
int px_send(int fd, uint16_t type, uint16_t flags, uint64_t id, const void *payload,
	    uint32_t len);
int px_recv(int fd, struct px_msg *m, void *buf, uint32_t cap, uint32_t max_data, char *why,
	    size_t whylen);
/* Reads and validates one header only (the payload is left unread), for a
 * caller that picks the buffer by type.  Same returns as px_recv. */
int px_recv_hdr(int fd, struct px_msg *m, uint32_t max_data, char *why, size_t whylen);

/* A connected link as the blocking helpers see it: the socket, and the TLS
 * session on it when the link is encrypted (proto/px_tls.h), else NULL.
 * The _s functions behave exactly like their fd twins, through the TLS
 * session when there is one; the fd functions are the _s ones on
 * { fd, NULL }.  Over TLS a timeout is still -EAGAIN (-ETIMEDOUT in the
 * handshake) and a broken record is -EPROTO.  px_send_s puts a message of up
 * to 16 KiB in one TLS record, so a px_recv_s that returns leaves nothing
 * of the next message decrypted inside the session (see px_sock_pending). */
struct px_tls;
struct px_sock {
	int fd;                     /* blocking, timeouts set by the caller */
	struct px_tls *tls;         /* not detached; NULL: plain */
};

int px_send_s(struct px_sock *s, uint16_t type, uint16_t flags, uint64_t id,
	      const void *payload, uint32_t len);
int px_recv_s(struct px_sock *s, struct px_msg *m, void *buf, uint32_t cap, uint32_t max_data,
	      char *why, size_t whylen);
int px_recv_hdr_s(struct px_sock *s, struct px_msg *m, uint32_t max_data, char *why,
		  size_t whylen);
/* px_handshake over s: with TLS, the HELLO/CHALLENGE/AUTH exchange runs
 * inside the TLS channel, after px_tls_handshake. */
int px_handshake_s(struct px_sock *s, const struct px_hs_params *p, struct px_hs_result *out,
		   char *err, size_t errlen);

/* Reads a secret file: at least 16 bytes after trimming one trailing
 * newline ("\n" or "\r\n"), at most 4096; the file must be a regular file
 * with no permission bits for group or others (mode & 077 == 0, as ssh
 * wants of keys: group-writable lets others choose the secret).
 * 0, or -errno with err set: -ENOENT (and others from open), -EPERM
 * (mode), -EINVAL (not a regular file, too short), -EFBIG (too long),
 * -ENOBUFS (longer than cap). */
int px_load_secret(const char *path, void *buf, size_t cap, size_t *len, char *err,
		   size_t errlen);

#endif
