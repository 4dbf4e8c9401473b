#include "daemon/frontend.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>

#include "daemon/export.h"
#include "daemon/resource.h"

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
