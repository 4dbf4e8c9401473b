/* conf: the resource configuration file.  inih splits lines into sections
 * and key = value pairs; this file owns everything else: line numbers,
 * section headers, value checks and the one error message.  The grammar and
 * every default are documented in blkmirror.conf(5). */
#include "daemon/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/util.h"

/* Longest line accepted.  inih's line buffer is a stack array of
 * ini_max_line bytes, which must hold the line plus "\r\n\0". */
#define CONF_LINE_MAX (CONF_PATH_MAX + 256)
#define CONF_RESOURCE_NKEYS 34
#define CONF_UNIX_PREFIX "unix:"
#define CONF_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

enum conf_section { CONF_SEC_NONE, CONF_SEC_RESOURCE, CONF_SEC_NODE };

/* Parser state, shared by the line reader and the key handler. */
struct conf_ctx {
	struct conf *c;
	FILE *f;
	const char *path;
	int line;               /* line last handed to inih, 1-based */
	int read_errno;         /* set when fgets failed */
	enum conf_section sec;  /* section of the current line */
	int node;               /* index into c->nodes when sec is CONF_SEC_NODE */
	const char *key;        /* key being handled, for messages */
	int resource_line;      /* line of [resource], 0 when not seen */
	int key_line[CONF_RESOURCE_NKEYS]; /* where each key was set, 0 = unset */
	int addr_line[CONF_MAX_NODES];
	bool failed;            /* only the first error is kept */
	int err_line;           /* line of that error, 0 when it has none */
	char *err;
	size_t errlen;
};

struct conf_key;
typedef int (*conf_setter)(struct conf_ctx *x, const struct conf_key *k,
			   const char *v);

/* One [resource] key.  off/size locate the field for the generic setters;
 * min/max bound numbers and sizes. */
struct conf_key {
	const char *name;
	conf_setter set;
	size_t off;
	size_t size;
	uint64_t min, max;
	bool pow2;
};

static const char *const conf_protocol_words[] = {
	[CONF_PROTO_SYNC] = "sync",
	[CONF_PROTO_SEMISYNC] = "semi-sync",
	[CONF_PROTO_ASYNC] = "async",
};
static const char *const conf_frontend_words[] = {
	[CONF_FE_UBLK] = "ublk",
	[CONF_FE_NBD] = "nbd",
	[CONF_FE_EXPORT] = "export",
};
static const char *const conf_direct_words[] = {
	[CONF_DIRECT_AUTO] = "auto",
	[CONF_DIRECT_YES] = "yes",
	[CONF_DIRECT_NO] = "no",
};
static const char *const conf_congestion_words[] = { "block", "pull-ahead" };
static const char *const conf_io_error_words[] = { "detach", "pass-on" };
static const char *const conf_fencing_words[] = { "dont-care", "resource-and-stonith" };
static const char *const conf_sb_words[] = { "disconnect", "discard-zero-changes",
					     "discard-least-changes" };

/* ---- messages ---- */

static void conf_vfail(struct conf_ctx *x, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void
conf_vfail(struct conf_ctx *x, int line, const char *fmt, va_list ap)
{
	int n;

	if (x->failed)
		return;
	x->failed = true;
	x->err_line = line;
	if (!x->err || !x->errlen)
		return;
	if (line)
		n = snprintf(x->err, x->errlen, "%s:%d: ", x->path, line);
	else
		n = snprintf(x->err, x->errlen, "%s: ", x->path);
	if (n >= 0 && (size_t)n < x->errlen)
		vsnprintf(x->err + n, x->errlen - (size_t)n, fmt, ap);
}

/* An error about the current line as a whole (sections, syntax). */
static int conf_fail_line(struct conf_ctx *x, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
conf_fail_line(struct conf_ctx *x, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conf_vfail(x, line, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* An error about the key on the current line: "FILE:LINE: key 'K': ...". */
static int conf_fail_key(struct conf_ctx *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
conf_fail_key(struct conf_ctx *x, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return conf_fail_line(x, x->line, "key '%s': %s", x->key, msg);
}

/* ---- value helpers ---- */

static int
conf_word(const char *v, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v, words[i]) == 0)
			return (int)i;
	return -1;
}

/* Names end up in socket paths, export names and log lines: keep them
 * to characters that need no quoting anywhere. */
static bool
conf_name_ok(const char *s)
{
	/* Names become file names (/dev/blkmirror/NAME, the control socket). */
	if (!*s || strlen(s) >= CONF_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++) {
		char ch = *s;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
		      ch == '_'))
			return false;
	}
	return true;
}

static int
conf_copy(struct conf_ctx *x, const char *v, char *dst, size_t size)
{
	if (strlen(v) >= size)
		return conf_fail_key(x, "value too long (at most %zu characters)",
				     size - 1);
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* Formats a byte count the way a user would write it ("4K", "32M"). */
static const char *
conf_fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char suffix[] = "KMGT";
	int i = -1;

	while (i < 3 && v >= 1024 && v % 1024 == 0) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, suffix[i]);
	return buf;
}

/* Splits "host:port" or "[v6]:port".  Returns NULL on success or what is
 * wrong with s. */
static const char *
conf_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	uint64_t p;
	bool v6 = false;
	unsigned char bin[sizeof(struct in6_addr)];

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return "missing ']'";
		if (close[1] != ':')
			return "expected ':PORT' after ']'";
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		v6 = true;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return "missing ':PORT'";
		hl = (size_t)(colon - s);
	}
	if (hl == 0)
		return "empty host";
	if (hl >= hostlen)
		return "host too long";
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (util_parse_uint(colon + 1, 65535, &p) || p == 0)
		return "port must be a number from 1 to 65535";
	if (v6) {
		if (inet_pton(AF_INET6, host, bin) != 1)
			return "not an IPv6 address inside [ ]";
	} else if (strchr(host, ':')) {
		return "IPv6 addresses need brackets, as in [::1]:7789";
	} else if (strspn(host, "0123456789.") == hl) {
		/* all digits and dots: an IPv4 address, never a host name */
		if (inet_pton(AF_INET, host, bin) != 1)
			return "not an IPv4 address";
	} else if (strspn(host, "abcdefghijklmnopqrstuvwxyz"
			  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != hl) {
		return "a host name has only letters, digits, '.', '-' and '_'";
	}
	*port = (uint16_t)p;
	return NULL;
}

/* "5", "0.5", "1.25": seconds with at most three decimals, in ms. */
static int
conf_parse_ms(const char *s, uint64_t *out)
{
	char ip[16];
	const char *dot = strchr(s, '.');
	size_t il = dot ? (size_t)(dot - s) : strlen(s);
	uint64_t sec, frac = 0;

	if (il == 0 || il >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, il);
	ip[il] = '\0';
	if (util_parse_uint(ip, 1000000, &sec))
		return -EINVAL;
	if (dot) {
		size_t fl = strlen(dot + 1);

		if (fl == 0 || fl > 3 || util_parse_uint(dot + 1, 999, &frac))
			return -EINVAL;
		for (; fl < 3; fl++)
			frac *= 10;
	}
	*out = sec * 1000 + frac;
	return 0;
}

/* ---- [resource] setters: 0 or -EINVAL with the message recorded ---- */

static int
set_name(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	if (!conf_name_ok(v))
		return conf_fail_key(x, "bad value '%s': expected up to %d letters, "
				     "digits, '.', '-' or '_', not '.' or '..'", v, CONF_NAME_MAX - 1);
	return conf_copy(x, v, x->c->name, sizeof(x->c->name));
}

static int
set_protocol(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_protocol_words, ARRAY_SIZE(conf_protocol_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected sync, semi-sync or async", v);
	x->c->protocol = (enum conf_protocol)i;
	return 0;
}

static int
set_frontend(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_frontend_words, ARRAY_SIZE(conf_frontend_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected ublk, nbd or export", v);
	x->c->frontend = (enum conf_frontend)i;
	return 0;
}

static int
set_direct_io(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_direct_words, ARRAY_SIZE(conf_direct_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected auto, yes or no", v);
	x->c->direct_io = (enum conf_direct)i;
	return 0;
}

static int
set_on_congestion(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_congestion_words, ARRAY_SIZE(conf_congestion_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected block or pull-ahead", v);
	x->c->on_congestion_pull_ahead = i;
	return 0;
}

static int
set_on_io_error(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_io_error_words, ARRAY_SIZE(conf_io_error_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected detach or pass-on", v);
	x->c->on_io_error_pass_on = i;
	return 0;
}

static int
set_after_sb_0pri(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_sb_words, ARRAY_SIZE(conf_sb_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected disconnect, "
				     "discard-zero-changes or discard-least-changes", v);
	x->c->after_sb_0pri = i;
	return 0;
}

static int
set_fencing(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	int i = conf_word(v, conf_fencing_words, ARRAY_SIZE(conf_fencing_words));

	if (i < 0)
		return conf_fail_key(x, "bad value '%s': expected dont-care or resource-and-stonith",
				     v);
	x->c->fencing = i;
	return 0;
}

/* A hook must be an absolute path: the daemon runs it from anywhere. */
static int
set_handler(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	if (v[0] != '/')
		return conf_fail_key(x, "'%s' is not an absolute path", v);
	return conf_copy(x, v, (char *)x->c + k->off, k->size);
}

static int
set_path(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	return conf_copy(x, v, (char *)x->c + k->off, k->size);
}

/* A socket path that does not fit sun_path would only fail at bind()
 * time, long after --check said yes. */
static int
set_socket_path(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	if (strlen(v) >= CONF_SUN_PATH_MAX)
		return conf_fail_key(x, "socket path too long (at most %zu characters)",
				     CONF_SUN_PATH_MAX - 1);
	return set_path(x, k, v);
}

static int
set_meta_disk(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	x->c->meta_internal = strcmp(v, "internal") == 0;
	return set_path(x, k, v);
}

static int
set_export_listen(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	const char *why;
	char host[256];
	uint16_t port;

	if (strncmp(v, CONF_UNIX_PREFIX, strlen(CONF_UNIX_PREFIX)) == 0) {
		const char *p = v + strlen(CONF_UNIX_PREFIX);

		if (*p != '/')
			return conf_fail_key(x, "bad value '%s': expected unix:/ABSOLUTE/PATH "
					     "or HOST:PORT", v);
		if (strlen(p) >= CONF_SUN_PATH_MAX)
			return conf_fail_key(x, "socket path too long (at most %zu characters)",
					     CONF_SUN_PATH_MAX - 1);
		return set_path(x, k, v);
	}
	why = conf_parse_hostport(v, host, sizeof(host), &port);
	if (why)
		return conf_fail_key(x, "bad value '%s': %s (expected unix:/ABSOLUTE/PATH "
				     "or HOST:PORT)", v, why);
	return set_path(x, k, v);
}

static int
set_uint(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	uint64_t n;

	if (util_parse_uint(v, k->max, &n) || n < k->min)
		return conf_fail_key(x, "bad value '%s': expected a number from %llu to %llu",
				     v, (unsigned long long)k->min,
				     (unsigned long long)k->max);
	*(uint32_t *)(void *)((char *)x->c + k->off) = (uint32_t)n;
	return 0;
}

/* Sizes go into uint32_t or uint64_t fields; k->size says which. */
static int
set_size(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	char lo[32], hi[32];
	uint64_t n;
	void *field = (char *)x->c + k->off;

	if (util_parse_size(v, &n) || n < k->min || n > k->max ||
	    (k->pow2 && (n & (n - 1)))) {
		if (k->max == UINT64_MAX)
			return conf_fail_key(x, "bad value '%s': expected a size in bytes, "
					     "optionally with suffix K, M, G or T", v);
		return conf_fail_key(x, "bad value '%s': expected a size from %s to %s%s", v,
				     conf_fmt_size(k->min, lo, sizeof(lo)),
				     conf_fmt_size(k->max, hi, sizeof(hi)),
				     k->pow2 ? ", a power of two" : "");
	}
	if (k->size == sizeof(uint32_t))
		*(uint32_t *)field = (uint32_t)n;
	else
		*(uint64_t *)field = n;
	return 0;
}

static int
set_seconds_ms(struct conf_ctx *x, const struct conf_key *k, const char *v)
{
	uint64_t ms;

	if (conf_parse_ms(v, &ms) || ms < k->min || ms > k->max)
		return conf_fail_key(x, "bad value '%s': expected seconds, more than 0 and "
				     "at most %llu, with up to 3 decimals (e.g. 0.5)", v,
				     (unsigned long long)(k->max / 1000));
	*(uint32_t *)(void *)((char *)x->c + k->off) = (uint32_t)ms;
	return 0;
}

#define F(field) offsetof(struct conf, field), sizeof(((struct conf *)0)->field)

static const struct conf_key conf_resource_keys[] = {
	{ "name", set_name, F(name), 0, 0, false },
	{ "protocol", set_protocol, F(protocol), 0, 0, false },
	{ "frontend", set_frontend, F(frontend), 0, 0, false },
	{ "disk", set_path, F(disk), 0, 0, false },
	{ "meta-disk", set_meta_disk, F(meta_disk), 0, 0, false },
	{ "control", set_socket_path, F(control), 0, 0, false },
	{ "secret-file", set_path, F(secret_file), 0, 0, false },
	{ "export-listen", set_export_listen, F(export_listen), 0, 0, false },
	{ "tls-cert", set_path, F(tls_cert), 0, 0, false },
	{ "tls-key", set_path, F(tls_key), 0, 0, false },
	{ "tls-ca", set_path, F(tls_ca), 0, 0, false },
	{ "queues", set_uint, F(queues), 1, 16, false },
	{ "queue-depth", set_uint, F(queue_depth), 1, 1024, false },
	{ "max-io-size", set_size, F(max_io_size), 4096, 32u << 20, true },
	{ "max-connections", set_uint, F(max_connections), 1, 1024, false },
	{ "handshake-timeout", set_seconds_ms, F(handshake_timeout_ms), 1, 600000, false },
	{ "al-extents", set_uint, F(al_extents), 7, 65534, false },
	{ "al-extent-size", set_size, F(al_extent_size), 64u << 10, 1u << 30, true },
	{ "direct-io", set_direct_io, F(direct_io), 0, 0, false },
	{ "ping-timeout", set_seconds_ms, F(ping_timeout_ms), 1, 600000, false },
	{ "max-async-lag", set_size, F(max_async_lag), 0, UINT64_MAX, false },
	{ "on-congestion", set_on_congestion, F(on_congestion_pull_ahead), 0, 0, false },
	{ "on-io-error", set_on_io_error, F(on_io_error_pass_on), 0, 0, false },
	{ "resync-rate", set_size, F(resync_rate), 0, UINT64_MAX, false },
	{ "after-sb-0pri", set_after_sb_0pri, F(after_sb_0pri), 0, 0, false },
	{ "fencing", set_fencing, F(fencing), 0, 0, false },
	{ "handler-role-change", set_handler, F(handler_role_change), 0, 0, false },
	{ "handler-connect", set_handler, F(handler_connect), 0, 0, false },
	{ "handler-disconnect", set_handler, F(handler_disconnect), 0, 0, false },
	{ "handler-resync-start", set_handler, F(handler_resync_start), 0, 0, false },
	{ "handler-resync-end", set_handler, F(handler_resync_end), 0, 0, false },
	{ "handler-split-brain", set_handler, F(handler_split_brain), 0, 0, false },
	{ "handler-fence-peer", set_handler, F(handler_fence_peer), 0, 0, false },
	{ "handler-timeout", set_uint, F(handler_timeout_s), 1, 86400, false },
};

#undef F

_Static_assert(ARRAY_SIZE(conf_resource_keys) == CONF_RESOURCE_NKEYS,
	       "CONF_RESOURCE_NKEYS must match the key table");

static int
conf_key_index(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(conf_resource_keys); i++)
		if (strcmp(conf_resource_keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* ---- sections ---- */

static int
conf_begin_node(struct conf_ctx *x, const char *name)
{
	struct conf *c = x->c;
	struct conf_node *n;

	if (!*name)
		return conf_fail_line(x, x->line, "section [node]: missing node name, "
				      "expected [node NAME]");
	if (!conf_name_ok(name))
		return conf_fail_line(x, x->line, "section [node %s]: bad node name: expected "
				      "up to %d letters, digits, '.', '-' or '_', not '.' or '..'",
				      name, CONF_NAME_MAX - 1);
	for (int i = 0; i < c->node_count; i++)
		if (strcmp(c->nodes[i].name, name) == 0)
			return conf_fail_line(x, x->line, "duplicate section [node %s] "
					      "(first at line %d)", name, c->nodes[i].line);
	if (c->node_count == CONF_MAX_NODES)
		return conf_fail_line(x, x->line, "section [node %s]: too many node "
				      "sections (at most %d)", name, CONF_MAX_NODES);
	x->node = c->node_count++;
	n = &c->nodes[x->node];
	memcpy(n->name, name, strlen(name) + 1);
	n->line = x->line;
	x->sec = CONF_SEC_NODE;
	return 0;
}

/* name is the text between the brackets, already trimmed. */
static int
conf_begin_section(struct conf_ctx *x, const char *name)
{
	if (strcmp(name, "resource") == 0) {
		if (x->resource_line)
			return conf_fail_line(x, x->line, "duplicate section [resource] "
					      "(first at line %d)", x->resource_line);
		x->resource_line = x->line;
		x->sec = CONF_SEC_RESOURCE;
		return 0;
	}
	if (strncmp(name, "node", 4) == 0 && (name[4] == '\0' || name[4] == ' ' ||
					      name[4] == '\t')) {
		name += 4;
		name += strspn(name, " \t");
		return conf_begin_node(x, name);
	}
	return conf_fail_line(x, x->line, "unknown section [%s]: expected [resource] or "
			      "[node NAME]", name);
}

/* Section headers are handled here rather than in the inih handler: inih
 * reports a section only with its first key and truncates its name, and an
 * empty [node x] must still count.  Mirrors inih's own test: after leading
 * blanks (and a BOM on line 1) a '[' up to the first ']', where an inline
 * comment (" ;") ends the search.  Lines inih rejects are left to it. */
static int
conf_scan_header(struct conf_ctx *x, const char *line)
{
	char name[CONF_NAME_MAX + 16];
	const char *p = line, *end;
	size_t len;

	if (x->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	p += strspn(p, " \t\r\n\v\f");
	if (*p != '[')
		return 0;
	for (end = p + 1; *end && *end != ']'; end++)
		if (*end == ';' && (end[-1] == ' ' || end[-1] == '\t'))
			return 0;
	if (*end != ']')
		return 0;
	p++;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	len = (size_t)(end - p);
	if (len >= sizeof(name))
		return conf_fail_line(x, x->line, "section name too long");
	memcpy(name, p, len);
	name[len] = '\0';
	return conf_begin_section(x, name);
}

/* ---- inih callbacks ---- */

/* inih calls this once per line (the line buffer fits any accepted line),
 * so x->line is the line of whatever inih handles next. */
static char *
conf_reader(char *str, int num, void *stream)
{
	struct conf_ctx *x = stream;
	size_t n;

	/* Stop at the first error: what follows would only add noise. */
	if (x->failed)
		return NULL;
	errno = 0;
	if (!fgets(str, num, x->f)) {
		if (ferror(x->f))
			x->read_errno = errno ? errno : EIO;
		return NULL;
	}
	x->line++;
	n = strlen(str);
	if (n == (size_t)num - 1 && str[n - 1] != '\n') {
		int ch = getc(x->f);

		if (ch != EOF) {
			conf_fail_line(x, x->line, "line too long (at most %d characters)",
				       num - 3);
			return NULL;
		}
	}
	if (conf_scan_header(x, str))
		return NULL;
	return str;
}

static int
conf_node_key(struct conf_ctx *x, const char *v)
{
	struct conf *c = x->c;
	struct conf_node *n = &c->nodes[x->node];
	const char *why;

	if (strcmp(x->key, "address") != 0)
		return conf_fail_key(x, "unknown key in [node %s] (expected address)", n->name);
	if (x->addr_line[x->node])
		return conf_fail_key(x, "duplicate key (first set at line %d)",
				     x->addr_line[x->node]);
	if (strlen(v) >= sizeof(n->address))
		return conf_fail_key(x, "value too long (at most %zu characters)",
				     sizeof(n->address) - 1);
	why = conf_parse_hostport(v, n->host, sizeof(n->host), &n->port);
	if (why)
		return conf_fail_key(x, "bad address '%s': %s (expected HOST:PORT or "
				     "[IPV6]:PORT)", v, why);
	for (int i = 0; i < c->node_count; i++)
		if (i != x->node && x->addr_line[i] && strcmp(c->nodes[i].address, v) == 0)
			return conf_fail_key(x, "address '%s' is also the address of "
					     "[node %s]", v, c->nodes[i].name);
	memcpy(n->address, v, strlen(v) + 1);
	x->addr_line[x->node] = x->line;
	return 0;
}

static int
conf_resource_key(struct conf_ctx *x, const char *v)
{
	int i = conf_key_index(x->key);

	if (i < 0)
		return conf_fail_key(x, "unknown key in [resource]");
	if (x->key_line[i])
		return conf_fail_key(x, "duplicate key (first set at line %d)", x->key_line[i]);
	x->key_line[i] = x->line;
	return conf_resource_keys[i].set(x, &conf_resource_keys[i], v);
}

/* inih handler: 1 to go on, 0 on error.  The section argument is ignored
 * in favour of conf_scan_header's, which is not truncated. */
static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct conf_ctx *x = user;

	x->key = name;
	if (x->sec == CONF_SEC_NONE)
		conf_fail_key(x, "outside of any section (start with [resource])");
	else if (!value || !*value)
		conf_fail_key(x, "empty value");
	else if (*value == ';' || *value == '#')
		/* inih strips blanks around a value and cuts it at a ';' after
		 * a blank; but "KEY=;x" gives ";x", which conf_dump would write
		 * as "KEY = ;x", a comment.  A value beginning with '#' reads
		 * like a commented-out one.  Refusing both keeps every accepted
		 * value dumpable as "KEY = VALUE" that loads back the same. */
		conf_fail_key(x, "bad value '%s': may not start with ';' or '#' "
			      "(they start comments)", value);
	else if (x->sec == CONF_SEC_RESOURCE)
		conf_resource_key(x, value);
	else
		conf_node_key(x, value);
	x->key = NULL;
	return !x->failed;
}

/* ---- after the last line ---- */

#define KEY_SET(x, field) ((x)->c->field[0] != '\0')

static int
conf_check_resource(struct conf_ctx *x)
{
	static const char *const tls_keys[] = { "tls-cert", "tls-key", "tls-ca" };
	struct conf *c = x->c;
	bool tls[3] = { KEY_SET(x, tls_cert), KEY_SET(x, tls_key), KEY_SET(x, tls_ca) };
	int ntls = tls[0] + tls[1] + tls[2];

	if (!x->resource_line)
		return conf_fail_line(x, 0, "missing section [resource]");
	if (!KEY_SET(x, name))
		return conf_fail_line(x, 0, "[resource]: missing required key 'name'");
	if (!KEY_SET(x, disk))
		return conf_fail_line(x, 0, "[resource]: missing required key 'disk'");
	if (c->frontend == CONF_FE_EXPORT && !KEY_SET(x, export_listen))
		return conf_fail_line(x, 0, "[resource]: missing required key 'export-listen' "
				      "(required with frontend = export)");
	if (ntls != 0 && ntls != 3) {
		int miss = !tls[0] ? 0 : !tls[1] ? 1 : 2;

		return conf_fail_line(x, 0, "[resource]: missing key '%s': tls-cert, tls-key "
				      "and tls-ca must be set together or not at all",
				      tls_keys[miss]);
	}
	if (!c->meta_internal && strcmp(c->meta_disk, c->disk) == 0) {
		x->key = "meta-disk";
		x->line = x->key_line[conf_key_index("meta-disk")];
		return conf_fail_key(x, "same path as disk (use meta-disk = internal)");
	}
	/* Fencing without a way to fence would freeze I/O for good. */
	if (c->fencing && !c->handler_fence_peer[0]) {
		x->key = "fencing";
		x->line = x->key_line[conf_key_index("fencing")];
		return conf_fail_key(x, "resource-and-stonith needs handler-fence-peer");
	}
	if (!KEY_SET(x, control))
		snprintf(c->control, sizeof(c->control), "/run/blkmirror/%s.sock", c->name);
	return 0;
}

/* node NULL: the host name, or failing that its first label, so that
 * "alpha.example.com" finds [node alpha]. */
static int
conf_select_node(struct conf_ctx *x, const char *node)
{
	struct conf *c = x->c;
	char host[HOST_NAME_MAX + 1];
	const char *want = node;
	size_t short_len = 0;

	if (!want) {
		if (gethostname(host, sizeof(host)) < 0) {
			int e = errno;

			conf_fail_line(x, 0, "cannot get the host name: %s", strerror(e));
			return -e;
		}
		host[sizeof(host) - 1] = '\0';
		want = host;
		short_len = strcspn(host, ".");
	}
	for (int i = 0; i < c->node_count; i++)
		if (strcmp(c->nodes[i].name, want) == 0)
			c->self = i;
	for (int i = 0; c->self < 0 && short_len && i < c->node_count; i++)
		if (strlen(c->nodes[i].name) == short_len &&
		    strncmp(c->nodes[i].name, want, short_len) == 0)
			c->self = i;
	if (c->self < 0)
		return conf_fail_line(x, 0, "no [node %s] section for this node "
				      "(use --node or add one)", want);
	c->peer = c->node_count == 2 ? 1 - c->self : -1;
	return 0;
}

static int
conf_check_nodes(struct conf_ctx *x)
{
	struct conf *c = x->c;

	for (int i = 0; i < c->node_count; i++)
		if (!x->addr_line[i])
			return conf_fail_line(x, 0, "[node %s]: missing required key 'address'",
					      c->nodes[i].name);
	return 0;
}

static void
conf_defaults(struct conf *c)
{
	memset(c, 0, sizeof(*c));
	c->protocol = CONF_PROTO_SYNC;
	c->frontend = CONF_FE_UBLK;
	strcpy(c->meta_disk, "internal");
	c->meta_internal = 1;
	c->queues = 1;
	c->queue_depth = 128;
	c->max_io_size = 1u << 20;
	c->max_connections = 16;
	c->handshake_timeout_ms = 10000;
	c->al_extents = 257;
	c->al_extent_size = 4u << 20;
	c->direct_io = CONF_DIRECT_AUTO;
	c->ping_timeout_ms = 5000;
	c->handler_timeout_s = 60;
	c->max_async_lag = 64u << 20;
	c->on_congestion_pull_ahead = 0;
	c->on_io_error_pass_on = 0;
	c->resync_rate = 0;
	c->self = -1;
	c->peer = -1;
}

static int
conf_load_impl(const char *path, const char *node, int need_node, struct conf *c, char *err,
	       size_t errlen)
{
	struct conf_ctx x = { .c = c, .path = path, .err = err, .errlen = errlen };
	int ret, e;

	if (err && errlen)
		err[0] = '\0';
	conf_defaults(c);
	if (strlen(path) >= sizeof(c->file)) {
		conf_fail_line(&x, 0, "cannot read: %s", strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	memcpy(c->file, path, strlen(path) + 1);
	x.f = fopen(path, "re");
	if (!x.f) {
		e = errno;
		conf_fail_line(&x, 0, "cannot read: %s", strerror(e));
		return -e;
	}
	/* Debian's inih takes these options at run time, process-wide; conf is
	 * its only user.  Without multi-line values an indented line is a line
	 * of its own, as the man page promises. */
	ini_max_line = CONF_LINE_MAX;
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	ret = ini_parse_stream(conf_reader, &x, conf_handler, &x);
	fclose(x.f);
	if (x.read_errno) {
		x.failed = false;
		conf_fail_line(&x, 0, "cannot read: %s", strerror(x.read_errno));
		return -x.read_errno;
	}
	/* inih returns the first bad line, its own syntax errors included; an
	 * error of ours on a later line cannot be the first one. */
	if (ret > 0 && (!x.failed || ret < x.err_line)) {
		x.failed = false;
		conf_fail_line(&x, ret, "syntax error: expected [SECTION] or KEY = VALUE");
	}
	if (ret < 0 && !x.failed)
		conf_fail_line(&x, 0, "cannot read: %s", strerror(ENOMEM));
	if (x.failed)
		return -EINVAL;
	if (conf_check_resource(&x) || conf_check_nodes(&x))
		return -EINVAL;
	if (!need_node && !node) {
		/* Best effort: the tools need the resource, not the node. */
		if (conf_select_node(&x, NULL)) {
			c->self = -1;
			c->peer = -1;
			if (err && errlen)
				err[0] = '\0';
		}
		return 0;
	}
	return conf_select_node(&x, node);
}

int
conf_load(const char *path, const char *node, struct conf *c, char *err, size_t errlen)
{
	return conf_load_impl(path, node, 1, c, err, errlen);
}

int
conf_load_resource(const char *path, const char *node, struct conf *c, char *err,
		   size_t errlen)
{
	return conf_load_impl(path, node, 0, c, err, errlen);
}

static void
conf_dump_str(FILE *out, const char *key, const char *v)
{
	if (*v)
		fprintf(out, "%s = %s\n", key, v);
}

/* Seconds as the parser reads them back: no needless decimals. */
static void
conf_dump_secs(FILE *out, const char *key, uint32_t v_ms)
{
	unsigned s = v_ms / 1000, ms = v_ms % 1000;

	if (ms == 0)
		fprintf(out, "%s = %u\n", key, s);
	else if (ms % 100 == 0)
		fprintf(out, "%s = %u.%u\n", key, s, ms / 100);
	else if (ms % 10 == 0)
		fprintf(out, "%s = %u.%02u\n", key, s, ms / 10);
	else
		fprintf(out, "%s = %u.%03u\n", key, s, ms);
}

void
conf_dump(const struct conf *c, FILE *out)
{

	fprintf(out, "[resource]\n");
	fprintf(out, "name = %s\n", c->name);
	fprintf(out, "protocol = %s\n", conf_protocol_name(c->protocol));
	fprintf(out, "frontend = %s\n", conf_frontend_name(c->frontend));
	fprintf(out, "disk = %s\n", c->disk);
	fprintf(out, "meta-disk = %s\n", c->meta_internal ? "internal" : c->meta_disk);
	fprintf(out, "control = %s\n", c->control);
	/* unset optional paths are left out: "key =" would not parse back */
	conf_dump_str(out, "secret-file", c->secret_file);
	conf_dump_str(out, "export-listen", c->export_listen);
	conf_dump_str(out, "tls-cert", c->tls_cert);
	conf_dump_str(out, "tls-key", c->tls_key);
	conf_dump_str(out, "tls-ca", c->tls_ca);
	fprintf(out, "queues = %u\n", c->queues);
	fprintf(out, "queue-depth = %u\n", c->queue_depth);
	fprintf(out, "max-io-size = %u\n", c->max_io_size);
	fprintf(out, "max-connections = %u\n", c->max_connections);
	conf_dump_secs(out, "handshake-timeout", c->handshake_timeout_ms);
	fprintf(out, "al-extents = %u\n", c->al_extents);
	fprintf(out, "al-extent-size = %llu\n", (unsigned long long)c->al_extent_size);
	fprintf(out, "direct-io = %s\n",
		(unsigned)c->direct_io < ARRAY_SIZE(conf_direct_words) ?
		conf_direct_words[c->direct_io] : "?");
	conf_dump_secs(out, "ping-timeout", c->ping_timeout_ms);
	fprintf(out, "max-async-lag = %llu\n", (unsigned long long)c->max_async_lag);
	fprintf(out, "on-congestion = %s\n",
		conf_congestion_words[c->on_congestion_pull_ahead ? 1 : 0]);
	fprintf(out, "on-io-error = %s\n", conf_io_error_words[c->on_io_error_pass_on ? 1 : 0]);
	fprintf(out, "after-sb-0pri = %s\n", conf_sb_words[c->after_sb_0pri]);
	fprintf(out, "resync-rate = %llu\n", (unsigned long long)c->resync_rate);
	fprintf(out, "fencing = %s\n", conf_fencing_words[c->fencing]);
	fprintf(out, "handler-timeout = %u\n", c->handler_timeout_s);
	conf_dump_str(out, "handler-role-change", c->handler_role_change);
	conf_dump_str(out, "handler-connect", c->handler_connect);
	conf_dump_str(out, "handler-disconnect", c->handler_disconnect);
	conf_dump_str(out, "handler-resync-start", c->handler_resync_start);
	conf_dump_str(out, "handler-resync-end", c->handler_resync_end);
	conf_dump_str(out, "handler-split-brain", c->handler_split_brain);
	conf_dump_str(out, "handler-fence-peer", c->handler_fence_peer);
	for (int i = 0; i < c->node_count; i++) {
		fprintf(out, "\n[node %s]\n", c->nodes[i].name);
		fprintf(out, "address = %s\n", c->nodes[i].address);
	}
}

const char *
conf_protocol_name(enum conf_protocol p)
{
	if ((unsigned)p >= ARRAY_SIZE(conf_protocol_words))
		return "?";
	return conf_protocol_words[p];
}

const char *
conf_frontend_name(enum conf_frontend f)
{
	if ((unsigned)f >= ARRAY_SIZE(conf_frontend_words))
		return "?";
	return conf_frontend_words[f];
}
