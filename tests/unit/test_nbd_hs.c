/* Tests for ublk/nbd_hs.c: nbdh_negotiate runs on one end of a socketpair
 * in a thread while each test plays the client with raw bytes on the other,
 * so every byte the server sends is checked against the spec's layout. */
#include "ublk/nbd_hs.h"

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"
#include "ublk/nbd_proto.h"

/* Must match NBDH_MAX_OPTIONS and NBDH_MAX_OPTLEN in nbd_hs.c. */
#define MAX_OPTIONS 1024
#define MAX_OPTLEN  4096

#define TFLAGS (NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_DF | \
		NBD_FLAG_CAN_MULTI_CONN)

static const struct nbdh_export export_r0 = {
	.name = "r0",
	.description = "mirror r0",
	.size = (1ull << 30) + 512,
	.tflags = TFLAGS,
	.min_block = 512,
	.pref_block = 4096,
	.max_block = 32u << 20,
};

static const struct nbdh_export export_nodesc = {
	.name = "disk",
	.size = 1 << 20,
	.min_block = 1,
	.pref_block = 4096,
	.max_block = 1 << 20,
};

struct srv {
	int cfd;                 /* client end, driven by the test */
	int sfd;                 /* server end, owned by the thread */
	pthread_t th;
	const struct nbdh_export *e;
	struct nbdh_result res;
	char err[256];
	int rc;
};

/* A reply as the client sees it. */
struct rep {
	uint32_t opt;
	uint32_t type;
	uint32_t len;
	uint8_t data[2 * MAX_OPTLEN];
};

/* What the INFO replies to one INFO/GO said. */
struct seen {
	int export, block, name, desc, other;
	uint64_t size;
	uint16_t flags;
	uint32_t min, pref, max;
	char name_s[64];
	char desc_s[64];
};

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void *
srv_main(void *arg)
{
	struct srv *s = arg;

	s->rc = nbdh_negotiate(s->sfd, s->e, &s->res, s->err, sizeof(s->err));
	/* The caller closes the fd after the handshake; do it here so the
	 * client sees EOF when the server gives up. */
	close(s->sfd);
	return NULL;
}

static void
srv_start(struct srv *s, const struct nbdh_export *e)
{
	struct timeval tv = { .tv_sec = 5 };
	int sv[2];

	memset(s, 0, sizeof(*s));
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* Timeouts on both ends turn a wedged test into a failure, not a hang. */
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(sv[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	s->cfd = sv[0];
	s->sfd = sv[1];
	s->e = e;
	s->res.structured = -1;
	s->res.no_zeroes = -1;
	s->res.block_size = -1;
	CU_ASSERT_FATAL(pthread_create(&s->th, NULL, srv_main, s) == 0);
}

/* Closes the client end (a server still haggling sees EOF), then returns
 * what nbdh_negotiate returned. */
static int
srv_finish(struct srv *s)
{
	close(s->cfd);
	pthread_join(s->th, NULL);
	return s->rc;
}

/* Reads and checks the greeting, then sends the client flags. */
static void
cli_greet(struct srv *s, uint32_t cflags)
{
	uint8_t g[18], f[4];

	CU_ASSERT_FATAL(util_read_full(s->cfd, g, sizeof(g)) == 0);
	CU_ASSERT(get64(g) == NBD_MAGIC);
	CU_ASSERT(get64(g + 8) == NBD_IHAVEOPT);
	CU_ASSERT(get16(g + 16) == (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
	put32(f, cflags);
	CU_ASSERT(util_write_full(s->cfd, f, sizeof(f)) == 0);
}

static void
cli_opt_hdr(struct srv *s, uint64_t magic, uint32_t opt, uint32_t len)
{
	uint8_t h[16];

	put64(h, magic);
	put32(h + 8, opt);
	put32(h + 12, len);
	CU_ASSERT(util_write_full(s->cfd, h, sizeof(h)) == 0);
}

static void
cli_opt(struct srv *s, uint32_t opt, const void *data, uint32_t len)
{
	cli_opt_hdr(s, NBD_IHAVEOPT, opt, len);
	if (len)
		CU_ASSERT(util_write_full(s->cfd, data, len) == 0);
}

/* Reads one option reply; returns 0, or -1 if the connection ended. */
static int
cli_reply(struct srv *s, struct rep *r)
{
	uint8_t h[20];

	memset(r, 0, sizeof(*r));
	if (util_read_full(s->cfd, h, sizeof(h)))
		return -1;
	CU_ASSERT(get64(h) == NBD_REP_MAGIC);
	r->opt = get32(h + 8);
	r->type = get32(h + 12);
	r->len = get32(h + 16);
	CU_ASSERT_FATAL(r->len <= sizeof(r->data));
	if (r->len && util_read_full(s->cfd, r->data, r->len))
		return -1;
	return 0;
}

/* Expects a reply with no data of the given type. */
static void
cli_expect(struct srv *s, uint32_t opt, uint32_t type)
{
	struct rep r;

	CU_ASSERT_FATAL(cli_reply(s, &r) == 0);
	CU_ASSERT(r.opt == opt);
	CU_ASSERT(r.type == type);
	CU_ASSERT(r.len == 0);
}

/* True if the server closed its end, with nothing more to read. */
static int
cli_eof(struct srv *s)
{
	uint8_t b;
	ssize_t n = read(s->cfd, &b, 1);

	/* Closing with unread client data makes AF_UNIX report a reset. */
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* INFO/GO data: name length, name, info count, infos. */
static uint32_t
info_go_data(uint8_t *d, const char *name, const uint16_t *infos, uint16_t n)
{
	uint32_t nl = (uint32_t)strlen(name);

	put32(d, nl);
	memcpy(d + 4, name, nl);
	put16(d + 4 + nl, n);
	for (uint16_t i = 0; i < n; i++)
		put16(d + 6 + nl + 2 * i, infos[i]);
	return 6 + nl + 2u * n;
}

static void
copy_str(char *dst, size_t dlen, const uint8_t *src, size_t len)
{
	len = MIN(len, dlen - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static void
note_info(struct seen *v, const struct rep *r)
{
	CU_ASSERT_FATAL(r->len >= 2);
	switch (get16(r->data)) {
	case NBD_INFO_EXPORT:
		CU_ASSERT(r->len == 12);
		v->export++;
		v->size = get64(r->data + 2);
		v->flags = get16(r->data + 10);
		break;
	case NBD_INFO_BLOCK_SIZE:
		CU_ASSERT(r->len == 14);
		v->block++;
		v->min = get32(r->data + 2);
		v->pref = get32(r->data + 6);
		v->max = get32(r->data + 10);
		break;
	case NBD_INFO_NAME:
		v->name++;
		copy_str(v->name_s, sizeof(v->name_s), r->data + 2, r->len - 2);
		break;
	case NBD_INFO_DESCRIPTION:
		v->desc++;
		copy_str(v->desc_s, sizeof(v->desc_s), r->data + 2, r->len - 2);
		break;
	default:
		v->other++;
		break;
	}
}

/* Sends INFO or GO and collects the INFO replies in whatever order they
 * come; returns the final reply type (ACK or an error), 0 on EOF. */
static uint32_t
cli_info_go(struct srv *s, uint32_t opt, const char *name,
	    const uint16_t *infos, uint16_t n, struct seen *v)
{
	uint8_t d[MAX_OPTLEN];
	struct rep r;

	memset(v, 0, sizeof(*v));
	cli_opt(s, opt, d, info_go_data(d, name, infos, n));
	for (;;) {
		if (cli_reply(s, &r))
			return 0;
		CU_ASSERT(r.opt == opt);
		if (r.type != NBD_REP_INFO) {
			CU_ASSERT(r.len == 0);
			return r.type;
		}
		note_info(v, &r);
	}
}

static void
test_nbd_hs_go_block_sizes(void)
{
	static const uint16_t infos[] = { NBD_INFO_BLOCK_SIZE };
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", infos, 1, &v) == NBD_REP_ACK);
	CU_ASSERT(v.export == 1 && v.block == 1 && v.name == 0 && v.desc == 0);
	CU_ASSERT(v.size == export_r0.size);
	/* No structured replies, so SEND_DF must be gone. */
	CU_ASSERT(v.flags == ((TFLAGS | NBD_FLAG_HAS_FLAGS) & ~NBD_FLAG_SEND_DF));
	CU_ASSERT(v.min == 512 && v.pref == 4096 && v.max == 32u << 20);
	/* GO sends no padding after the ACK: the next thing is our close. */
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == 0);
	CU_ASSERT(s.res.structured == 0);
	CU_ASSERT(s.res.no_zeroes == 0);
	/* Asked for in GO: the client committed to the maximum. */
	CU_ASSERT(s.res.block_size == 1);
	CU_ASSERT(s.err[0] == '\0');
}

static void
test_nbd_hs_info_then_go(void)
{
	static const uint16_t infos[] = { NBD_INFO_NAME, 0x7777, NBD_INFO_DESCRIPTION,
					  NBD_INFO_BLOCK_SIZE };
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	/* INFO on the default name: the canonical name comes back, the
	 * unknown info type is ignored, and haggling goes on. */
	CU_ASSERT(cli_info_go(&s, NBD_OPT_INFO, "", infos, 4, &v) == NBD_REP_ACK);
	CU_ASSERT(v.export == 1 && v.block == 1 && v.name == 1 && v.desc == 1);
	CU_ASSERT(v.other == 0);
	CU_ASSERT_STRING_EQUAL(v.name_s, "r0");
	CU_ASSERT_STRING_EQUAL(v.desc_s, "mirror r0");
	CU_ASSERT(v.size == export_r0.size);
	/* GO without requests: EXPORT and BLOCK_SIZE still, nothing else. */
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", NULL, 0, &v) == NBD_REP_ACK);
	CU_ASSERT(v.export == 1 && v.block == 1 && v.name == 0 && v.desc == 0);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == 0);
	CU_ASSERT(s.res.no_zeroes == 1);
	/* Asked for by INFO only, not by GO: the spec's default maximum applies. */
	CU_ASSERT(s.res.block_size == 0);
}

static void
test_nbd_hs_info_no_description(void)
{
	static const uint16_t infos[] = { NBD_INFO_DESCRIPTION };
	struct srv s;
	struct seen v;

	srv_start(&s, &export_nodesc);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_INFO, "disk", infos, 1, &v) == NBD_REP_ACK);
	CU_ASSERT(v.export == 1 && v.desc == 0);
	CU_ASSERT(v.flags == NBD_FLAG_HAS_FLAGS);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
}

/* EXPORT_NAME: size, flags, then 124 zeroes unless NO_ZEROES. */
static void
check_export_name(uint32_t cflags, const char *name, size_t reply_len)
{
	uint8_t r[134], zero[124] = { 0 };
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, cflags);
	cli_opt(&s, NBD_OPT_EXPORT_NAME, name, (uint32_t)strlen(name));
	CU_ASSERT_FATAL(util_read_full(s.cfd, r, reply_len) == 0);
	CU_ASSERT(get64(r) == export_r0.size);
	CU_ASSERT(get16(r + 8) == ((TFLAGS | NBD_FLAG_HAS_FLAGS) & ~NBD_FLAG_SEND_DF));
	if (reply_len == sizeof(r))
		CU_ASSERT(memcmp(r + 10, zero, sizeof(zero)) == 0);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == 0);
	CU_ASSERT(s.res.no_zeroes == !!(cflags & NBD_FLAG_C_NO_ZEROES));
}

static void
test_nbd_hs_export_name(void)
{
	check_export_name(NBD_FLAG_C_FIXED_NEWSTYLE, "r0", 134);
}

static void
test_nbd_hs_export_name_no_zeroes(void)
{
	check_export_name(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, "r0", 10);
}

static void
test_nbd_hs_export_name_default(void)
{
	check_export_name(NBD_FLAG_C_FIXED_NEWSTYLE, "", 134);
}

/* Old clients without fixed newstyle: EXPORT_NAME works, GO does not. */
static void
test_nbd_hs_not_fixed_newstyle(void)
{
	uint8_t d[64];
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, 0);
	cli_opt(&s, NBD_OPT_GO, d, info_go_data(d, "r0", NULL, 0));
	cli_expect(&s, NBD_OPT_GO, NBD_REP_ERR_INVALID);
	cli_opt(&s, NBD_OPT_EXPORT_NAME, "r0", 2);
	CU_ASSERT(util_read_full(s.cfd, d, 10) == 0);
	CU_ASSERT(get64(d) == export_r0.size);
	CU_ASSERT(srv_finish(&s) == 0);
}

static void
test_nbd_hs_export_name_unknown(void)
{
	char longname[301];
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	/* A control character must not reach the log line. */
	cli_opt(&s, NBD_OPT_EXPORT_NAME, "no\npe", 5);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT_STRING_EQUAL(s.err, "unknown export 'no?pe'");

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	memset(longname, 'x', 300);
	longname[300] = '\0';
	cli_opt(&s, NBD_OPT_EXPORT_NAME, longname, 300);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT(strlen(s.err) < 100);
	CU_ASSERT(strstr(s.err, "...'") != NULL);
}

static void
test_nbd_hs_go_unknown_name(void)
{
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "nope", NULL, 0, &v) == NBD_REP_ERR_UNKNOWN);
	CU_ASSERT(v.export == 0);
	/* A prefix of the name is not the name. */
	CU_ASSERT(cli_info_go(&s, NBD_OPT_INFO, "r", NULL, 0, &v) == NBD_REP_ERR_UNKNOWN);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", NULL, 0, &v) == NBD_REP_ACK);
	CU_ASSERT(srv_finish(&s) == 0);
}

static void
test_nbd_hs_go_bad_lengths(void)
{
	uint8_t d[64];
	uint32_t n;
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	/* Shorter than name length plus info count. */
	cli_opt(&s, NBD_OPT_GO, "\0\0\0", 3);
	cli_expect(&s, NBD_OPT_GO, NBD_REP_ERR_INVALID);
	/* Name length beyond the data. */
	n = info_go_data(d, "r0", NULL, 0);
	put32(d, 100);
	cli_opt(&s, NBD_OPT_GO, d, n);
	cli_expect(&s, NBD_OPT_GO, NBD_REP_ERR_INVALID);
	/* Two infos announced, one sent. */
	n = info_go_data(d, "r0", (const uint16_t[]){ NBD_INFO_NAME }, 1);
	put16(d + 6, 2);
	cli_opt(&s, NBD_OPT_INFO, d, n);
	cli_expect(&s, NBD_OPT_INFO, NBD_REP_ERR_INVALID);
	/* A trailing byte nothing accounts for. */
	n = info_go_data(d, "r0", NULL, 0);
	cli_opt(&s, NBD_OPT_GO, d, n + 1);
	cli_expect(&s, NBD_OPT_GO, NBD_REP_ERR_INVALID);
	/* Still in step with the client afterwards. */
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", NULL, 0, &v) == NBD_REP_ACK);
	CU_ASSERT(srv_finish(&s) == 0);
}

static void
test_nbd_hs_list(void)
{
	struct srv s;
	struct rep r;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_LIST, NULL, 0);
	CU_ASSERT_FATAL(cli_reply(&s, &r) == 0);
	CU_ASSERT(r.opt == NBD_OPT_LIST && r.type == NBD_REP_SERVER);
	/* Name length, name, then the description as free text. */
	CU_ASSERT(r.len == 4 + 2 + 9);
	CU_ASSERT(get32(r.data) == 2);
	CU_ASSERT(memcmp(r.data + 4, "r0mirror r0", 11) == 0);
	cli_expect(&s, NBD_OPT_LIST, NBD_REP_ACK);
	/* LIST takes no data. */
	cli_opt(&s, NBD_OPT_LIST, "x", 1);
	cli_expect(&s, NBD_OPT_LIST, NBD_REP_ERR_INVALID);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);

	srv_start(&s, &export_nodesc);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_LIST, NULL, 0);
	CU_ASSERT_FATAL(cli_reply(&s, &r) == 0);
	CU_ASSERT(r.type == NBD_REP_SERVER && r.len == 4 + 4);
	CU_ASSERT(get32(r.data) == 4 && memcmp(r.data + 4, "disk", 4) == 0);
	cli_expect(&s, NBD_OPT_LIST, NBD_REP_ACK);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
}

static void
test_nbd_hs_structured_reply(void)
{
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_STRUCTURED_REPLY, "x", 1);
	cli_expect(&s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID);
	cli_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	cli_expect(&s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
	/* A repeat is refused, as nbdkit does; structured stays on. */
	cli_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	cli_expect(&s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", NULL, 0, &v) == NBD_REP_ACK);
	/* With structured replies SEND_DF may stay. */
	CU_ASSERT(v.flags == (TFLAGS | NBD_FLAG_HAS_FLAGS));
	CU_ASSERT(srv_finish(&s) == 0);
	CU_ASSERT(s.res.structured == 1);
}

static void
test_nbd_hs_abort(void)
{
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_ABORT, NULL, 0);
	cli_expect(&s, NBD_OPT_ABORT, NBD_REP_ACK);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
	CU_ASSERT(strstr(s.err, "abort") != NULL);
}

static void
test_nbd_hs_client_eof(void)
{
	uint8_t g[18];
	struct srv s;

	/* Gone before sending flags (a port probe). */
	srv_start(&s, &export_r0);
	CU_ASSERT(util_read_full(s.cfd, g, sizeof(g)) == 0);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
	CU_ASSERT(s.err[0] != '\0');

	/* Gone between options. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	cli_expect(&s, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
	CU_ASSERT(strstr(s.err, "option haggling") != NULL);
}

static void
test_nbd_hs_truncated_option(void)
{
	struct srv s;

	/* Option data cut short: not a clean close. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt_hdr(&s, NBD_IHAVEOPT, NBD_OPT_GO, 100);
	CU_ASSERT(util_write_full(s.cfd, "0123456789", 10) == 0);
	shutdown(s.cfd, SHUT_WR);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -ECONNRESET);
	CU_ASSERT(strstr(s.err, "GO") != NULL);

	/* Option header cut short. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	CU_ASSERT(util_write_full(s.cfd, "IHAVEO", 6) == 0);
	shutdown(s.cfd, SHUT_WR);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -ECONNRESET);
}

static void
test_nbd_hs_bad_magic(void)
{
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt_hdr(&s, 0x1122334455667788ull, NBD_OPT_GO, 0);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT_STRING_EQUAL(s.err, "client sent bad option magic 0x1122334455667788");
}

static void
test_nbd_hs_bad_client_flags(void)
{
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE | 0x4);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT(strstr(s.err, "0x4") != NULL);
}

static void
test_nbd_hs_oversized_optlen(void)
{
	struct srv s;

	/* 4 GiB announced, nothing sent: an answer at once means the server
	 * neither waits for the data nor allocates room for it. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt_hdr(&s, NBD_IHAVEOPT, NBD_OPT_GO, 0xffffffffu);
	cli_expect(&s, NBD_OPT_GO, NBD_REP_ERR_TOO_BIG);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT(strstr(s.err, "4294967295") != NULL);

	/* One byte over the limit. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt_hdr(&s, NBD_IHAVEOPT, 99, MAX_OPTLEN + 1);
	cli_expect(&s, 99, NBD_REP_ERR_TOO_BIG);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);

	/* EXPORT_NAME has no error reply: just the close. */
	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt_hdr(&s, NBD_IHAVEOPT, NBD_OPT_EXPORT_NAME, 0x10000000u);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
}

static void
test_nbd_hs_unknown_option(void)
{
	static uint8_t big[MAX_OPTLEN];
	struct srv s;
	struct seen v;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, 99, "hello", 5);
	cli_expect(&s, 99, NBD_REP_ERR_UNSUP);
	/* No metadata contexts (no block status) on this export. */
	cli_opt(&s, NBD_OPT_SET_META_CONTEXT, "\0\0\0\0\0\0\0\0", 8);
	cli_expect(&s, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNSUP);
	/* Exactly the limit is read and skipped. */
	memset(big, 0xaa, sizeof(big));
	cli_opt(&s, 100, big, sizeof(big));
	cli_expect(&s, 100, NBD_REP_ERR_UNSUP);
	CU_ASSERT(cli_info_go(&s, NBD_OPT_GO, "r0", NULL, 0, &v) == NBD_REP_ACK);
	CU_ASSERT(srv_finish(&s) == 0);
}

static void
test_nbd_hs_starttls(void)
{
	struct srv s;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	cli_opt(&s, NBD_OPT_STARTTLS, NULL, 0);
	cli_expect(&s, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY);
	cli_opt(&s, NBD_OPT_STARTTLS, "x", 1);
	cli_expect(&s, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
	CU_ASSERT(srv_finish(&s) == -ESHUTDOWN);
}

static void
test_nbd_hs_option_limit(void)
{
	struct srv s;
	int i;

	srv_start(&s, &export_r0);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	for (i = 0; i < MAX_OPTIONS; i++) {
		cli_opt(&s, 99, NULL, 0);
		cli_expect(&s, 99, NBD_REP_ERR_UNSUP);
	}
	cli_opt(&s, 99, NULL, 0);
	CU_ASSERT(cli_eof(&s));
	CU_ASSERT(srv_finish(&s) == -EPROTO);
	CU_ASSERT(strstr(s.err, "options") != NULL);
}

static void
test_nbd_hs_bad_export(void)
{
	static const struct nbdh_export noname = { .name = NULL };
	struct nbdh_result res;
	char err[128];
	int sv[2];

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CU_ASSERT(nbdh_negotiate(sv[1], &noname, &res, err, sizeof(err)) == -EINVAL);
	CU_ASSERT(err[0] != '\0');
	close(sv[0]);
	close(sv[1]);
}

/* One deadline for the whole handshake: a client that sends an option
 * header a byte at a time, each well within any per-read timeout, is
 * dropped with -ETIMEDOUT once the deadline passes. */
static void
test_nbd_hs_deadline(void)
{
	static const struct nbdh_export e = {
		.name = "r0", .size = 1 << 20, .min_block = 1, .pref_block = 4096,
		.max_block = 1 << 20, .timeout_ms = 300,
	};
	uint8_t opt[16] = { 0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0, 0, 0, 3 };
	struct timespec ts = { .tv_nsec = 40 * 1000 * 1000 };
	struct srv s;
	uint64_t t0 = util_now_ms(), took;

	srv_start(&s, &e);
	cli_greet(&s, NBD_FLAG_C_FIXED_NEWSTYLE);
	for (size_t i = 0; i < sizeof(opt); i++) {
		if (send(s.cfd, &opt[i], 1, MSG_NOSIGNAL) != 1)
			break;	/* dropped already */
		nanosleep(&ts, NULL);
	}
	CU_ASSERT(pthread_join(s.th, NULL) == 0);
	took = util_now_ms() - t0;
	close(s.cfd);
	CU_ASSERT(s.rc == -ETIMEDOUT);
	CU_ASSERT(took >= 300 && took < 2000);
	CU_ASSERT(strstr(s.err, "deadline") != NULL);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_nbd_hs_go_block_sizes", test_nbd_hs_go_block_sizes },
		{ "test_nbd_hs_info_then_go", test_nbd_hs_info_then_go },
		{ "test_nbd_hs_info_no_description", test_nbd_hs_info_no_description },
		{ "test_nbd_hs_export_name", test_nbd_hs_export_name },
		{ "test_nbd_hs_export_name_no_zeroes", test_nbd_hs_export_name_no_zeroes },
		{ "test_nbd_hs_export_name_default", test_nbd_hs_export_name_default },
		{ "test_nbd_hs_not_fixed_newstyle", test_nbd_hs_not_fixed_newstyle },
		{ "test_nbd_hs_export_name_unknown", test_nbd_hs_export_name_unknown },
		{ "test_nbd_hs_go_unknown_name", test_nbd_hs_go_unknown_name },
		{ "test_nbd_hs_go_bad_lengths", test_nbd_hs_go_bad_lengths },
		{ "test_nbd_hs_list", test_nbd_hs_list },
		{ "test_nbd_hs_structured_reply", test_nbd_hs_structured_reply },
		{ "test_nbd_hs_abort", test_nbd_hs_abort },
		{ "test_nbd_hs_client_eof", test_nbd_hs_client_eof },
		{ "test_nbd_hs_truncated_option", test_nbd_hs_truncated_option },
		{ "test_nbd_hs_bad_magic", test_nbd_hs_bad_magic },
		{ "test_nbd_hs_bad_client_flags", test_nbd_hs_bad_client_flags },
		{ "test_nbd_hs_oversized_optlen", test_nbd_hs_oversized_optlen },
		{ "test_nbd_hs_unknown_option", test_nbd_hs_unknown_option },
		{ "test_nbd_hs_starttls", test_nbd_hs_starttls },
		{ "test_nbd_hs_option_limit", test_nbd_hs_option_limit },
		{ "test_nbd_hs_bad_export", test_nbd_hs_bad_export },
		{ "test_nbd_hs_deadline", test_nbd_hs_deadline },
	};

	/* A side that writes after the other closed must get EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cu_run("nbd_hs", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
