/* libFuzzer target: the configuration parser (daemon/conf.c) and its
 * documented round trip: the dump of a configuration that loads is itself
 * a configuration that loads and dumps the same (mirrord --check --dump,
 * blkmirror.conf(5)); a failure aborts, which libFuzzer reports.
 *
 * Seam: the input (after the first byte) is the file, in a memfd read
 * back through /proc/self/fd/N; the dump goes to a second memfd, loaded
 * the same way.  The first byte picks the loader: bit 0 conf_load with the
 * node "alpha" (as mirrord -n alpha), else conf_load_resource with no node
 * (as mirrorctl). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "tests/fuzz/fuzz.h"

#define MAX_IN (64 * 1024)

static struct conf c1, c2;

static int
load(int fd, int with_node, struct conf *c, char *err, size_t errlen)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return with_node ? conf_load(path, "alpha", c, err, errlen)
			 : conf_load_resource(path, NULL, c, err, errlen);
}

/* The dump of c, in a fresh memfd rewound to its start; its text in *text. */
static int
dump(const struct conf *c, char **text, size_t *len)
{
	FILE *f = open_memstream(text, len);
	int fd;

	if (!f)
		abort();
	conf_dump(c, f);
	fclose(f);
	fd = memfd_create("fuzz-conf-dump", MFD_CLOEXEC);
	if (fd < 0 || write(fd, *text, *len) != (ssize_t)*len)
		abort();
	return fd;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], *d1 = NULL, *d2 = NULL;
	size_t n1 = 0, n2 = 0;
	int fd, fd1, fd2, with_node, rc;

	if (size < 1 || size > MAX_IN)
		return 0;
	with_node = data[0] & 1;
	fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
	if (fd < 0 || (size > 1 && write(fd, data + 1, size - 1) != (ssize_t)(size - 1)))
		abort();
	rc = load(fd, with_node, &c1, err, sizeof(err));
	close(fd);
	FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	FUZZ_CHECK(rc == 0 || err[0]);	/* every refusal says why */
	if (rc != 0)
		return 0;
	fd1 = dump(&c1, &d1, &n1);
	rc = load(fd1, with_node, &c2, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "the dump does not load: %s\n--- dump\n%s", err, d1);
		FUZZ_CHECK(rc == 0);
	}
	fd2 = dump(&c2, &d2, &n2);
	if (n1 != n2 || memcmp(d1, d2, n1) != 0) {
		fprintf(stderr, "--- first dump\n%s--- dump of the reload\n%s", d1, d2);
		FUZZ_CHECK(!"the dump round trip changed the configuration");
	}
	close(fd1);
	close(fd2);
	free(d1);
	free(d2);
	return 0;
}
