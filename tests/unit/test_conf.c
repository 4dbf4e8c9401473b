/* Unit tests for daemon/conf.c: defaults, every key, and one test per class
 * of configuration error, each checking that the message names the file,
 * the line and the key. */
#include "daemon/conf.h"

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RES "[resource]\nname = r0\ndisk = /nonexistent/dir/r0.img\n"
#define NODE_A "[node alpha]\naddress = 192.0.2.1:7789\n"
#define NODE_B "[node beta]\naddress = 192.0.2.2:7789\n"

static char tmpdir[256];
static char path[512];
static struct conf cf;	/* large: keep it off the stack */
static char err[1024];

static int
suite_init(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_conf.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
suite_clean(void)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to tmpdir/name and leaves its path in `path`. */
static const char *
write_conf(const char *name, const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int
load(const char *text, const char *node)
{
	write_conf("test.conf", text);
	memset(err, 0, sizeof(err));
	return conf_load(path, node, &cf, err, sizeof(err));
}

/* Loads text, which must fail with -EINVAL and a message that starts with
 * "PATH:LINE: " (or "PATH: " for line 0) and contains key (as 'key') and
 * what, when given. */
static void
expect_error(const char *text, const char *node, int line, const char *key,
	     const char *what)
{
	char prefix[1024], quoted[128];
	int rc = load(text, node);
	int ok;

	CU_ASSERT_EQUAL(rc, -EINVAL);
	if (line)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	ok = strncmp(err, prefix, strlen(prefix)) == 0;
	if (key) {
		snprintf(quoted, sizeof(quoted), "'%s'", key);
		ok = ok && strstr(err, quoted);
	}
	if (what)
		ok = ok && strstr(err, what);
	ok = ok && !strchr(err, '\n');
	if (!ok)
		fprintf(stderr, "\n  unexpected message: \"%s\"\n  wanted line %d key %s "
			"text %s\n", err, line, key ? key : "-", what ? what : "-");
	CU_ASSERT(ok);
}

static void
test_conf_defaults(void)
{
	CU_ASSERT_EQUAL_FATAL(load(RES NODE_A, "alpha"), 0);
	CU_ASSERT_STRING_EQUAL(cf.file, path);
	CU_ASSERT_STRING_EQUAL(cf.name, "r0");
	CU_ASSERT_EQUAL(cf.protocol, CONF_PROTO_SYNC);
	CU_ASSERT_EQUAL(cf.frontend, CONF_FE_UBLK);
	CU_ASSERT_STRING_EQUAL(cf.disk, "/nonexistent/dir/r0.img");
	CU_ASSERT_STRING_EQUAL(cf.meta_disk, "internal");
	CU_ASSERT_EQUAL(cf.meta_internal, 1);
	CU_ASSERT_STRING_EQUAL(cf.control, "/run/blkmirror/r0.sock");
	CU_ASSERT_STRING_EQUAL(cf.secret_file, "");
	CU_ASSERT_STRING_EQUAL(cf.export_listen, "");
	CU_ASSERT_STRING_EQUAL(cf.tls_cert, "");
	CU_ASSERT_STRING_EQUAL(cf.tls_key, "");
	CU_ASSERT_STRING_EQUAL(cf.tls_ca, "");
	CU_ASSERT_EQUAL(cf.queues, 1);
	CU_ASSERT_EQUAL(cf.queue_depth, 128);
	CU_ASSERT_EQUAL(cf.max_io_size, 1u << 20);
	CU_ASSERT_EQUAL(cf.max_connections, 16);
	CU_ASSERT_EQUAL(cf.handshake_timeout_ms, 10000);
	CU_ASSERT_EQUAL(cf.al_extents, 257);
	CU_ASSERT_EQUAL(cf.al_extent_size, 4u << 20);
	CU_ASSERT_EQUAL(cf.direct_io, CONF_DIRECT_AUTO);
	CU_ASSERT_EQUAL(cf.ping_timeout_ms, 5000);
	CU_ASSERT_EQUAL(cf.max_async_lag, 64u << 20);
	CU_ASSERT_EQUAL(cf.on_congestion_pull_ahead, 0);
	CU_ASSERT_EQUAL(cf.resync_rate, 0);
	CU_ASSERT_EQUAL(cf.node_count, 1);
	CU_ASSERT_STRING_EQUAL(cf.nodes[0].name, "alpha");
	CU_ASSERT_STRING_EQUAL(cf.nodes[0].host, "192.0.2.1");
	CU_ASSERT_EQUAL(cf.nodes[0].port, 7789);
	CU_ASSERT_EQUAL(cf.nodes[0].line, 4);
	CU_ASSERT_EQUAL(cf.self, 0);
	CU_ASSERT_EQUAL(cf.peer, -1);
}

static const char every_key[] =
	"; every key, none at its default\n"
	"[resource]\n"
	"name = r1\n"
	"protocol = semi-sync\n"
	"frontend = export\n"
	"disk = /dev/vg0/r1\n"
	"meta-disk = /dev/vg0/r1-meta\n"
	"control = /tmp/r1.sock\n"
	"secret-file = /etc/blkmirror/r1.secret\n"
	"export-listen = unix:/run/blkmirror/r1.nbd\n"
	"tls-cert = /etc/blkmirror/cert.pem\n"
	"tls-key = /etc/blkmirror/key.pem\n"
	"tls-ca = /etc/blkmirror/ca.pem\n"
	"queues = 4\n"
	"queue-depth = 64\n"
	"max-io-size = 512K\n"
	"max-connections = 4\n"
	"handshake-timeout = 2.5\n"
	"al-extents = 1021\n"
	"al-extent-size = 1M\n"
	"direct-io = no\n"
	"ping-timeout = 0.5\n"
	"max-async-lag = 1G\n"
	"on-congestion = pull-ahead\n"
	"resync-rate = 100M\n"
	"handler-timeout = 90\n"
	"\n"
	"[node alpha]\n"
	"address = alpha.example.com:7790\n"
	"\n"
	"[node beta]\n"
	"address = [2001:db8::2]:7791\n";

static void
test_conf_every_key_parsed(void)
{
	CU_ASSERT_EQUAL_FATAL(load(every_key, "beta"), 0);
	CU_ASSERT_STRING_EQUAL(cf.name, "r1");
	CU_ASSERT_EQUAL(cf.protocol, CONF_PROTO_SEMISYNC);
	CU_ASSERT_EQUAL(cf.frontend, CONF_FE_EXPORT);
	CU_ASSERT_STRING_EQUAL(cf.disk, "/dev/vg0/r1");
	CU_ASSERT_STRING_EQUAL(cf.meta_disk, "/dev/vg0/r1-meta");
	CU_ASSERT_EQUAL(cf.meta_internal, 0);
	CU_ASSERT_STRING_EQUAL(cf.control, "/tmp/r1.sock");
	CU_ASSERT_STRING_EQUAL(cf.secret_file, "/etc/blkmirror/r1.secret");
	CU_ASSERT_STRING_EQUAL(cf.export_listen, "unix:/run/blkmirror/r1.nbd");
	CU_ASSERT_STRING_EQUAL(cf.tls_cert, "/etc/blkmirror/cert.pem");
	CU_ASSERT_STRING_EQUAL(cf.tls_key, "/etc/blkmirror/key.pem");
	CU_ASSERT_STRING_EQUAL(cf.tls_ca, "/etc/blkmirror/ca.pem");
	CU_ASSERT_EQUAL(cf.queues, 4);
	CU_ASSERT_EQUAL(cf.queue_depth, 64);
	CU_ASSERT_EQUAL(cf.max_io_size, 512u << 10);
	CU_ASSERT_EQUAL(cf.max_connections, 4);
	CU_ASSERT_EQUAL(cf.handshake_timeout_ms, 2500);
	CU_ASSERT_EQUAL(cf.al_extents, 1021);
	CU_ASSERT_EQUAL(cf.al_extent_size, 1u << 20);
	CU_ASSERT_EQUAL(cf.direct_io, CONF_DIRECT_NO);
	CU_ASSERT_EQUAL(cf.ping_timeout_ms, 500);
	CU_ASSERT_EQUAL(cf.max_async_lag, 1ull << 30);
	CU_ASSERT_EQUAL(cf.on_congestion_pull_ahead, 1);
	CU_ASSERT_EQUAL(cf.resync_rate, 100ull << 20);
	CU_ASSERT_EQUAL(cf.handler_timeout_s, 90);
	CU_ASSERT_EQUAL_FATAL(cf.node_count, 2);
	CU_ASSERT_STRING_EQUAL(cf.nodes[0].address, "alpha.example.com:7790");
	CU_ASSERT_STRING_EQUAL(cf.nodes[0].host, "alpha.example.com");
	CU_ASSERT_EQUAL(cf.nodes[0].port, 7790);
	CU_ASSERT_EQUAL(cf.nodes[0].line, 28);
	CU_ASSERT_STRING_EQUAL(cf.nodes[1].name, "beta");
	CU_ASSERT_STRING_EQUAL(cf.nodes[1].address, "[2001:db8::2]:7791");
	CU_ASSERT_STRING_EQUAL(cf.nodes[1].host, "2001:db8::2");
	CU_ASSERT_EQUAL(cf.nodes[1].port, 7791);
	CU_ASSERT_EQUAL(cf.nodes[1].line, 31);
	CU_ASSERT_EQUAL(cf.self, 1);
	CU_ASSERT_EQUAL(cf.peer, 0);
}

static void
test_conf_enum_values(void)
{
	static const struct {
		const char *line;
		int field_off;
		int want;
	} cases[] = {
		{ "protocol = sync", 0, CONF_PROTO_SYNC },
		{ "protocol = semi-sync", 0, CONF_PROTO_SEMISYNC },
		{ "protocol = async", 0, CONF_PROTO_ASYNC },
		{ "frontend = ublk", 1, CONF_FE_UBLK },
		{ "frontend = nbd", 1, CONF_FE_NBD },
		{ "direct-io = auto", 2, CONF_DIRECT_AUTO },
		{ "direct-io = yes", 2, CONF_DIRECT_YES },
		{ "direct-io = no", 2, CONF_DIRECT_NO },
		{ "on-congestion = block", 3, 0 },
		{ "on-congestion = pull-ahead", 3, 1 },
		{ "on-io-error = detach", 4, 0 },
		{ "on-io-error = pass-on", 4, 1 },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = -1;

		snprintf(text, sizeof(text), RES "%s\n" NODE_A, cases[i].line);
		CU_ASSERT_EQUAL_FATAL(load(text, "alpha"), 0);
		switch (cases[i].field_off) {
		case 0: got = (int)cf.protocol; break;
		case 1: got = (int)cf.frontend; break;
		case 2: got = (int)cf.direct_io; break;
		case 3: got = cf.on_congestion_pull_ahead; break;
		case 4: got = cf.on_io_error_pass_on; break;
		}
		CU_ASSERT_EQUAL(got, cases[i].want);
	}
	CU_ASSERT_STRING_EQUAL(conf_protocol_name(CONF_PROTO_SEMISYNC), "semi-sync");
	CU_ASSERT_STRING_EQUAL(conf_frontend_name(CONF_FE_NBD), "nbd");
}

static void
test_conf_size_suffixes(void)
{
	CU_ASSERT_EQUAL_FATAL(load(RES "max-io-size = 4K\nal-extent-size = 1G\n"
				   "max-async-lag = 2T\nresync-rate = 4096\n" NODE_A,
				   "alpha"), 0);
	CU_ASSERT_EQUAL(cf.max_io_size, 4096);
	CU_ASSERT_EQUAL(cf.al_extent_size, 1ull << 30);
	CU_ASSERT_EQUAL(cf.max_async_lag, 2ull << 40);
	CU_ASSERT_EQUAL(cf.resync_rate, 4096);
	CU_ASSERT_EQUAL_FATAL(load(RES "max-io-size = 32M\nal-extent-size = 64k\n" NODE_A,
				   "alpha"), 0);
	CU_ASSERT_EQUAL(cf.max_io_size, 32u << 20);
	CU_ASSERT_EQUAL(cf.al_extent_size, 64u << 10);
}

static void
test_conf_ping_timeout_fractions(void)
{
	static const struct {
		const char *v;
		uint32_t ms;
	} cases[] = {
		{ "0.5", 500 }, { "0.001", 1 }, { "1.25", 1250 }, { "600", 600000 },
		{ "600.0", 600000 }, { "2", 2000 },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), RES "ping-timeout = %s\n" NODE_A, cases[i].v);
		CU_ASSERT_EQUAL_FATAL(load(text, "alpha"), 0);
		CU_ASSERT_EQUAL(cf.ping_timeout_ms, cases[i].ms);
	}
}

static void
test_conf_export_listen_forms(void)
{
	static const char *const good[] = {
		"unix:/run/blkmirror/r0.nbd", "127.0.0.1:10809", "[::1]:10809",
		"localhost:10809",
	};
	char text[512];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), RES "frontend = export\nexport-listen = %s\n"
			 NODE_A, good[i]);
		CU_ASSERT_EQUAL(load(text, "alpha"), 0);
		CU_ASSERT_STRING_EQUAL(cf.export_listen, good[i]);
	}
}

static void
test_conf_hostname_selects_node(void)
{
	char host[HOST_NAME_MAX + 1], text[1024];

	CU_ASSERT_EQUAL_FATAL(gethostname(host, sizeof(host)), 0);
	host[strcspn(host, ".")] = '\0';
	snprintf(text, sizeof(text), RES NODE_A "[node %s]\naddress = 192.0.2.9:7789\n",
		 host);
	if (strcmp(host, "alpha") == 0)
		return;	/* the file would name the same node twice */
	CU_ASSERT_EQUAL_FATAL(load(text, NULL), 0);
	CU_ASSERT_EQUAL(cf.self, 1);
	CU_ASSERT_EQUAL(cf.peer, 0);
}

static void
test_conf_comments_keep_line_numbers(void)
{
	/* Comments, blank lines, CRLF and indented lines all count. */
	expect_error("# comment\r\n"
		     "\r\n"
		     "[resource]   ; trailing comment\r\n"
		     "  name = r0\r\n"
		     "; disk = /x\r\n"
		     "\tdisk = /x\r\n"
		     "bogus = 1\r\n", "alpha", 7, "bogus", "unknown key");
}

static void
test_conf_unknown_key(void)
{
	expect_error(RES "protcol = sync\n" NODE_A, "alpha", 4, "protcol",
		     "unknown key in [resource]");
	expect_error(RES NODE_A "port = 7789\n", "alpha", 6, "port",
		     "unknown key in [node alpha]");
}

static void
test_conf_unknown_section(void)
{
	expect_error(RES NODE_A "[nodes beta]\n", "alpha", 6, NULL,
		     "unknown section [nodes beta]");
	expect_error(RES "[global]\n" NODE_A, "alpha", 4, NULL, "unknown section [global]");
	expect_error(RES "[node]\n", "alpha", 4, NULL, "missing node name");
	expect_error(RES "[node a/b]\n", "alpha", 4, NULL, "bad node name");
	expect_error(RES NODE_A "[resource]\n", "alpha", 6, NULL,
		     "duplicate section [resource] (first at line 1)");
}

static void
test_conf_duplicate_key(void)
{
	expect_error(RES "disk = /other\n" NODE_A, "alpha", 4, "disk",
		     "duplicate key (first set at line 3)");
	expect_error(RES NODE_A "address = 192.0.2.3:7789\n", "alpha", 6, "address",
		     "duplicate key (first set at line 5)");
}

static void
test_conf_bad_value(void)
{
	static const struct {
		const char *line, *key, *what;
	} cases[] = {
		{ "protocol = foo", "protocol",
		  "bad value 'foo': expected sync, semi-sync or async" },
		{ "protocol = C", "protocol", "expected sync, semi-sync or async" },
		{ "frontend = iscsi", "frontend", "expected ublk, nbd or export" },
		{ "direct-io = maybe", "direct-io", "expected auto, yes or no" },
		{ "on-congestion = drop", "on-congestion", "expected block or pull-ahead" },
		{ "on-io-error = panic", "on-io-error", "expected detach or pass-on" },
		{ "queues = 0", "queues", "expected a number from 1 to 16" },
		{ "queues = 17", "queues", "expected a number from 1 to 16" },
		{ "queues = -1", "queues", "expected a number from 1 to 16" },
		{ "queue-depth = 1025", "queue-depth", "from 1 to 1024" },
		{ "queue-depth = 12x", "queue-depth", "from 1 to 1024" },
		{ "al-extents = 6", "al-extents", "from 7 to 65534" },
		{ "al-extents = 65535", "al-extents", "from 7 to 65534" },
		{ "max-io-size = 3M", "max-io-size", "from 4K to 32M, a power of two" },
		{ "max-io-size = 2K", "max-io-size", "from 4K to 32M" },
		{ "max-io-size = 64M", "max-io-size", "from 4K to 32M" },
		{ "max-connections = 0", "max-connections", "from 1 to 1024" },
		{ "handshake-timeout = 0", "handshake-timeout", "expected seconds" },
		{ "al-extent-size = 32K", "al-extent-size", "from 64K to 1G" },
		{ "al-extent-size = 2G", "al-extent-size", "from 64K to 1G" },
		{ "al-extent-size = 100K", "al-extent-size", "a power of two" },
		{ "max-async-lag = 1Q", "max-async-lag", "expected a size" },
		{ "resync-rate = fast", "resync-rate", "expected a size" },
		{ "resync-rate = 99999999999999T", "resync-rate", "expected a size" },
		{ "ping-timeout = 0", "ping-timeout", "more than 0" },
		{ "ping-timeout = 0.0", "ping-timeout", "more than 0" },
		{ "ping-timeout = 600.001", "ping-timeout", "at most 600" },
		{ "ping-timeout = 0.0001", "ping-timeout", "up to 3 decimals" },
		{ "ping-timeout = .5", "ping-timeout", "expected seconds" },
		{ "ping-timeout = 5s", "ping-timeout", "expected seconds" },
		{ "ping-timeout = -1", "ping-timeout", "expected seconds" },
		{ "name = r 0", "name", "letters, digits" },
		{ "name = r/0", "name", "letters, digits" },
		{ "name = ..", "name", "not '.' or '..'" },
		{ "name = .", "name", "not '.' or '..'" },
		{ "control = /run/blkmirror/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock", "control",
		  "socket path too long" },
	};
	char text[1024];

	/* "name" is set on line 2 of RES: rebuild the resource so that the
	 * tested line is always line 2 and not a duplicate. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strncmp(cases[i].line, "name", 4) == 0)
			snprintf(text, sizeof(text), "[resource]\n%s\ndisk = /x\n" NODE_A,
				 cases[i].line);
		else
			snprintf(text, sizeof(text), "[resource]\n%s\nname = r0\ndisk = /x\n"
				 NODE_A, cases[i].line);
		expect_error(text, "alpha", 2, cases[i].key, cases[i].what);
	}
}

static void
test_conf_empty_value(void)
{
	expect_error(RES "secret-file =\n" NODE_A, "alpha", 4, "secret-file", "empty value");
	expect_error(RES "[node alpha]\naddress = \n", "alpha", 5, "address", "empty value");
}

static void
test_conf_missing_required(void)
{
	expect_error("[resource]\ndisk = /x\n" NODE_A, "alpha", 0, "name",
		     "[resource]: missing required key 'name'");
	expect_error("[resource]\nname = r0\n" NODE_A, "alpha", 0, "disk",
		     "[resource]: missing required key 'disk'");
	expect_error(RES "frontend = export\n" NODE_A, "alpha", 0, "export-listen",
		     "missing required key 'export-listen'");
	expect_error(RES "[node alpha]\n", "alpha", 0, "address",
		     "[node alpha]: missing required key 'address'");
	expect_error(NODE_A, "alpha", 0, NULL, "missing section [resource]");
	/* exact text: scripts and the golden files rely on it */
	CU_ASSERT_EQUAL(load("[resource]\nname = r0\n" NODE_A, "alpha"), -EINVAL);
	{
		char want[1024];

		snprintf(want, sizeof(want), "%s: [resource]: missing required key 'disk'",
			 path);
		CU_ASSERT_STRING_EQUAL(err, want);
	}
}

static void
test_conf_too_many_nodes(void)
{
	expect_error(RES NODE_A NODE_B "[node gamma]\naddress = 192.0.2.3:7789\n", "alpha",
		     8, NULL, "[node gamma]: too many node sections (at most 2)");
}

static void
test_conf_duplicate_node(void)
{
	expect_error(RES NODE_A "[node alpha]\naddress = 192.0.2.3:7789\n", "alpha", 6,
		     NULL, "duplicate section [node alpha] (first at line 4)");
}

static void
test_conf_no_node_for_host(void)
{
	char want[1024];

	expect_error(RES NODE_A NODE_B, "gamma", 0, NULL,
		     "no [node gamma] section for this node");
	snprintf(want, sizeof(want), "%s: no [node gamma] section for this node "
		 "(use --node or add one)", path);
	CU_ASSERT_STRING_EQUAL(err, want);
	expect_error(RES, "alpha", 0, NULL, "no [node alpha] section for this node");
}

static void
test_conf_bad_address(void)
{
	static const struct {
		const char *v, *what;
	} cases[] = {
		{ "192.0.2.1", "missing ':PORT'" },
		{ "192.0.2.1:", "port must be a number from 1 to 65535" },
		{ "192.0.2.1:0", "port must be a number from 1 to 65535" },
		{ "192.0.2.1:65536", "port must be a number from 1 to 65535" },
		{ "192.0.2.1:http", "port must be" },
		{ ":7789", "empty host" },
		{ "[]:7789", "empty host" },
		{ "[::1:7789", "missing ']'" },
		{ "[::1]7789", "expected ':PORT' after ']'" },
		{ "[not-v6]:7789", "not an IPv6 address" },
		{ "::1:7789", "IPv6 addresses need brackets" },
		{ "192.0.2.300:7789", "not an IPv4 address" },
		{ "host name:7789", "a host name has only letters" },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), RES "[node alpha]\naddress = %s\n", cases[i].v);
		expect_error(text, "alpha", 5, "address", cases[i].what);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].v));
	}
	expect_error(RES NODE_A "[node beta]\naddress = 192.0.2.1:7789\n", "alpha", 7,
		     "address", "also the address of [node alpha]");
}

static void
test_conf_tls_all_or_none(void)
{
	expect_error(RES "tls-cert = /c.pem\n" NODE_A, "alpha", 0, "tls-key",
		     "must be set together");
	expect_error(RES "tls-cert = /c.pem\ntls-key = /k.pem\n" NODE_A, "alpha", 0,
		     "tls-ca", "must be set together");
	expect_error(RES "tls-ca = /ca.pem\n" NODE_A, "alpha", 0, "tls-cert",
		     "must be set together");
	CU_ASSERT_EQUAL(load(RES "tls-cert = /c\ntls-key = /k\ntls-ca = /a\n" NODE_A,
			     "alpha"), 0);
}

static void
test_conf_bad_export_listen(void)
{
	static const struct {
		const char *v, *what;
	} cases[] = {
		{ "unix:run/r0.nbd", "expected unix:/ABSOLUTE/PATH or HOST:PORT" },
		{ "unix:", "expected unix:/ABSOLUTE/PATH or HOST:PORT" },
		{ "/run/r0.nbd", "missing ':PORT'" },
		{ "127.0.0.1", "missing ':PORT'" },
		{ "127.0.0.1:0", "port must be" },
		{ "unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "socket path too long" },
	};
	char text[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), RES "frontend = export\nexport-listen = %s\n"
			 NODE_A, cases[i].v);
		expect_error(text, "alpha", 5, "export-listen", cases[i].what);
	}
}

static void
test_conf_meta_disk(void)
{
	CU_ASSERT_EQUAL_FATAL(load(RES "meta-disk = /dev/vg0/meta\n" NODE_A, "alpha"), 0);
	CU_ASSERT_EQUAL(cf.meta_internal, 0);
	CU_ASSERT_STRING_EQUAL(cf.meta_disk, "/dev/vg0/meta");
	expect_error(RES "meta-disk = /nonexistent/dir/r0.img\n" NODE_A, "alpha", 4,
		     "meta-disk", "same path as disk");
}

static void
test_conf_syntax_error(void)
{
	expect_error(RES "disk /x\n" NODE_A, "alpha", 4, NULL, "syntax error");
	expect_error(RES "[node alpha\n", "alpha", 4, NULL, "syntax error");
	/* the first error wins, whichever kind it is */
	expect_error(RES "junk\nbogus = 1\n", "alpha", 4, NULL, "syntax error");
	expect_error(RES "bogus = 1\njunk\n", "alpha", 4, "bogus", "unknown key");
}

static void
test_conf_key_outside_section(void)
{
	expect_error("name = r0\n" RES, "alpha", 1, "name", "outside of any section");
}

static void
test_conf_line_too_long(void)
{
	size_t n = 9000;
	char *text = malloc(n + 256);
	char *p;

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	p = text + sprintf(text, RES "secret-file = /");
	memset(p, 'a', n);
	strcpy(p + n, "\n" NODE_A);
	expect_error(text, "alpha", 4, NULL, "line too long");
	free(text);
}

static void
test_conf_long_path_accepted(void)
{
	/* Paths far past inih's default 200-character line still parse. */
	char text[CONF_PATH_MAX + 512], *p;

	p = text + sprintf(text, RES "secret-file = /");
	memset(p, 's', CONF_PATH_MAX - 2);
	strcpy(p + CONF_PATH_MAX - 2, "\n" NODE_A);
	CU_ASSERT_EQUAL_FATAL(load(text, "alpha"), 0);
	CU_ASSERT_EQUAL(strlen(cf.secret_file), CONF_PATH_MAX - 1);
	p[CONF_PATH_MAX - 2] = 's';
	strcpy(p + CONF_PATH_MAX - 1, "\n" NODE_A);
	expect_error(text, "alpha", 4, "secret-file", "value too long");
}

static void
test_conf_unreadable_file(void)
{
	char want[1024];
	int rc;

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	rc = conf_load(path, "alpha", &cf, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot read: %s", path, strerror(ENOENT));
	CU_ASSERT_STRING_EQUAL(err, want);

	rc = conf_load(tmpdir, "alpha", &cf, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, -EISDIR);
	snprintf(want, sizeof(want), "%s: cannot read: %s", tmpdir, strerror(EISDIR));
	CU_ASSERT_STRING_EQUAL(err, want);
}

static void
test_conf_never_opens_disk(void)
{
	/* A FIFO as the disk: opening it for reading would block forever. */
	char fifo[600], text[1024];

	snprintf(fifo, sizeof(fifo), "%s/disk.fifo", tmpdir);
	CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
	snprintf(text, sizeof(text), "[resource]\nname = r0\ndisk = %s\n" NODE_A, fifo);
	CU_ASSERT_EQUAL(load(text, "alpha"), 0);
	CU_ASSERT_STRING_EQUAL(cf.disk, fifo);
	unlink(fifo);
}

/* dump(load(dump(load(x)))) == dump(load(x)), and the dump of the
 * every-key file is exactly the file's effective settings. */
static void
test_conf_dump_round_trip(void)
{
	static const char want[] =
		"[resource]\n"
		"name = r1\n"
		"protocol = semi-sync\n"
		"frontend = export\n"
		"disk = /dev/vg0/r1\n"
		"meta-disk = /dev/vg0/r1-meta\n"
		"control = /tmp/r1.sock\n"
		"secret-file = /etc/blkmirror/r1.secret\n"
		"export-listen = unix:/run/blkmirror/r1.nbd\n"
		"tls-cert = /etc/blkmirror/cert.pem\n"
		"tls-key = /etc/blkmirror/key.pem\n"
		"tls-ca = /etc/blkmirror/ca.pem\n"
		"queues = 4\n"
		"queue-depth = 64\n"
		"max-io-size = 524288\n"
		"max-connections = 4\n"
		"handshake-timeout = 2.5\n"
		"al-extents = 1021\n"
		"al-extent-size = 1048576\n"
		"direct-io = no\n"
		"ping-timeout = 0.5\n"
		"max-async-lag = 1073741824\n"
		"on-congestion = pull-ahead\n"
		"on-io-error = detach\n"
		"after-sb-0pri = disconnect\n"
		"resync-rate = 104857600\n"
		"fencing = dont-care\n"
		"handler-timeout = 90\n"
		"\n"
		"[node alpha]\n"
		"address = alpha.example.com:7790\n"
		"\n"
		"[node beta]\n"
		"address = [2001:db8::2]:7791\n";
	char *first = NULL, *second = NULL;
	size_t n1 = 0, n2 = 0;
	FILE *f;

	CU_ASSERT_EQUAL_FATAL(load(every_key, "alpha"), 0);
	f = open_memstream(&first, &n1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	conf_dump(&cf, f);
	fclose(f);
	CU_ASSERT_STRING_EQUAL(first, want);

	CU_ASSERT_EQUAL_FATAL(load(first, "alpha"), 0);
	f = open_memstream(&second, &n2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	conf_dump(&cf, f);
	fclose(f);
	CU_ASSERT_STRING_EQUAL(second, first);
	free(first);
	free(second);
}

static void
test_conf_dump_defaults(void)
{
	static const char want[] =
		"[resource]\n"
		"name = r0\n"
		"protocol = sync\n"
		"frontend = ublk\n"
		"disk = /nonexistent/dir/r0.img\n"
		"meta-disk = internal\n"
		"control = /run/blkmirror/r0.sock\n"
		"queues = 1\n"
		"queue-depth = 128\n"
		"max-io-size = 1048576\n"
		"max-connections = 16\n"
		"handshake-timeout = 10\n"
		"al-extents = 257\n"
		"al-extent-size = 4194304\n"
		"direct-io = auto\n"
		"ping-timeout = 5\n"
		"max-async-lag = 67108864\n"
		"on-congestion = block\n"
		"on-io-error = detach\n"
		"after-sb-0pri = disconnect\n"
		"resync-rate = 0\n"
		"fencing = dont-care\n"
		"handler-timeout = 60\n"
		"\n"
		"[node alpha]\n"
		"address = 192.0.2.1:7789\n";
	char *out = NULL;
	size_t n = 0;
	FILE *f;

	CU_ASSERT_EQUAL_FATAL(load(RES NODE_A, "alpha"), 0);
	f = open_memstream(&out, &n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	conf_dump(&cf, f);
	fclose(f);
	CU_ASSERT_STRING_EQUAL(out, want);
	free(out);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_conf_defaults", test_conf_defaults },
		{ "test_conf_every_key_parsed", test_conf_every_key_parsed },
		{ "test_conf_enum_values", test_conf_enum_values },
		{ "test_conf_size_suffixes", test_conf_size_suffixes },
		{ "test_conf_ping_timeout_fractions", test_conf_ping_timeout_fractions },
		{ "test_conf_export_listen_forms", test_conf_export_listen_forms },
		{ "test_conf_hostname_selects_node", test_conf_hostname_selects_node },
		{ "test_conf_comments_keep_line_numbers", test_conf_comments_keep_line_numbers },
		{ "test_conf_unknown_key", test_conf_unknown_key },
		{ "test_conf_unknown_section", test_conf_unknown_section },
		{ "test_conf_duplicate_key", test_conf_duplicate_key },
		{ "test_conf_bad_value", test_conf_bad_value },
		{ "test_conf_empty_value", test_conf_empty_value },
		{ "test_conf_missing_required", test_conf_missing_required },
		{ "test_conf_too_many_nodes", test_conf_too_many_nodes },
		{ "test_conf_duplicate_node", test_conf_duplicate_node },
		{ "test_conf_no_node_for_host", test_conf_no_node_for_host },
		{ "test_conf_bad_address", test_conf_bad_address },
		{ "test_conf_tls_all_or_none", test_conf_tls_all_or_none },
		{ "test_conf_bad_export_listen", test_conf_bad_export_listen },
		{ "test_conf_meta_disk", test_conf_meta_disk },
		{ "test_conf_syntax_error", test_conf_syntax_error },
		{ "test_conf_key_outside_section", test_conf_key_outside_section },
		{ "test_conf_line_too_long", test_conf_line_too_long },
		{ "test_conf_long_path_accepted", test_conf_long_path_accepted },
		{ "test_conf_unreadable_file", test_conf_unreadable_file },
		{ "test_conf_never_opens_disk", test_conf_never_opens_disk },
		{ "test_conf_dump_defaults", test_conf_dump_defaults },
		{ "test_conf_dump_round_trip", test_conf_dump_round_trip },
	};

	return cu_run("conf", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
