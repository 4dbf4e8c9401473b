#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum log_level log_min = LOG_LVL_INFO;
static char log_ident[64] = "blkmirror";

void
log_set_level(enum log_level lvl)
{
	log_min = lvl;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = { "debug", "info", "warn", "error" };

	for (unsigned i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void
log_set_ident(const char *ident)
{
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

int
log_enabled(enum log_level lvl)
{
	return lvl >= log_min;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *tag[] = { "debug", "info", "warn", "error" };
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (lvl < log_min)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_ident, tag[lvl]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines from several threads do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void
log_verify_failed(const char *expr, const char *file, int line)
{
	log_msg(LOG_LVL_ERROR, "VERIFY failed: %s at %s:%d", expr, file, line);
	abort();
}
