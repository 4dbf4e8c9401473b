#include "daemon/frontend.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/export.h"
#include "daemon/resource.h"
#include "lib/log.h"

static int
fe_export_open(struct res *r, int *resumed, char *err, size_t len)
{
	*resumed = 0;
	return export_open(r, err, len);
}

static int
fe_export_activate(struct res *r, char *err, size_t len)
{
	(void)r;
	(void)err;
	(void)len;
	return 0;	/* connections opened from now on are read-write */
}

/* The export stays; what must be gone are clients that can write. */
static int
fe_export_deactivate(struct res *r, char *err, size_t len)
{
	int writers;

	/* Checked and closed under the lock the export takes to count a new
	 * writer, so none can slip in between. */
	pthread_mutex_lock(&r->lock);
	writers = atomic_load(&r->writers);
	if (writers == 0)
		atomic_store(&r->writable, 0);
	pthread_mutex_unlock(&r->lock);
	if (writers > 0) {
		snprintf(err, len, "device is open for writing (%d %s): close it first", writers,
			 writers == 1 ? "writer" : "writers");
		return -EBUSY;
	}
	return 0;
}

static void
fe_export_close(struct res *r)
{
	export_close(r);
}

static const struct fe_ops fe_export = {
	.name = "export",
	.open = fe_export_open,
	.activate = fe_export_activate,
	.deactivate = fe_export_deactivate,
	.close = fe_export_close,
};

const struct fe_ops *
fe_for(const struct res *r)
{
	switch (r->conf.frontend) {
	case CONF_FE_EXPORT:
		return &fe_export;
	case CONF_FE_UBLK:
		return &fe_ublk_ops;
	case CONF_FE_NBD:
		return &fe_nbd_ops;
	default:
		return NULL;	/* not built yet: mirrord refuses the configuration */
	}
}

static int
fe_link_path(const struct res *r, const char *dev, char *path, size_t len)
{
	if (strncmp(dev, "/dev/", 5) != 0)
		return -1;	/* an NBD export: no device node */
	snprintf(path, len, "%s/%s", FE_LINK_DIR, r->conf.name);
	return 0;
}

void
fe_link_add(const struct res *r)
{
	char path[600], tmp[640];

	if (fe_link_path(r, r->device, path, sizeof(path)))
		return;
	if (mkdir(FE_LINK_DIR, 0755) && errno != EEXIST) {
		LOG_WARN("cannot create %s: %s", FE_LINK_DIR, strerror(errno));
		return;
	}
	/* Replaced in one step: a reader never finds the name missing. */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	unlink(tmp);
	if (symlink(r->device, tmp) || rename(tmp, path)) {
		LOG_WARN("cannot link %s to %s: %s", path, r->device, strerror(errno));
		unlink(tmp);
		return;
	}
	LOG_INFO("%s -> %s", path, r->device);
}

void
fe_link_del(const struct res *r, const char *dev)
{
	char path[600], target[512];
	ssize_t n;

	if (fe_link_path(r, dev, path, sizeof(path)))
		return;
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return;
	target[n] = '\0';
	if (strcmp(target, dev) == 0 && unlink(path) && errno != ENOENT)
		LOG_WARN("cannot remove %s: %s", path, strerror(errno));
}
