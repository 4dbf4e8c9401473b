/* Unit tests for resume_decide() (daemon/resume.c): when a restarted
 * primary's held device may serve again. */
#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"

#include "daemon/resume.h"

/* Connected, in sync, peer secondary: the case where resuming is safe. */
static struct rsm_state
connected(void)
{
	struct rsm_state s = { .role = RSM_SECONDARY, .disk = RSM_D_UPTODATE,
			       .conn = RSM_C_CONNECTED, .repl = RSM_R_ESTABLISHED };

	return s;
}

static enum resume_verdict
decide(const struct rsm_state *s, int known, int primary)
{
	const char *why = NULL;
	enum resume_verdict v = resume_decide(s, known, primary, &why);

	CU_ASSERT_PTR_NOT_NULL(why);
	return v;
}

static void
test_resume_in_sync_with_secondary_peer_resumes(void)
{
	struct rsm_state s = connected();

	CU_ASSERT_EQUAL(decide(&s, 1, 0), RESUME_YES);
}

static void
test_resume_sync_source_resumes(void)
{
	struct rsm_state s = connected();

	/* A crashed primary at the peer's generation (gen.c row 33). */
	s.repl = RSM_R_SYNCSOURCE;
	CU_ASSERT_EQUAL(decide(&s, 1, 0), RESUME_YES);
}

static void
test_resume_waits_until_connected(void)
{
	struct rsm_state s = connected();

	s.conn = RSM_C_STANDALONE;
	s.repl = RSM_R_OFF;
	CU_ASSERT_EQUAL(decide(&s, 0, 0), RESUME_WAIT);
	s.conn = RSM_C_CONNECTING;
	CU_ASSERT_EQUAL(decide(&s, 0, 0), RESUME_WAIT);
	/* Connected, but no state exchanged on this connection yet. */
	s = connected();
	CU_ASSERT_EQUAL(decide(&s, 0, 0), RESUME_WAIT);
}

static void
test_resume_refused_when_peer_primary(void)
{
	struct rsm_state s = connected();

	CU_ASSERT_EQUAL(decide(&s, 1, 1), RESUME_NO);
}

static void
test_resume_refused_when_sync_target(void)
{
	struct rsm_state s = connected();

	/* The peer went on without this node (gen.c row 40). */
	s.repl = RSM_R_SYNCTARGET;
	s.disk = RSM_D_INCONSISTENT;
	CU_ASSERT_EQUAL(decide(&s, 1, 0), RESUME_NO);
	s = connected();
	s.disk = RSM_D_OUTDATED;
	CU_ASSERT_EQUAL(decide(&s, 1, 0), RESUME_NO);
	s = connected();
	s.repl = RSM_R_BEHIND;
	CU_ASSERT_EQUAL(decide(&s, 1, 0), RESUME_NO);
}

static void
test_resume_refused_on_split_brain(void)
{
	struct rsm_state s = connected();

	s.conn = RSM_C_SPLITBRAIN;
	s.repl = RSM_R_OFF;
	CU_ASSERT_EQUAL(decide(&s, 0, 0), RESUME_NO);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_resume_in_sync_with_secondary_peer_resumes",
		  test_resume_in_sync_with_secondary_peer_resumes },
		{ "test_resume_sync_source_resumes", test_resume_sync_source_resumes },
		{ "test_resume_waits_until_connected", test_resume_waits_until_connected },
		{ "test_resume_refused_when_peer_primary", test_resume_refused_when_peer_primary },
		{ "test_resume_refused_when_sync_target", test_resume_refused_when_sync_target },
		{ "test_resume_refused_on_split_brain", test_resume_refused_on_split_brain },
	};

	return cu_run("resume", NULL, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
