/* conf: the resource configuration file (INI, one resource per file),
 * parsed with inih.  Names and syntax: blkmirror.conf(5). */
#ifndef BLKMIRROR_CONF_H
#define BLKMIRROR_CONF_H

#include <stdint.h>
#include <stdio.h>

#define CONF_MAX_NODES 2
#define CONF_NAME_MAX 64
#define CONF_PATH_MAX 4096

enum conf_protocol { CONF_PROTO_SYNC, CONF_PROTO_SEMISYNC, CONF_PROTO_ASYNC };
enum conf_frontend { CONF_FE_UBLK, CONF_FE_NBD, CONF_FE_EXPORT };
enum conf_direct { CONF_DIRECT_AUTO, CONF_DIRECT_YES, CONF_DIRECT_NO };

struct conf_node {
	char name[CONF_NAME_MAX];
	char address[256];   /* as written: "host:port" or "[v6]:port" */
	char host[256];      /* parsed host part */
	uint16_t port;       /* parsed port */
	int line;            /* line of the [node NAME] header */
};

struct conf {
	char file[CONF_PATH_MAX];        /* the path given to conf_load */
	char name[CONF_NAME_MAX];        /* [resource] name (required) */
	enum conf_protocol protocol;     /* default sync */
	enum conf_frontend frontend;     /* default ublk */
	char disk[CONF_PATH_MAX];        /* required */
	char meta_disk[CONF_PATH_MAX];   /* "internal" (default) or a path */
	int meta_internal;               /* 1 when meta-disk = internal */
	char control[CONF_PATH_MAX];     /* default /run/blkmirror/<name>.sock */
	char secret_file[CONF_PATH_MAX]; /* optional, "" when absent */
	char export_listen[CONF_PATH_MAX]; /* "unix:/path" or "host:port"; required
					    * when frontend = export */
	char tls_cert[CONF_PATH_MAX], tls_key[CONF_PATH_MAX], tls_ca[CONF_PATH_MAX];
	/* Tuning; every one has a default (see blkmirror.conf(5)). */
	uint32_t queues;          /* queues = N, 1..16, default 1 */
	uint32_t queue_depth;     /* queue-depth = N, 1..1024, default 128 */
	uint32_t max_io_size;     /* max-io-size = SIZE, 4K..32M power of two, default 1M */
	uint32_t max_connections; /* max-connections = N, 1..1024, default 16: NBD export
				   * connections at once, handshakes included */
	uint32_t handshake_timeout_ms; /* handshake-timeout = seconds, default 10: the whole
					* NBD handshake of one export connection */
	uint32_t al_extents;      /* al-extents = N, 7..65534, default 257 */
	uint64_t al_extent_size;  /* al-extent-size = SIZE, 64K..1G power of two, default 4M */
	enum conf_direct direct_io; /* direct-io = auto|yes|no, default auto */
	uint32_t ping_timeout_ms; /* ping-timeout = seconds (may be fractional, "0.5"), default 5 */
	uint64_t max_async_lag;   /* max-async-lag = SIZE, default 64M */
	int on_congestion_pull_ahead; /* on-congestion = block|pull-ahead, default block */
	int on_io_error_pass_on;      /* on-io-error = detach|pass-on, default detach */
	uint64_t resync_rate;     /* resync-rate = SIZE per second, 0 = unlimited (default 0) */
	int after_sb_0pri;        /* after-sb-0pri = disconnect (0, default) |
				   * discard-zero-changes (1) | discard-least-changes (2):
				   * automatic split-brain resolution when no node is primary */
	/* Hooks: scripts run on events (blkmirror.conf(5) HOOKS); "" = none. */
	char handler_role_change[CONF_PATH_MAX];
	char handler_connect[CONF_PATH_MAX];
	char handler_disconnect[CONF_PATH_MAX];
	char handler_resync_start[CONF_PATH_MAX];
	char handler_resync_end[CONF_PATH_MAX];
	char handler_split_brain[CONF_PATH_MAX];
	char handler_fence_peer[CONF_PATH_MAX];
	int fencing;              /* fencing = dont-care (0, default) | resource-and-stonith (1) */
	uint32_t handler_timeout_s; /* handler-timeout = seconds, 1..86400, default 60: a hook
				     * still running then is killed, with its process group */
	int node_count;
	struct conf_node nodes[CONF_MAX_NODES];
	int self;                 /* index into nodes of this node, -1 if unresolved */
	int peer;                 /* index of the other node, -1 if none */
};

/* Parses path into *c (caller-owned storage) and selects the node `node`
 * (NULL: the host name).  On error returns -EINVAL (or -errno for an
 * unreadable file) and writes one message "FILE:LINE: key 'KEY': what is wrong"
 * (LINE omitted only for errors that have no line, e.g. a missing key, which
 * still names the file and the key) into err.  Never touches any disk. */
int conf_load(const char *path, const char *node, struct conf *c, char *err,
	      size_t errlen);

/* The same for tools that need only the resource (mirrorctl): without
 * `node`, a host name that names no [node] is not an error (self = -1). */
int conf_load_resource(const char *path, const char *node, struct conf *c, char *err,
		       size_t errlen);

/* Writes the effective configuration, every key with its value, in the
 * file's own syntax (used by `mirrord --check --dump` and golden tests). */
void conf_dump(const struct conf *c, FILE *out);

const char *conf_protocol_name(enum conf_protocol p);
const char *conf_frontend_name(enum conf_frontend f);

#endif
