/* Shared by the libFuzzer targets in tests/fuzz/: a check that is a crash
 * libFuzzer reports (with the input) when a documented property fails. */
#ifndef BLKMIRROR_FUZZ_H
#define BLKMIRROR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                          \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,    \
				__LINE__, #cond);                                 \
			abort();                                                  \
		}                                                                 \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A thread's body: reads the socket *(int *)arg until EOF, so that what a
 * server under test sends never fills the socket and blocks it. */
static inline void *
fuzz_drain(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

#endif
