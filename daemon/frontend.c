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
	int writers = atomic_load(&r->writers);

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
	default:
		return NULL;	/* not built yet: mirrord refuses the configuration */
	}
}
