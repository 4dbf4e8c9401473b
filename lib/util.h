/* util: small helpers shared by every layer. */
#ifndef BLKMIRROR_UTIL_H
#define BLKMIRROR_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* Parses "4096", "4K", "16M", "1G", "2T" (powers of 1024) into *out.
 * Returns 0, or -EINVAL for anything else (empty, junk, overflow). */
int util_parse_size(const char *s, uint64_t *out);
/* Parses a non-negative decimal integer no larger than max. */
int util_parse_uint(const char *s, uint64_t max, uint64_t *out);
/* Formats one error line into err (if any) and returns rc: lets error
 * paths read "return util_fail(err, len, -EINVAL, "...", ...);". */
int util_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t util_now_ns(void);
uint64_t util_now_ms(void);
/* Formats bytes as "1.5 GiB" into buf. */
const char *util_fmt_bytes(uint64_t bytes, char *buf, size_t len);
/* Full-length pread/pwrite on blocking fds; 0 or -errno (-EIO on EOF). */
int util_pread_full(int fd, void *buf, size_t len, uint64_t off);
int util_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Full-length read/write on blocking sockets; 0 or -errno (-ECONNRESET on EOF). */
int util_read_full(int fd, void *buf, size_t len);
int util_write_full(int fd, const void *buf, size_t len);

#endif
