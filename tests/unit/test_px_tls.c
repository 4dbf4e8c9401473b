/* Unit tests for proto/px_tls.c: contexts and their file errors, the TLS
 * handshake between two real sides over a socketpair (one thread each),
 * certificates from the wrong CA in both directions, blocking I/O, the
 * HMAC handshake inside TLS, and detached mode (seal, send, recv in small
 * pieces, open).  The PKI is made at start-up with the OpenSSL API in a
 * mkdtemp directory: a CA and two node certificates, and a rogue CA with
 * a certificate of its own; also, from the cluster CA, a certificate for a
 * node "gamma" (a valid certificate for the wrong node) and one for beta
 * that carries the name only as a DNS subjectAltName. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "tests/unit/cu_run.h"
#include <CUnit/CUnit.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/util.h"
#include "proto/px.h"
#include "proto/px_tls.h"

#define SECRET "correct horse battery staple"
#define MIB    (1u << 20)

static char dir[64];
static char path_ca[128], path_a_crt[128], path_a_key[128], path_b_crt[128], path_b_key[128];
static char path_rogue_crt[128], path_rogue_key[128], path_garbage[128], path_missing[128];
static char path_g_crt[128], path_g_key[128], path_bsan_crt[128], path_bsan_key[128];
/* a and b: nodes of the cluster CA; rogue: signed by another CA, trusts ours;
 * gamma: the cluster CA's, for a node neither expects; bsan: beta's name
 * in a DNS subjectAltName only. */
static struct px_tls_ctx *ctx_a, *ctx_b, *ctx_rogue, *ctx_gamma, *ctx_bsan;

/* ---- a throwaway PKI ---- */

static int
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	int ok;

	if (!ext)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A certificate for key, signed by issuer (self-signed when NULL), with
 * a subjectAltName when san is not NULL ("DNS:beta"). */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *issuer, EVP_PKEY *issuer_key,
	  int ca, long serial)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX v3;
	int bad = 0;

	if (!x || !name)
		goto fail;
	bad |= !X509_set_version(x, X509_VERSION_3);
	bad |= !ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	bad |= !X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	bad |= !X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	bad |= !X509_set_pubkey(x, key);
	bad |= !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
					   -1, -1, 0);
	bad |= !X509_set_subject_name(x, name);
	bad |= !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	bad |= add_ext(x, &v3, NID_basic_constraints,
		       ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	bad |= add_ext(x, &v3, NID_key_usage,
		       ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	bad |= add_ext(x, &v3, NID_subject_key_identifier, "hash");
	if (!ca)
		bad |= add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
	if (san)
		bad |= add_ext(x, &v3, NID_subject_alt_name, san);
	bad |= !X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256());
	if (bad)
		goto fail;
	X509_NAME_free(name);
	return x;
fail:
	X509_NAME_free(name);
	X509_free(x);
	return NULL;
}

static int
write_cert(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -1;
	ok = PEM_write_X509(f, x);
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int
write_key(const char *path, EVP_PKEY *k)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	int ok;

	if (!f)
		return -1;
	ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* A node key and certificate signed by (ca, ca_key), written to crt/key. */
static int
make_node(const char *cn, const char *san, X509 *ca, EVP_PKEY *ca_key, long serial,
	  const char *crt, const char *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = k ? make_cert(k, cn, san, ca, ca_key, 0, serial) : NULL;
	int rc = x && write_cert(crt, x) == 0 && write_key(key, k) == 0 ? 0 : -1;

	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

static void
set_path(char *buf, const char *name)
{
	snprintf(buf, 128, "%s/%s", dir, name);
}

static int
make_pki(void)
{
	EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *ca2_key = EVP_EC_gen("P-256");
	X509 *ca = ca_key ? make_cert(ca_key, "blkmirror test CA", NULL, NULL, NULL, 1, 1) : NULL;
	X509 *ca2 = ca2_key ? make_cert(ca2_key, "rogue CA", NULL, NULL, NULL, 1, 1) : NULL;
	FILE *f;
	int rc = -1;

	set_path(path_ca, "ca.pem");
	set_path(path_a_crt, "alpha.crt");
	set_path(path_a_key, "alpha.key");
	set_path(path_b_crt, "beta.crt");
	set_path(path_b_key, "beta.key");
	set_path(path_rogue_crt, "rogue.crt");
	set_path(path_rogue_key, "rogue.key");
	set_path(path_garbage, "garbage.pem");
	set_path(path_missing, "missing.pem");
	set_path(path_g_crt, "gamma.crt");
	set_path(path_g_key, "gamma.key");
	set_path(path_bsan_crt, "beta-san.crt");
	set_path(path_bsan_key, "beta-san.key");
	if (!ca || !ca2 || write_cert(path_ca, ca))
		goto out;
	if (make_node("alpha", NULL, ca, ca_key, 2, path_a_crt, path_a_key) ||
	    make_node("beta", NULL, ca, ca_key, 3, path_b_crt, path_b_key) ||
	    /* Same name as a real node: only the CA tells them apart. */
	    make_node("alpha", NULL, ca2, ca2_key, 2, path_rogue_crt, path_rogue_key) ||
	    make_node("gamma", NULL, ca, ca_key, 4, path_g_crt, path_g_key) ||
	    make_node("node two", "DNS:beta", ca, ca_key, 5, path_bsan_crt, path_bsan_key))
		goto out;
	f = fopen(path_garbage, "w");
	if (!f)
		goto out;
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all !!!\n-----END CERTIFICATE-----\n",
	      f);
	if (fclose(f))
		goto out;
	rc = 0;
out:
	X509_free(ca);
	X509_free(ca2);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(ca2_key);
	return rc;
}

static int
suite_init(void)
{
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/test_px_tls.XXXXXX");
	if (!mkdtemp(dir) || make_pki())
		return -1;
	if (px_tls_ctx_new(&ctx_a, path_a_crt, path_a_key, path_ca, err, sizeof(err)) ||
	    px_tls_ctx_new(&ctx_b, path_b_crt, path_b_key, path_ca, err, sizeof(err)) ||
	    px_tls_ctx_new(&ctx_rogue, path_rogue_crt, path_rogue_key, path_ca, err,
			   sizeof(err)) ||
	    px_tls_ctx_new(&ctx_gamma, path_g_crt, path_g_key, path_ca, err, sizeof(err)) ||
	    px_tls_ctx_new(&ctx_bsan, path_bsan_crt, path_bsan_key, path_ca, err, sizeof(err))) {
		fprintf(stderr, "suite init: %s\n", err);
		return -1;
	}
	return 0;
}

static int
suite_clean(void)
{
	const char *files[] = { path_ca, path_a_crt, path_a_key, path_b_crt, path_b_key,
				path_rogue_crt, path_rogue_key, path_garbage, path_g_crt,
				path_g_key, path_bsan_crt, path_bsan_key };

	px_tls_ctx_free(ctx_a);
	px_tls_ctx_free(ctx_b);
	px_tls_ctx_free(ctx_rogue);
	px_tls_ctx_free(ctx_gamma);
	px_tls_ctx_free(ctx_bsan);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++)
		unlink(files[i]);
	rmdir(dir);
	return 0;
}

/* ---- two sides over a socketpair ---- */

static void
pair_timeout(int sv[2], long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* A bug shows as a failed test, not a hung run. */
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(sv[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
}

static void
pair(int sv[2])
{
	pair_timeout(sv, 10000);
}

struct side {
	int fd;
	int client;
	struct px_tls_ctx *ctx;
	struct px_tls *tls;
	const char *expect;         /* the name the peer's certificate must carry */
	int rc;                     /* px_tls_handshake */
	char err[256];
	/* optional, after a good TLS handshake: the HMAC handshake */
	int hmac;
	struct px_hs_params p;
	struct px_hs_result res;
	int hs_rc;
	char hs_err[256];
	pthread_t th;
};

static void
side_init(struct side *s, int client, struct px_tls_ctx *ctx)
{
	memset(s, 0, sizeof(*s));
	s->client = client;
	s->ctx = ctx;
	s->expect = client ? "beta" : "alpha";
	s->rc = s->hs_rc = 1;
	s->p.initiator = client;
	s->p.node = client ? "alpha" : "beta";
	s->p.peer = client ? "beta" : "alpha";
	s->p.resource = "r0";
	s->p.secret = SECRET;
	s->p.secret_len = strlen(SECRET);
	s->p.link = client ? PX_LINK_META : 0;
}

/* A side that fails closes at once: that close is how the other side
 * learns of it.  A side that succeeds leaves fd and tls to the test. */
static void *
side_run(void *arg)
{
	struct side *s = arg;
	struct px_sock ps;

	s->rc = px_tls_handshake(s->ctx, s->fd, s->client, s->expect, &s->tls, s->err,
				 sizeof(s->err));
	if (!s->rc && s->hmac) {
		ps.fd = s->fd;
		ps.tls = s->tls;
		s->hs_rc = px_handshake_s(&ps, &s->p, &s->res, s->hs_err, sizeof(s->hs_err));
		if (s->hs_rc) {
			px_tls_free(s->tls);
			s->tls = NULL;
		}
	}
	if (s->rc || (s->hmac && s->hs_rc)) {
		close(s->fd);
		s->fd = -1;
	}
	return NULL;
}

static void
run_pair(struct side *c, struct side *l)
{
	int sv[2];

	pair(sv);
	c->fd = sv[0];
	l->fd = sv[1];
	CU_ASSERT_FATAL(pthread_create(&c->th, NULL, side_run, c) == 0);
	CU_ASSERT_FATAL(pthread_create(&l->th, NULL, side_run, l) == 0);
	pthread_join(c->th, NULL);
	pthread_join(l->th, NULL);
}

static void
side_done(struct side *s)
{
	px_tls_free(s->tls);
	s->tls = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void
fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(rand_r(&seed) >> 7);
}

/* ---- contexts ---- */

static void
expect_ctx_fail(const char *cert, const char *key, const char *ca, int want_rc,
		const char *named, const char *also)
{
	struct px_tls_ctx *c = (struct px_tls_ctx *)&c;
	char err[512] = "";
	int rc;

	rc = px_tls_ctx_new(&c, cert, key, ca, err, sizeof(err));
	CU_ASSERT_EQUAL(rc, want_rc);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, named));
	if (also)
		CU_ASSERT_PTR_NOT_NULL(strstr(err, also));
	if (!strstr(err, named) || (also && !strstr(err, also)))
		fprintf(stderr, "\n  unexpected message: %s\n", err);
	px_tls_ctx_free(rc ? NULL : c);
}

static void
test_px_tls_ctx_files(void)
{
	expect_ctx_fail(path_missing, path_a_key, path_ca, -ENOENT, path_missing, "certificate");
	expect_ctx_fail(path_a_crt, path_missing, path_ca, -ENOENT, path_missing, "key");
	expect_ctx_fail(path_a_crt, path_a_key, path_missing, -ENOENT, path_missing, "CA");
	expect_ctx_fail(path_garbage, path_a_key, path_ca, -EINVAL, path_garbage, "certificate");
	expect_ctx_fail(path_a_crt, path_garbage, path_ca, -EINVAL, path_garbage, "key");
	expect_ctx_fail(path_a_crt, path_a_key, path_garbage, -EINVAL, path_garbage, "CA");
	/* A key file holding a certificate, a certificate file holding a key. */
	expect_ctx_fail(path_a_crt, path_a_crt, path_ca, -EINVAL, path_a_crt, "key");
	expect_ctx_fail(path_a_key, path_a_key, path_ca, -EINVAL, path_a_key, "certificate");
	expect_ctx_fail(path_a_crt, path_b_key, path_ca, -EINVAL, path_b_key, "does not match");
	expect_ctx_fail(dir, path_a_key, path_ca, -EINVAL, dir, "regular file");
	expect_ctx_fail(path_a_crt, path_a_key, "", -EINVAL, "CA", NULL);
}

/* ---- handshake ---- */

static void
check_channel(struct side *w, struct side *r)
{
	unsigned char out[100], in[100];

	fill(out, sizeof(out), 7);
	CU_ASSERT_EQUAL(px_tls_write_full(w->tls, out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(px_tls_read_full(r->tls, in, sizeof(in)), 0);
	CU_ASSERT(memcmp(in, out, sizeof(out)) == 0);
}

static void
test_px_tls_handshake_ok(void)
{
	struct side c, l;

	/* alpha connects to beta, then beta to alpha. */
	for (int round = 0; round < 2; round++) {
		side_init(&c, 1, round ? ctx_b : ctx_a);
		side_init(&l, 0, round ? ctx_a : ctx_b);
		c.expect = round ? "alpha" : "beta";
		l.expect = round ? "beta" : "alpha";
		run_pair(&c, &l);
		CU_ASSERT_EQUAL(c.rc, 0);
		CU_ASSERT_EQUAL(l.rc, 0);
		if (c.rc || l.rc)
			fprintf(stderr, "\n  client: %s\n  server: %s\n", c.err, l.err);
		if (!c.rc && !l.rc) {
			check_channel(&c, &l);
			check_channel(&l, &c);
			CU_ASSERT_EQUAL(px_tls_pending(c.tls), 0);
			CU_ASSERT_EQUAL(px_tls_pending(l.tls), 0);
		}
		side_done(&c);
		side_done(&l);
	}
}

static void
test_px_tls_client_wrong_ca(void)
{
	struct side c, l;

	side_init(&c, 1, ctx_rogue);
	side_init(&l, 0, ctx_b);
	run_pair(&c, &l);
	/* The server verifies and refuses; the client hears it before any
	 * px message thanks to the acceptance byte. */
	CU_ASSERT_EQUAL(l.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.err, "unable to get local issuer certificate"));
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err, "refused our TLS certificate"));
	CU_ASSERT_PTR_NULL(c.tls);
	CU_ASSERT_PTR_NULL(l.tls);
	side_done(&c);
	side_done(&l);
}

static void
test_px_tls_server_wrong_ca(void)
{
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_rogue);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err, "unable to get local issuer certificate"));
	CU_ASSERT_EQUAL(l.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.err, "refused our TLS certificate"));
	side_done(&c);
	side_done(&l);
}

/* A certificate from the cluster CA proves membership, not identity: a
 * node whose certificate names another node is refused, and the message
 * says which name was expected and which names the certificate carries. */
static void
expect_name_refused(const char *err, const char *want, const char *got)
{
	char a[64], b[64];

	snprintf(a, sizeof(a), "expected node %s", want);
	snprintf(b, sizeof(b), "CN=%s", got);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, a));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, b));
	if (!strstr(err, a) || !strstr(err, b))
		fprintf(stderr, "\n  unexpected message: %s\n", err);
}

static void
test_px_tls_server_wrong_name(void)
{
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_gamma);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	expect_name_refused(c.err, "beta", "gamma");
	CU_ASSERT_EQUAL(l.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.err, "refused our TLS certificate"));
	CU_ASSERT_PTR_NULL(c.tls);
	CU_ASSERT_PTR_NULL(l.tls);
	side_done(&c);
	side_done(&l);
}

static void
test_px_tls_client_wrong_name(void)
{
	struct side c, l;

	side_init(&c, 1, ctx_gamma);
	side_init(&l, 0, ctx_b);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(l.rc, -EACCES);
	expect_name_refused(l.err, "alpha", "gamma");
	CU_ASSERT_EQUAL(c.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(c.err, "refused our TLS certificate"));
	CU_ASSERT_PTR_NULL(c.tls);
	CU_ASSERT_PTR_NULL(l.tls);
	side_done(&c);
	side_done(&l);
}

/* The node name may be in a DNS subjectAltName instead of the CN. */
static void
test_px_tls_name_in_san(void)
{
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_bsan);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	if (c.rc || l.rc)
		fprintf(stderr, "\n  client: %s\n  server: %s\n", c.err, l.err);
	side_done(&c);
	side_done(&l);
}

/* One side alone against raw bytes from the test. */
static void
garbage_against(int client)
{
	static const unsigned char junk[64] = "\x00\x01\x02 this is not a TLS record, nope.";
	unsigned char sink[4096];
	struct side s;
	int sv[2];

	side_init(&s, client, ctx_a);
	pair(sv);
	s.fd = sv[1];
	CU_ASSERT_FATAL(pthread_create(&s.th, NULL, side_run, &s) == 0);
	if (client)	/* let the ClientHello go by, answer with junk */
		CU_ASSERT(read(sv[0], sink, sizeof(sink)) > 0);
	CU_ASSERT_EQUAL(write(sv[0], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	pthread_join(s.th, NULL);
	CU_ASSERT_EQUAL(s.rc, -EPROTO);
	CU_ASSERT_PTR_NULL(s.tls);
	CU_ASSERT(strlen(s.err) > 0);
	close(sv[0]);
	side_done(&s);
}

static void
test_px_tls_handshake_garbage(void)
{
	garbage_against(0);
	garbage_against(1);
}

static void
test_px_tls_handshake_timeout_and_close(void)
{
	struct px_tls *t = NULL;
	char err[256];
	int sv[2];

	pair_timeout(sv, 200);
	CU_ASSERT_EQUAL(px_tls_handshake(ctx_a, sv[1], 0, "beta", &t, err, sizeof(err)),
			-ETIMEDOUT);
	CU_ASSERT_PTR_NULL(t);
	close(sv[0]);
	CU_ASSERT_EQUAL(px_tls_handshake(ctx_a, sv[1], 0, "beta", &t, err, sizeof(err)),
			-ECONNRESET);
	close(sv[1]);
}

/* ---- blocking I/O ---- */

struct writer {
	struct px_tls *t;
	const unsigned char *buf;
	size_t len;
	int rc;
	pthread_t th;
};

static void *
writer_run(void *arg)
{
	struct writer *w = arg;

	w->rc = px_tls_write_full(w->t, w->buf, w->len);
	return NULL;
}

static void
test_px_tls_read_write_full(void)
{
	unsigned char *out = malloc(MIB + 3), *in = malloc(MIB + 3), tiny;
	struct writer w = { 0 };
	struct side c, l;
	size_t got = 0;
	unsigned seed = 1;

	CU_ASSERT_FATAL(out && in);
	fill(out, MIB + 3, 11);
	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	run_pair(&c, &l);
	CU_ASSERT_FATAL(c.rc == 0 && l.rc == 0);
	/* 1 MiB does not fit the socket: the writer needs its own thread. */
	w.t = c.tls;
	w.buf = out;
	w.len = MIB + 3;
	CU_ASSERT_FATAL(pthread_create(&w.th, NULL, writer_run, &w) == 0);
	while (got < MIB + 3) {
		/* MIN evaluates its arguments twice: draw first. */
		size_t r = 1 + (size_t)rand_r(&seed) % 40000, n = MIN(MIB + 3 - got, r);
		int rc = px_tls_read_full(l.tls, in + got, n);

		CU_ASSERT_EQUAL(rc, 0);
		if (rc)
			break;
		got += n;
	}
	pthread_join(w.th, NULL);
	CU_ASSERT_EQUAL(w.rc, 0);
	CU_ASSERT_EQUAL(got, MIB + 3);
	CU_ASSERT(memcmp(in, out, MIB + 3) == 0);
	/* The peer going away is -ECONNRESET, as on a plain socket. */
	side_done(&c);
	CU_ASSERT_EQUAL(px_tls_read_full(l.tls, &tiny, 1), -ECONNRESET);
	side_done(&l);
	free(out);
	free(in);
}

/* ---- the HMAC handshake inside TLS ---- */

static void
test_px_tls_px_handshake_s(void)
{
	unsigned char out[sizeof(struct px_bitmap) + PX_BITMAP_CHUNK];
	unsigned char in[sizeof(out)];
	struct px_sock cs, ls;
	struct px_msg m;
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	c.hmac = l.hmac = 1;
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(c.hs_rc, 0);
	CU_ASSERT_EQUAL(l.hs_rc, 0);
	if (c.hs_rc || l.hs_rc)
		fprintf(stderr, "\n  connector: %s\n  listener: %s\n", c.hs_err, l.hs_err);
	CU_ASSERT_EQUAL(c.res.session, l.res.session);
	CU_ASSERT_EQUAL(l.res.link, PX_LINK_META);
	if (!c.hs_rc && !l.hs_rc) {
		/* Meta link traffic through px_send_s/px_recv_s. */
		cs.fd = c.fd;
		cs.tls = c.tls;
		ls.fd = l.fd;
		ls.tls = l.tls;
		px_bitmap_encode(out, 64);
		fill(out + sizeof(struct px_bitmap), PX_BITMAP_CHUNK, 3);
		CU_ASSERT_EQUAL(px_send_s(&cs, PX_BITMAP, 0, 9, out, sizeof(out)), 0);
		CU_ASSERT_EQUAL(px_send_s(&cs, PX_PING, 0, 0, NULL, 0), 0);
		CU_ASSERT_EQUAL(px_recv_s(&ls, &m, in, sizeof(in), 4096, NULL, 0), 0);
		CU_ASSERT_EQUAL(m.type, PX_BITMAP);
		CU_ASSERT_EQUAL(m.id, 9);
		CU_ASSERT(memcmp(in, out, sizeof(out)) == 0);
		/* Each message ends a record: nothing of the next is decrypted. */
		CU_ASSERT_EQUAL(px_sock_pending(&ls), 0);
		CU_ASSERT_EQUAL(px_recv_s(&ls, &m, in, sizeof(in), 4096, NULL, 0), 0);
		CU_ASSERT_EQUAL(m.type, PX_PING);
		CU_ASSERT_EQUAL(px_send_s(&ls, PX_PING_ACK, 0, 0, NULL, 0), 0);
		CU_ASSERT_EQUAL(px_recv_s(&cs, &m, in, sizeof(in), 4096, NULL, 0), 0);
		CU_ASSERT_EQUAL(m.type, PX_PING_ACK);
		CU_ASSERT_EQUAL(px_send_s(&cs, PX_PING, 0, 0, in, 1), -EINVAL);
	}
	side_done(&c);
	side_done(&l);

	/* A wrong secret is still refused, on both sides, inside TLS. */
	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	c.hmac = l.hmac = 1;
	c.p.secret = "not the secret at all, really";
	c.p.secret_len = strlen(c.p.secret);
	run_pair(&c, &l);
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(c.hs_rc, -EACCES);
	CU_ASSERT_EQUAL(l.hs_rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.hs_err, "wrong secret"));
	side_done(&c);
	side_done(&l);
}

/* The exporter the HMAC handshake mixes in: the same at both ends of one
 * session, different in the next. */
static void
test_px_tls_binding(void)
{
	unsigned char b[2][2][PX_TLS_BINDING_LEN];
	struct side c, l;

	for (int round = 0; round < 2; round++) {
		side_init(&c, 1, ctx_a);
		side_init(&l, 0, ctx_b);
		run_pair(&c, &l);
		CU_ASSERT_FATAL(c.rc == 0 && l.rc == 0);
		CU_ASSERT_EQUAL(px_tls_binding(c.tls, b[round][0]), 0);
		CU_ASSERT_EQUAL(px_tls_binding(l.tls, b[round][1]), 0);
		CU_ASSERT(memcmp(b[round][0], b[round][1], PX_TLS_BINDING_LEN) == 0);
		side_done(&c);
		side_done(&l);
	}
	CU_ASSERT(memcmp(b[0][0], b[1][0], PX_TLS_BINDING_LEN) != 0);
}

/* ---- a relay between two TLS sessions ---- */

/* The man in the middle: certificates both ends accept (beta's towards
 * alpha, alpha's towards beta, as if stolen) but not the secret.  It ends
 * one TLS session from each node and copies the HMAC handshake across,
 * message by message, in the order the handshake sends them. */
struct relay {
	struct side to_c;           /* TLS server for the connector */
	struct side to_l;           /* TLS client of the listener */
	int relayed;                /* messages copied */
	pthread_t th;
};

static void *
relay_run(void *arg)
{
	/* HELLO(c) HELLO(l) CHALLENGE(l) AUTH(c) CHALLENGE(c) AUTH_OK AUTH(l) AUTH_OK */
	static const int from_c[] = { 1, 0, 0, 1, 1, 0, 0, 1 };
	struct relay *r = arg;
	struct px_sock cs, ls;
	unsigned char buf[512];
	struct px_msg m;

	side_run(&r->to_c);
	side_run(&r->to_l);
	cs = (struct px_sock){ .fd = r->to_c.fd, .tls = r->to_c.tls };
	ls = (struct px_sock){ .fd = r->to_l.fd, .tls = r->to_l.tls };
	for (size_t i = 0; !r->to_c.rc && !r->to_l.rc && i < ARRAY_SIZE(from_c); i++) {
		struct px_sock *from = from_c[i] ? &cs : &ls, *to = from_c[i] ? &ls : &cs;

		if (px_recv_s(from, &m, buf, sizeof(buf), 0, NULL, 0) ||
		    px_send_s(to, m.type, m.flags, m.id, buf, m.len))
			break;
		r->relayed++;
	}
	/* Closing both ends is how either node learns the relay gave up. */
	side_done(&r->to_c);
	side_done(&r->to_l);
	return NULL;
}

static void
test_px_tls_relay_refused(void)
{
	struct side c, l;
	struct relay r;
	int a[2], b[2];

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	c.hmac = l.hmac = 1;
	memset(&r, 0, sizeof(r));
	side_init(&r.to_c, 0, ctx_b);
	side_init(&r.to_l, 1, ctx_a);
	pair(a);
	pair(b);
	c.fd = a[0];
	r.to_c.fd = a[1];
	r.to_l.fd = b[0];
	l.fd = b[1];
	CU_ASSERT_FATAL(pthread_create(&c.th, NULL, side_run, &c) == 0);
	CU_ASSERT_FATAL(pthread_create(&r.th, NULL, relay_run, &r) == 0);
	CU_ASSERT_FATAL(pthread_create(&l.th, NULL, side_run, &l) == 0);
	pthread_join(c.th, NULL);
	pthread_join(r.th, NULL);
	pthread_join(l.th, NULL);
	/* Both TLS sessions were fine; the AUTH made for one does not fit
	 * the other, so the listener refuses the relayed answer. */
	CU_ASSERT_EQUAL(c.rc, 0);
	CU_ASSERT_EQUAL(l.rc, 0);
	CU_ASSERT_EQUAL(r.relayed, 5);
	CU_ASSERT_EQUAL(l.hs_rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(l.hs_err, "failed authentication"));
	CU_ASSERT_EQUAL(c.hs_rc, -EACCES);
	if (l.hs_rc != -EACCES || c.hs_rc != -EACCES)
		fprintf(stderr, "\n  relayed %d; connector %d: %s\n  listener %d: %s\n",
			r.relayed, c.hs_rc, c.hs_err, l.hs_rc, l.hs_err);
	side_done(&c);
	side_done(&l);
}

/* ---- detached mode ---- */

/* Two sides past TLS and the HMAC handshake, as a data link would be. */
static int
detached_pair(struct side *c, struct side *l)
{
	side_init(c, 1, ctx_a);
	side_init(l, 0, ctx_b);
	c->hmac = l->hmac = 1;
	run_pair(c, l);
	CU_ASSERT_EQUAL(c->hs_rc, 0);
	CU_ASSERT_EQUAL(l->hs_rc, 0);
	if (c->hs_rc || l->hs_rc)
		return -1;
	CU_ASSERT_EQUAL(px_tls_detach(c->tls), 0);
	CU_ASSERT_EQUAL(px_tls_detach(l->tls), 0);
	CU_ASSERT_EQUAL(px_tls_detach(l->tls), -EINVAL);
	/* The blocking calls are off limits now. */
	CU_ASSERT_EQUAL(px_tls_write_full(c->tls, "x", 1), -EINVAL);
	return 0;
}

struct sealer {
	struct px_tls *t;
	int fd;
	const struct iovec *iov;
	int iovcnt;
	size_t total;
	int rc;
	pthread_t th;
};

/* Seals into buffers of changing sizes and writes what each call made. */
static void *
sealer_run(void *arg)
{
	static const size_t caps[] = { PX_TLS_SEAL_MIN, 300, 70000, PX_TLS_SEAL_MIN + 1000, 4096 };
	struct sealer *s = arg;
	unsigned char *buf = malloc(70000);
	size_t done = 0;
	unsigned k = 0;

	s->rc = buf ? 0 : -ENOMEM;
	while (!s->rc && (done < s->total || px_tls_seal_pending(s->t))) {
		size_t cap = caps[k++ % ARRAY_SIZE(caps)], used, made;

		s->rc = px_tls_seal(s->t, s->iov, s->iovcnt, done, buf, cap, &used, &made);
		if (!s->rc && used == 0 && made == 0)
			s->rc = -EDEADLK;
		done += used;
		if (!s->rc)
			s->rc = util_write_full(s->fd, buf, made);
	}
	free(buf);
	return NULL;
}

/* Receives ciphertext in chunks of 1..777 bytes and opens it into plain,
 * with output windows of changing sizes, until want bytes came out. */
static int
recv_open(struct px_tls *t, int fd, unsigned char *plain, size_t want, unsigned seed)
{
	unsigned char cbuf[777];
	size_t got = 0;

	while (got < want) {
		ssize_t r = recv(fd, cbuf, 1 + (size_t)rand_r(&seed) % sizeof(cbuf), 0);
		size_t off = 0, used, made, cap;
		int rc;

		if (r <= 0)
			return r ? -errno : -ECONNRESET;
		do {
			cap = 1 + (size_t)rand_r(&seed) % 5000;
			cap = MIN(want - got, cap);
			rc = px_tls_open(t, cbuf + off, (size_t)r - off, &used, plain + got, cap,
					 &made);
			if (rc)
				return rc;
			off += used;
			got += made;
			/* Either all input was taken or the window is full. */
			if (off < (size_t)r && made < cap)
				return -EDEADLK;
		} while (off < (size_t)r || (made == cap && got < want));
	}
	return 0;
}

static void
test_px_tls_detached_stream(void)
{
	unsigned char hdr[PX_HDR_SIZE], tail7[7], mid[5000], *big = malloc(MIB);
	unsigned char *expect = malloc(MIB + 6000), *plain = malloc(MIB + 6000);
	unsigned char pong[5], back[5];
	struct iovec iov[6];
	struct sealer s = { 0 };
	struct side c, l;
	size_t total = 0, off = 0, used, made;
	int rc;

	CU_ASSERT_FATAL(big && expect && plain);
	if (detached_pair(&c, &l))
		goto out;
	px_hdr_encode(hdr, PX_WRITE, 0, MIB + 16, 5);
	fill(big, MIB, 21);
	fill(tail7, sizeof(tail7), 22);
	fill(mid, sizeof(mid), 23);
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	iov[1] = (struct iovec){ big, MIB };
	iov[2] = (struct iovec){ tail7, 0 };
	iov[3] = (struct iovec){ tail7, sizeof(tail7) };
	iov[4] = (struct iovec){ mid, sizeof(mid) };
	iov[5] = (struct iovec){ hdr, sizeof(hdr) };
	for (int i = 0; i < 6; i++) {
		memcpy(expect + total, iov[i].iov_base, iov[i].iov_len);
		total += iov[i].iov_len;
	}
	s.t = c.tls;
	s.fd = c.fd;
	s.iov = iov;
	s.iovcnt = 6;
	s.total = total;
	CU_ASSERT_FATAL(pthread_create(&s.th, NULL, sealer_run, &s) == 0);
	rc = recv_open(l.tls, l.fd, plain, total, 99);
	pthread_join(s.th, NULL);
	CU_ASSERT_EQUAL(s.rc, 0);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT(rc == 0 && memcmp(plain, expect, total) == 0);

	/* And back, on the same sessions: the links are full duplex. */
	memcpy(pong, "pong!", 5);
	iov[0] = (struct iovec){ pong, 5 };
	CU_ASSERT_EQUAL(px_tls_seal(l.tls, iov, 1, 0, plain, PX_TLS_SEAL_MIN, &used, &made), 0);
	CU_ASSERT_EQUAL(used, 5);
	CU_ASSERT(made > 5 && made <= 5 + PX_TLS_OVERHEAD);
	CU_ASSERT_EQUAL(util_write_full(l.fd, plain, made), 0);
	CU_ASSERT_EQUAL(recv_open(c.tls, c.fd, back, 5, 3), 0);
	CU_ASSERT(memcmp(back, pong, 5) == 0);

	/* skip past the end seals nothing; a buffer too small for any record
	 * takes nothing and loses nothing. */
	CU_ASSERT_EQUAL(px_tls_seal(l.tls, iov, 1, 5, plain, 100, &used, &made), 0);
	CU_ASSERT_EQUAL(used + made, 0);
	CU_ASSERT_EQUAL(px_tls_seal(l.tls, iov, 1, 0, plain, PX_TLS_OVERHEAD, &used, &made), 0);
	CU_ASSERT_EQUAL(used + made, 0);
	CU_ASSERT_EQUAL(px_tls_open(c.tls, NULL, 0, &off, plain, 100, &made), 0);
	CU_ASSERT_EQUAL(made, 0);
out:
	side_done(&c);
	side_done(&l);
	free(big);
	free(expect);
	free(plain);
}

static void
test_px_tls_detached_tamper(void)
{
	unsigned char msg[300], ct[300 + PX_TLS_SEAL_MIN], out[300];
	struct iovec iov = { msg, sizeof(msg) };
	size_t used, made, in_used, got;
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	c.hmac = l.hmac = 1;
	run_pair(&c, &l);
	CU_ASSERT_FATAL(c.hs_rc == 0 && l.hs_rc == 0);
	fill(msg, sizeof(msg), 5);
	/* As on a data link: one side detaches and sends before the other
	 * has detached.  The record waits in the socket, not in l's session,
	 * so l can still detach and then read it through recv. */
	CU_ASSERT_EQUAL(px_tls_detach(c.tls), 0);
	CU_ASSERT_EQUAL(px_tls_seal(c.tls, &iov, 1, 0, ct, sizeof(ct), &used, &made), 0);
	CU_ASSERT_EQUAL(used, sizeof(msg));
	CU_ASSERT_EQUAL(util_write_full(c.fd, ct, made), 0);
	CU_ASSERT_EQUAL(px_tls_detach(l.tls), 0);
	CU_ASSERT_EQUAL(recv_open(l.tls, l.fd, out, sizeof(out), 17), 0);
	CU_ASSERT(memcmp(out, msg, sizeof(msg)) == 0);
	/* In memory, untouched: opens. */
	CU_ASSERT_EQUAL(px_tls_seal(c.tls, &iov, 1, 0, ct, sizeof(ct), &used, &made), 0);
	CU_ASSERT_EQUAL(px_tls_open(l.tls, ct, made, &in_used, out, sizeof(out), &got), 0);
	CU_ASSERT_EQUAL(in_used, made);
	CU_ASSERT_EQUAL(got, sizeof(msg));
	CU_ASSERT(memcmp(out, msg, sizeof(msg)) == 0);
	/* One flipped bit in the body of the next record: refused. */
	CU_ASSERT_EQUAL(px_tls_seal(c.tls, &iov, 1, 0, ct, sizeof(ct), &used, &made), 0);
	CU_ASSERT_FATAL(made > 20);
	ct[made / 2] ^= 0x10;
	CU_ASSERT_EQUAL(px_tls_open(l.tls, ct, made, &in_used, out, sizeof(out), &got), -EPROTO);
	CU_ASSERT_EQUAL(got, 0);
	/* The session is dead after that. */
	CU_ASSERT_EQUAL(px_tls_open(l.tls, NULL, 0, &in_used, out, sizeof(out), &got), -EPROTO);
	side_done(&c);
	side_done(&l);
}

static void
test_px_tls_detach_refuses_buffered(void)
{
	unsigned char buf[100] = { 0 };
	struct side c, l;

	side_init(&c, 1, ctx_a);
	side_init(&l, 0, ctx_b);
	run_pair(&c, &l);
	CU_ASSERT_FATAL(c.rc == 0 && l.rc == 0);
	/* 90 bytes of a record already decrypted inside l would be lost. */
	CU_ASSERT_EQUAL(px_tls_write_full(c.tls, buf, sizeof(buf)), 0);
	CU_ASSERT_EQUAL(px_tls_read_full(l.tls, buf, 10), 0);
	CU_ASSERT_EQUAL(px_tls_pending(l.tls), 1);
	CU_ASSERT_EQUAL(px_tls_detach(l.tls), -EPROTO);
	CU_ASSERT_EQUAL(px_tls_detach(c.tls), 0);
	/* Not detached: seal and open are refused. */
	CU_ASSERT_EQUAL(px_tls_open(l.tls, buf, 1, &(size_t){ 0 }, buf, 1, &(size_t){ 0 }),
			-EINVAL);
	side_done(&c);
	side_done(&l);
}

int
main(void)
{
	static const struct cu_test tests[] = {
		{ "test_px_tls_ctx_files", test_px_tls_ctx_files },
		{ "test_px_tls_handshake_ok", test_px_tls_handshake_ok },
		{ "test_px_tls_client_wrong_ca", test_px_tls_client_wrong_ca },
		{ "test_px_tls_server_wrong_ca", test_px_tls_server_wrong_ca },
		{ "test_px_tls_server_wrong_name", test_px_tls_server_wrong_name },
		{ "test_px_tls_client_wrong_name", test_px_tls_client_wrong_name },
		{ "test_px_tls_name_in_san", test_px_tls_name_in_san },
		{ "test_px_tls_binding", test_px_tls_binding },
		{ "test_px_tls_relay_refused", test_px_tls_relay_refused },
		{ "test_px_tls_handshake_garbage", test_px_tls_handshake_garbage },
		{ "test_px_tls_handshake_timeout_and_close",
		  test_px_tls_handshake_timeout_and_close },
		{ "test_px_tls_read_write_full", test_px_tls_read_write_full },
		{ "test_px_tls_px_handshake_s", test_px_tls_px_handshake_s },
		{ "test_px_tls_detached_stream", test_px_tls_detached_stream },
		{ "test_px_tls_detached_tamper", test_px_tls_detached_tamper },
		{ "test_px_tls_detach_refuses_buffered", test_px_tls_detach_refuses_buffered },
	};

	/* A side that writes after the other closed must get EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cu_run("px_tls", suite_init, suite_clean, tests, sizeof(tests) / sizeof(tests[0]));
}
