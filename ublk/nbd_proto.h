/* NBD wire format (https://github.com/NetworkBlockDevice/nbd doc/proto.md).
 * Everything on the wire is big endian.  Structs are packed and mirror the
 * wire exactly; convert with be16toh/be32toh/be64toh. */
#ifndef BLKMIRROR_NBD_PROTO_H
#define BLKMIRROR_NBD_PROTO_H

#include <stdint.h>

#define NBD_MAGIC          0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT       0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC      0x0003e889045565a9ull /* option reply */
#define NBD_REQUEST_MAGIC  0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* Options. */
#define NBD_OPT_EXPORT_NAME      1
#define NBD_OPT_ABORT            2
#define NBD_OPT_LIST             3
#define NBD_OPT_STARTTLS         5
#define NBD_OPT_INFO             6
#define NBD_OPT_GO               7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

/* Option reply types. */
#define NBD_REP_ACK     1u
#define NBD_REP_SERVER  2u
#define NBD_REP_INFO    3u
#define NBD_REP_FLAG_ERROR (1u << 31)
#define NBD_REP_ERR_UNSUP    (NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY   (NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID  (NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN  (NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG  (NBD_REP_FLAG_ERROR | 9u)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT      0
#define NBD_INFO_NAME        1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE  3

/* The spec's default maximum for READ and WRITE from a client that did not
 * ask for NBD_INFO_BLOCK_SIZE ("Block size constraints"). */
#define NBD_DEFAULT_MAX_PAYLOAD (32u << 20)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_ROTATIONAL        (1u << 4)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)

/* Commands and command flags. */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_CACHE        5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7
#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF        (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Errors carried in replies (the protocol's own numbering). */
#define NBD_EPERM     1
#define NBD_EIO       5
#define NBD_ENOMEM    12
#define NBD_EINVAL    22
#define NBD_ENOSPC    28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP   95
#define NBD_ESHUTDOWN 108

/* Structured reply chunk types and flags. */
#define NBD_REPLY_FLAG_DONE        (1u << 0)
#define NBD_REPLY_TYPE_NONE        0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_ERROR       ((1u << 15) + 1)

/* Server greeting: magic, IHAVEOPT, handshake flags. */
struct nbd_new_handshake {
	uint64_t nbdmagic;        /* NBD_MAGIC */
	uint64_t version;         /* NBD_IHAVEOPT */
	uint16_t gflags;          /* NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES */
} __attribute__((packed));

/* Client option header, followed by optlen bytes of data. */
struct nbd_option {
	uint64_t version;         /* NBD_IHAVEOPT */
	uint32_t option;          /* NBD_OPT_* */
	uint32_t optlen;          /* bytes of option data that follow */
} __attribute__((packed));

/* Server option reply header, followed by replylen bytes. */
struct nbd_fixed_new_option_reply {
	uint64_t magic;           /* NBD_REP_MAGIC */
	uint32_t option;          /* the option being answered */
	uint32_t reply;           /* NBD_REP_* */
	uint32_t replylen;
} __attribute__((packed));

/* Reply to NBD_OPT_EXPORT_NAME (no header). */
struct nbd_export_name_reply {
	uint64_t exportsize;
	uint16_t eflags;          /* transmission flags */
	char zeroes[124];         /* omitted when NO_ZEROES was negotiated */
} __attribute__((packed));

/* NBD_INFO_EXPORT payload. */
struct nbd_info_export {
	uint16_t info;            /* NBD_INFO_EXPORT */
	uint64_t exportsize;
	uint16_t eflags;
} __attribute__((packed));

/* NBD_INFO_BLOCK_SIZE payload. */
struct nbd_info_block_size {
	uint16_t info;            /* NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;
	uint32_t preferred;
	uint32_t maximum;         /* largest payload the server accepts */
} __attribute__((packed));

/* Transmission request; WRITE is followed by `count` bytes of data. */
struct nbd_request {
	uint32_t magic;           /* NBD_REQUEST_MAGIC */
	uint16_t flags;           /* NBD_CMD_FLAG_* */
	uint16_t type;            /* NBD_CMD_* */
	uint64_t handle;          /* opaque, echoed in the reply */
	uint64_t offset;
	uint32_t count;
} __attribute__((packed));

/* Simple reply; a successful READ is followed by the data. */
struct nbd_simple_reply {
	uint32_t magic;           /* NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error;           /* NBD_E* or 0 */
	uint64_t handle;
} __attribute__((packed));

/* Structured reply chunk header, followed by `length` bytes. */
struct nbd_structured_reply {
	uint32_t magic;           /* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags;           /* NBD_REPLY_FLAG_DONE */
	uint16_t type;            /* NBD_REPLY_TYPE_* */
	uint64_t handle;
	uint32_t length;          /* payload bytes that follow */
} __attribute__((packed));

/* OFFSET_DATA payload starts with the offset, then the data. */
struct nbd_structured_reply_offset_data {
	uint64_t offset;
} __attribute__((packed));

/* ERROR payload: errno, message length, message (we send none). */
struct nbd_structured_reply_error {
	uint32_t error;
	uint16_t len;
} __attribute__((packed));

#endif
