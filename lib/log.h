/* log: the one logging macro family.  One line per event on stderr. */
#ifndef BLKMIRROR_LOG_H
#define BLKMIRROR_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the lowest level printed.  Not thread safe: call at start-up. */
void log_set_level(enum log_level lvl);
/* Parses "debug|info|warn|error"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* Prefix printed before every line, e.g. "mirrord[r0]".  Copied. */
void log_set_ident(const char *ident);
int log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define LOG_INFO(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define LOG_WARN(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define LOG_ERROR(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* Invariants that must hold in every build; logs and aborts. */
#define VERIFY(x) do { if (!(x)) log_verify_failed(#x, __FILE__, __LINE__); } while (0)
void log_verify_failed(const char *expr, const char *file, int line)
	__attribute__((noreturn));

#endif
