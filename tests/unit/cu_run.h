/* cu_run: the main() every CUnit suite here shares.  One suite, its tests
 * in a table; exit status 1 when any assertion, test or suite set-up
 * failed, or CUnit itself did. */
#ifndef BLKMIRROR_CU_RUN_H
#define BLKMIRROR_CU_RUN_H

#include <CUnit/Basic.h>
#include <stddef.h>

struct cu_test {
	const char *name;
	CU_TestFunc fn;
};

static inline int
cu_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc clean,
       const struct cu_test *tests, size_t n)
{
	unsigned failed = 1;
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite(suite, init, clean);
	for (size_t i = 0; s && i < n; i++)
		if (!CU_add_test(s, tests[i].name, tests[i].fn))
			s = NULL;
	if (s) {
		CU_basic_set_mode(CU_BRM_VERBOSE);
		if (CU_basic_run_tests() == CUE_SUCCESS)
			failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
				 CU_get_number_of_suites_failed();
	}
	CU_cleanup_registry();
	return failed ? 1 : 0;
}

#endif
