/* mirrorctl: the control tool.  Talks to a running mirrord over its
 * control socket; create-md and show-md work on the disk directly (with the
 * daemon stopped).  See mirrorctl(8). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "daemon/bitmap.h"
#include "daemon/conf.h"
#include "daemon/meta.h"
#include "lib/util.h"

#define EXIT_REFUSED  1
#define EXIT_USAGE    2
#define EXIT_NODAEMON 3

struct opts {
	const char *config, *socket, *node;
	int json, force;
	uint64_t granularity;
	double timeout;
};

static struct conf cf;

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: mirrorctl [-c FILE [--node NAME] | --socket PATH] COMMAND [ARGS] [--json]\n"
		"commands:\n"
		"  create-md [--force] [--granularity SIZE]   write fresh metadata (daemon stopped)\n"
		"  show-md                                     print the on-disk metadata (daemon stopped)\n"
		"  status [--json]          events             promote [--force]     demote\n"
		"  connect   disconnect     invalidate [--force]  verify             discard-my-data\n"
		"  wait-sync [--timeout S]  wait-connect [--timeout S]  resume-io  outdate\n"
		"  attach\n");
}

static void
die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("mirrorctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void
load_conf(const struct opts *o)
{
	char err[512];

	if (!o->config)
		die(EXIT_USAGE, "this command needs the configuration: -c FILE");
	if (conf_load_resource(o->config, o->node, &cf, err, sizeof(err)))
		die(EXIT_USAGE, "%s", err);
}

static uint64_t
dev_size(int fd)
{
	struct stat st;
	uint64_t sz = 0;

	if (fstat(fd, &st) < 0)
		return 0;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			return 0;
		return sz;
	}
	return (uint64_t)st.st_size;
}

/* ---- commands on the disk itself ---- */

static int
cmd_create_md(const struct opts *o)
{
	struct meta_sb sb, old;
	uint64_t disk_sz, md_sz;
	int fd, md_fd, rc, internal;
	char why[512], b1[32];

	load_conf(o);
	internal = cf.meta_internal;
	fd = open(cf.disk, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_REFUSED, "cannot open disk %s: %s", cf.disk, strerror(errno));
	/* mirrord holds this lock while it runs. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		die(EXIT_REFUSED, "disk %s is in use (is mirrord running?)", cf.disk);
	disk_sz = dev_size(fd);
	md_fd = internal ? fd : open(cf.meta_disk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (md_fd < 0)
		die(EXIT_REFUSED, "cannot open meta-disk %s: %s", cf.meta_disk, strerror(errno));
	md_sz = internal ? disk_sz : dev_size(md_fd);
	rc = md_sz >= META_BLOCK ? meta_read_sb(md_fd, md_sz, internal, disk_sz, &old, why, sizeof(why))
				 : -ENOENT;
	if (rc != -ENOENT && !o->force)
		die(EXIT_REFUSED, "%s already has blkmirror metadata%s%s (use create-md --force "
		    "to overwrite it and lose the bitmap and generation identifiers)",
		    internal ? cf.disk : cf.meta_disk, rc ? ": " : "", rc ? why : "");
	if (!internal) {
		/* An external metadata file is sized to what the data needs. */
		struct meta_sb probe;
		if (meta_layout(&probe, disk_sz, 0, UINT64_MAX / 2, (uint32_t)o->granularity,
				__builtin_ctzll(cf.al_extent_size)) == 0) {
			uint64_t need = meta_md_bytes(probe.data_size, (uint32_t)o->granularity,
						      __builtin_ctzll(cf.al_extent_size));
			if (md_sz < need && ftruncate(md_fd, (off_t)need) == 0)
				md_sz = need;
		}
	}
	rc = meta_layout(&sb, disk_sz, internal, md_sz, (uint32_t)o->granularity,
			 __builtin_ctzll(cf.al_extent_size));
	if (rc == -ENOSPC)
		die(EXIT_REFUSED, "disk %s (%llu bytes) is too small for its metadata", cf.disk,
		    (unsigned long long)disk_sz);
	if (rc)
		die(EXIT_USAGE, "granularity %llu: must be a power of two from 4K to the "
		    "al-extent-size (%llu)", (unsigned long long)o->granularity,
		    (unsigned long long)cf.al_extent_size);
	rc = meta_create(md_fd, &sb);
	if (rc)
		die(EXIT_REFUSED, "writing metadata failed: %s", strerror(-rc));
	printf("created metadata on %s: %s of data, granularity %u, node uuid %016llx\n",
	       internal ? cf.disk : cf.meta_disk, util_fmt_bytes(sb.data_size, b1, sizeof(b1)),
	       sb.granularity, (unsigned long long)sb.node_uuid);
	return 0;
}

static json_object *
hex64(uint64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%016llx", (unsigned long long)v);
	return json_object_new_string(b);
}

/* Dirty ranges as the daemon will see them at its next start: the bitmap
 * plus every extent left in the activity map. */
static int
cmd_show_md(const struct opts *o)
{
	static const char *flag_names[] = { "consistent", "uptodate", "primary",
					    "crashed-primary", "peer-outdated", "just-created",
					    NULL /* not stored */, "local-changes", "verify-diff" };
	struct meta_sb sb;
	struct bm *bm, *act;
	uint64_t disk_sz, md_sz, nbits, next, per, oos;
	json_object *out, *flags, *gens, *hist, *ranges;
	char why[512];
	int fd, md_fd, rc, internal;

	load_conf(o);
	internal = cf.meta_internal;
	fd = open(cf.disk, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_REFUSED, "cannot open disk %s: %s", cf.disk, strerror(errno));
	disk_sz = dev_size(fd);
	md_fd = internal ? fd : open(cf.meta_disk, O_RDONLY | O_CLOEXEC);
	if (md_fd < 0)
		die(EXIT_REFUSED, "cannot open meta-disk %s: %s", cf.meta_disk, strerror(errno));
	md_sz = internal ? disk_sz : dev_size(md_fd);
	rc = meta_read_sb(md_fd, md_sz, internal, disk_sz, &sb, why, sizeof(why));
	if (rc)
		die(EXIT_REFUSED, "%s: %s", cf.disk, why);
	nbits = (sb.data_size + sb.granularity - 1) / sb.granularity;
	per = (1ull << sb.al_extent_shift) / sb.granularity;
	if (bm_new(&bm, nbits) ||
	    bm_new(&act, (sb.data_size + (1ull << sb.al_extent_shift) - 1) >> sb.al_extent_shift))
		die(EXIT_REFUSED, "out of memory");
	if (util_pread_full(md_fd, bm_data(bm), bm_bytes(bm), sb.bitmap_offset) ||
	    util_pread_full(md_fd, bm_data(act), bm_bytes(act), sb.actmap_offset))
		die(EXIT_REFUSED, "cannot read the bitmap: %s", strerror(errno));
	bm_loaded(bm);
	bm_loaded(act);
	out = json_object_new_object();
	json_object_object_add(out, "version", json_object_new_int((int)sb.version));
	json_object_object_add(out, "data_size", json_object_new_int64((int64_t)sb.data_size));
	json_object_object_add(out, "granularity", json_object_new_int64(sb.granularity));
	json_object_object_add(out, "al_extent_size",
			       json_object_new_int64((int64_t)(1ull << sb.al_extent_shift)));
	flags = json_object_new_array();
	for (unsigned i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (flag_names[i] && (sb.flags & (1u << i)))
			json_object_array_add(flags, json_object_new_string(flag_names[i]));
	json_object_object_add(out, "flags", flags);
	gens = json_object_new_object();
	json_object_object_add(gens, "current", hex64(sb.gen_current));
	json_object_object_add(gens, "bitmap", hex64(sb.gen_bitmap));
	hist = json_object_new_array();
	for (unsigned i = 0; i < META_HISTORY; i++)
		json_object_array_add(hist, hex64(sb.gen_history[i]));
	json_object_object_add(gens, "history", hist);
	json_object_object_add(out, "generations", gens);
	json_object_object_add(out, "active_extents", json_object_new_int64((int64_t)bm_count(act)));
	for (next = bm_next_set(act, 0); next < bm_nbits(act); next = bm_next_set(act, next + 1))
		bm_set_range(bm, next * per, per);
	oos = 0;
	ranges = json_object_new_array();
	for (next = bm_next_set(bm, 0); next < nbits;) {
		uint64_t end = bm_next_clear(bm, next);
		uint64_t off = next * sb.granularity;
		uint64_t len = MIN(end * sb.granularity, sb.data_size) - off;
		json_object *pair = json_object_new_array();

		json_object_array_add(pair, json_object_new_int64((int64_t)off));
		json_object_array_add(pair, json_object_new_int64((int64_t)len));
		json_object_array_add(ranges, pair);
		oos += len;
		next = end < nbits ? bm_next_set(bm, end) : nbits;
	}
	json_object_object_add(out, "out_of_sync_bytes", json_object_new_int64((int64_t)oos));
	json_object_object_add(out, "out_of_sync", ranges);
	puts(json_object_to_json_string_ext(out, (o->json ? JSON_C_TO_STRING_PLAIN
							  : JSON_C_TO_STRING_PRETTY) |
						     JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(out);
	bm_free(bm);
	bm_free(act);
	return 0;
}

/* ---- commands for the daemon ---- */

static int
ctl_connect(const struct opts *o)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path;
	int fd;

	if (o->socket) {
		path = o->socket;
	} else {
		load_conf(o);
		path = cf.control;
	}
	if (strlen(path) >= sizeof(sa.sun_path))
		die(EXIT_USAGE, "control socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(EXIT_NODAEMON, "no mirrord answers on %s: %s", path, strerror(errno));
	return fd;
}

/* Reads one line (without the newline) into a malloc'd string; NULL on EOF. */
static char *
read_line(FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);

	if (n <= 0) {
		free(line);
		return NULL;
	}
	if (line[n - 1] == '\n')
		line[n - 1] = '\0';
	return line;
}

static json_object *
request(int fd, FILE *in, json_object *req)
{
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	json_object *resp;
	char *line;

	if (util_write_full(fd, s, strlen(s)) || util_write_full(fd, "\n", 1))
		die(EXIT_NODAEMON, "control socket: %s", strerror(errno));
	line = read_line(in);
	if (!line)
		die(EXIT_NODAEMON, "the daemon closed the control connection without answering");
	resp = json_tokener_parse(line);
	free(line);
	if (!resp)
		die(EXIT_NODAEMON, "the daemon sent an answer that is not JSON");
	return resp;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return "-";
	return json_object_get_string(v);
}

static int64_t
jint(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static void
print_status_text(json_object *s)
{
	json_object *inf = NULL, *peer = NULL, *rs = NULL;
	char b1[32], b2[32], b3[32];

	json_object_object_get_ex(s, "inflight", &inf);
	json_object_object_get_ex(s, "peer", &peer);
	json_object_object_get_ex(s, "resync", &rs);
	printf("%s on %s: role %s, disk %s\n", jstr(s, "resource"), jstr(s, "node"),
	       jstr(s, "role"), jstr(s, "disk"));
	printf("  connection %s, replication %s, protocol %s\n", jstr(s, "connection"),
	       jstr(s, "replication"), jstr(s, "protocol"));
	printf("  size %s, out of sync %s\n",
	       util_fmt_bytes((uint64_t)jint(s, "size_bytes"), b1, sizeof(b1)),
	       util_fmt_bytes((uint64_t)jint(s, "out_of_sync_bytes"), b2, sizeof(b2)));
	if (rs && !json_object_is_type(rs, json_type_null)) {
		json_object *p = NULL;
		json_object_object_get_ex(rs, "done_percent", &p);
		printf("  resync %.1f%% done, %s/s, eta %llds\n", p ? json_object_get_double(p) : 0,
		       util_fmt_bytes((uint64_t)jint(rs, "bytes_per_sec"), b3, sizeof(b3)),
		       (long long)jint(rs, "eta_s"));
	}
	printf("  in flight: %lld requests, %s, oldest %lld ms\n", (long long)jint(inf, "requests"),
	       util_fmt_bytes((uint64_t)jint(inf, "bytes"), b3, sizeof(b3)),
	       (long long)jint(inf, "oldest_ms"));
	if (peer && !json_object_is_type(peer, json_type_null))
		printf("  peer %s: role %s, disk %s\n", jstr(peer, "node"), jstr(peer, "role"),
		       jstr(peer, "disk"));
	printf("  device %s\n", jstr(s, "device"));
}

static int
cmd_daemon(const struct opts *o, const char *cmd)
{
	json_object *req = json_object_new_object(), *resp, *okv, *st;
	int fd, ok;
	FILE *in;
	struct timeval tv = { .tv_sec = 30 };

	fd = ctl_connect(o);
	if (strcmp(cmd, "events") != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	in = fdopen(dup(fd), "r");
	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	if (o->force)
		json_object_object_add(req, "force", json_object_new_boolean(1));
	if (o->timeout > 0)
		json_object_object_add(req, "timeout", json_object_new_double(o->timeout));
	resp = request(fd, in, req);
	json_object_put(req);
	ok = json_object_object_get_ex(resp, "ok", &okv) && json_object_get_boolean(okv);
	if (!ok) {
		int code = (int)jint(resp, "code");
		fprintf(stderr, "mirrorctl: %s: %s\n", cmd, jstr(resp, "error"));
		json_object_put(resp);
		return code == EXIT_USAGE ? EXIT_USAGE : EXIT_REFUSED;
	}
	if (json_object_object_get_ex(resp, "warning", &st))
		fprintf(stderr, "mirrorctl: %s: warning: %s\n", cmd, json_object_get_string(st));
	if (strcmp(cmd, "status") == 0 && json_object_object_get_ex(resp, "status", &st)) {
		if (o->json)
			puts(json_object_to_json_string_ext(st, JSON_C_TO_STRING_PLAIN |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
		else
			print_status_text(st);
	} else if (strcmp(cmd, "events") == 0) {
		char *line;
		setvbuf(stdout, NULL, _IOLBF, 0);
		while ((line = read_line(in))) {
			puts(line);
			free(line);
		}
	}
	json_object_put(resp);
	fclose(in);
	close(fd);
	return 0;
}

/* Asks for status until cond holds: 0, or 1 on timeout.  Polling keeps the
 * daemon free of blocked control requests and works for any timeout. */
static int
wait_for_state(const struct opts *o, int sync)
{
	double deadline = o->timeout > 0 ? o->timeout : 0;
	uint64_t start = util_now_ms();

	for (;;) {
		json_object *req = json_object_new_object(), *resp, *st, *peer = NULL;
		int fd = ctl_connect(o), done;
		FILE *in = fdopen(dup(fd), "r");

		json_object_object_add(req, "cmd", json_object_new_string("status"));
		resp = request(fd, in, req);
		json_object_put(req);
		fclose(in);
		close(fd);
		if (!json_object_object_get_ex(resp, "status", &st))
			die(EXIT_NODAEMON, "the daemon sent no status");
		json_object_object_get_ex(st, "peer", &peer);
		done = strcmp(jstr(st, "connection"), "connected") == 0;
		if (sync)
			done = done && strcmp(jstr(st, "replication"), "established") == 0 &&
			       strcmp(jstr(st, "disk"), "uptodate") == 0 &&
			       strcmp(jstr(peer, "disk"), "uptodate") == 0 &&
			       jint(st, "out_of_sync_bytes") == 0;
		if (!done && strcmp(jstr(st, "connection"), "splitbrain") == 0) {
			json_object_put(resp);
			fprintf(stderr, "mirrorctl: split brain: the nodes will not sync by themselves\n");
			return EXIT_REFUSED;
		}
		json_object_put(resp);
		if (done)
			return 0;
		if (deadline > 0 && (double)(util_now_ms() - start) / 1000.0 >= deadline) {
			fprintf(stderr, "mirrorctl: %s: timed out after %.1f s\n",
				sync ? "wait-sync" : "wait-connect", deadline);
			return EXIT_REFUSED;
		}
		usleep(100 * 1000);
	}
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "node", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "force", no_argument, NULL, 'f' },
		{ "granularity", required_argument, NULL, 'g' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *daemon_cmds[] = { "status", "events", "promote", "demote", "connect",
					     "disconnect", "invalidate", "verify",
					     "discard-my-data", "resume-io", "outdate", "attach" };
	struct opts o = { .granularity = 4096 };
	const char *cmd;
	char *end;
	int opt;

	/* Options may come before or after the command. */
	while ((opt = getopt_long(argc, argv, "c:s:n:jfh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'c': o.config = optarg; break;
		case 's': o.socket = optarg; break;
		case 'n': o.node = optarg; break;
		case 'j': o.json = 1; break;
		case 'f': o.force = 1; break;
		case 'g':
			if (util_parse_size(optarg, &o.granularity))
				die(EXIT_USAGE, "--granularity '%s': expected a size like 4K", optarg);
			break;
		case 't':
			o.timeout = strtod(optarg, &end);
			if (*end || o.timeout <= 0)
				die(EXIT_USAGE, "--timeout '%s': expected seconds > 0", optarg);
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "create-md") == 0)
		return cmd_create_md(&o);
	if (strcmp(cmd, "show-md") == 0)
		return cmd_show_md(&o);
	if (strcmp(cmd, "wait-sync") == 0 || strcmp(cmd, "wait-connect") == 0)
		return wait_for_state(&o, cmd[5] == 's');
	for (size_t i = 0; i < ARRAY_SIZE(daemon_cmds); i++)
		if (strcmp(cmd, daemon_cmds[i]) == 0)
			return cmd_daemon(&o, cmd);
	fprintf(stderr, "mirrorctl: unknown command '%s'\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
