/* px_tls: TLS 1.3 with mutual certificates; blocking on the socket for the
 * handshake and the meta link, detached on memory BIOs for the data links.
 * The contract and the io_uring recipe are in px_tls.h.
 *
 * OpenSSL keeps its errors in a per-thread queue: every SSL call here is
 * preceded by ERR_clear_error() so that SSL_get_error() and the reason we
 * report describe that call, not an older one.  errno is cleared too, so
 * that SSL_ERROR_SYSCALL with errno 0 reliably means EOF. */
#include "proto/px_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/util.h"

struct px_tls_ctx {
	SSL_CTX *ssl_ctx;
};

struct px_tls {
	SSL *ssl;
	int detached;
	BIO *rbio;                  /* detached: ciphertext in; owned by ssl */
	BIO *wbio;                  /* detached: ciphertext out; owned by ssl */
	unsigned char *stage;       /* PX_TLS_RECORD_MAX: small iovecs gathered into one record */
	char expect[PX_NAME_MAX];   /* the peer's node name, for messages */
	char names[160];            /* the names of a peer certificate refused for them */
};

/* The first OpenSSL error of the failed call as "library: reason", for a
 * message: the first is the cause ("bad base64 decode"), later ones only
 * say who noticed ("PEM lib"). */
static const char *
tls_why(char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *lib = ERR_lib_error_string(e);
	const char *reason = ERR_reason_error_string(e);

	if (!e)
		snprintf(buf, len, "no detail from OpenSSL");
	else if (reason)
		snprintf(buf, len, "%s%s%s", lib ? lib : "", lib ? ": " : "", reason);
	else
		ERR_error_string_n(e, buf, len);
	return buf;
}

/* ---- the peer's name ---- */

/* Appends ", LABELVALUE" to buf, printable ASCII only: the value comes
 * from the peer's certificate and ends up in a log line. */
static void
tls_name_add(char *buf, size_t len, const char *label, const ASN1_STRING *s)
{
	const unsigned char *d = ASN1_STRING_get0_data(s);
	int dl = ASN1_STRING_length(s);
	size_t n = strlen(buf);
	int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", label);

	if (w < 0 || (size_t)w >= len - n)
		return;
	n += (size_t)w;
	for (int i = 0; i < dl && n + 1 < len; i++)
		buf[n++] = d[i] >= 0x20 && d[i] < 0x7f ? (char)d[i] : '?';
	buf[n] = '\0';
}

/* "CN=gamma, DNS:gamma.example": the names X509_check_host looked at. */
static void
tls_cert_names(X509 *x, char *buf, size_t len)
{
	X509_NAME *subj = X509_get_subject_name(x);
	GENERAL_NAMES *alt = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int i = -1;

	buf[0] = '\0';
	while (subj && (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0) {
		X509_NAME_ENTRY *cn = X509_NAME_get_entry(subj, i);

		tls_name_add(buf, len, "CN=", X509_NAME_ENTRY_get_data(cn));
	}
	for (i = 0; i < sk_GENERAL_NAME_num(alt); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(alt, i);

		if (g->type == GEN_DNS)
			tls_name_add(buf, len, "DNS:", g->d.dNSName);
	}
	GENERAL_NAMES_free(alt);
	if (!buf[0])
		snprintf(buf, len, "no name");
}

/* Called by OpenSSL for each check of the peer's chain; it never changes
 * a verdict.  After a failed handshake the server keeps no client
 * certificate, so the names a certificate refused for its name carries
 * are kept here, while it is at hand, for the message. */
static int
tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct px_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
	X509 *x = X509_STORE_CTX_get_current_cert(xs);

	if (!ok && t && x && X509_STORE_CTX_get_error(xs) == X509_V_ERR_HOSTNAME_MISMATCH)
		tls_cert_names(x, t->names, sizeof(t->names));
	return ok;
}

/* The peer's certificate must carry its node name: as the CN or a DNS
 * subjectAltName (ALWAYS_CHECK_SUBJECT: the CN counts even next to
 * subjectAltNames), exactly (no wildcards: node names are not domains). */
static int
tls_set_peer(struct px_tls *t, const char *peer, char *err, size_t errlen)
{
	if (!peer || !*peer || strlen(peer) >= sizeof(t->expect))
		return util_fail(err, errlen, -EINVAL, "no usable peer node name for TLS");
	snprintf(t->expect, sizeof(t->expect), "%s", peer);
	SSL_set_app_data(t->ssl, t);
	SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_WILDCARDS |
			  X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT);
	if (SSL_set1_host(t->ssl, peer) != 1)
		return util_fail(err, errlen, -ENOMEM, "no memory for a TLS session");
	return 0;
}

int
px_tls_binding(struct px_tls *t, unsigned char out[PX_TLS_BINDING_LEN])
{
	static const char label[] = PX_TLS_BINDING_LABEL;

	ERR_clear_error();
	if (SSL_export_keying_material(t->ssl, out, PX_TLS_BINDING_LEN, label, sizeof(label) - 1,
				       NULL, 0, 0) != 1)
		return -EPROTO;
	return 0;
}

/* ---- context ---- */

/* Opening the file ourselves gives the errno OpenSSL would hide behind
 * "system lib"; O_NONBLOCK keeps a FIFO from hanging start-up. */
static int
tls_file_check(const char *what, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (!path || !*path)
		return util_fail(err, errlen, -EINVAL, "no TLS %s file given", what);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return util_fail(err, errlen, -errno, "TLS %s file %s: %s", what, path,
				strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return util_fail(err, errlen, rc, "TLS %s file %s: %s", what, path, strerror(-rc));
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return util_fail(err, errlen, -EINVAL, "TLS %s file %s is not a regular file", what,
				path);
	return 0;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse it. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int
tls_load_key(SSL_CTX *sc, const char *cert, const char *key, char *err, size_t errlen)
{
	char why[160];
	EVP_PKEY *pk;
	BIO *b;
	int ok;

	ERR_clear_error();
	b = BIO_new_file(key, "r");
	if (!b)
		return util_fail(err, errlen, -EINVAL, "TLS key file %s: %s", key,
				tls_why(why, sizeof(why)));
	pk = PEM_read_bio_PrivateKey(b, NULL, tls_no_passphrase, NULL);
	BIO_free(b);
	if (!pk)
		return util_fail(err, errlen, -EINVAL,
				"TLS key file %s: no usable PEM private key, or encrypted (%s)",
				key, tls_why(why, sizeof(why)));
	/* The key parsed, so a failure here is the pair not matching. */
	ERR_clear_error();
	ok = SSL_CTX_use_PrivateKey(sc, pk) == 1 && SSL_CTX_check_private_key(sc) == 1;
	EVP_PKEY_free(pk);
	if (!ok)
		return util_fail(err, errlen, -EINVAL,
				"TLS key file %s does not match certificate file %s (%s)", key,
				cert, tls_why(why, sizeof(why)));
	return 0;
}

static int
tls_ctx_setup(SSL_CTX *sc, const char *cert, const char *key, const char *ca, char *err,
	      size_t errlen)
{
	char why[160];

	if (SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION) != 1)
		return util_fail(err, errlen, -EPROTO, "this OpenSSL cannot do TLS 1.3 (%s)",
				tls_why(why, sizeof(why)));
	/* Nothing may arrive after the handshake: a ticket would sit in the
	 * socket when px_tls_detach hands it to io_uring. */
	SSL_CTX_set_num_tickets(sc, 0);
	SSL_CTX_set_options(sc, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
	/* Read exactly one record at a time from the socket, so nothing the
	 * peer sent after the handshake is swallowed before detaching. */
	SSL_CTX_set_read_ahead(sc, 0);
	SSL_CTX_set_mode(sc, SSL_MODE_AUTO_RETRY);
	SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_cb);
	SSL_CTX_set_default_passwd_cb(sc, tls_no_passphrase);

	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1)
		return util_fail(err, errlen, -EINVAL,
				"TLS certificate file %s: no usable PEM certificate (%s)", cert,
				tls_why(why, sizeof(why)));
	if (tls_load_key(sc, cert, key, err, errlen))
		return -EINVAL;
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(sc, ca, NULL) != 1)
		return util_fail(err, errlen, -EINVAL,
				"TLS CA file %s: no usable PEM certificate (%s)", ca,
				tls_why(why, sizeof(why)));
	return 0;
}

int
px_tls_ctx_new(struct px_tls_ctx **out, const char *cert, const char *key, const char *ca,
	       char *err, size_t errlen)
{
	struct px_tls_ctx *c;
	char why[160];
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	rc = tls_file_check("certificate", cert, err, errlen);
	if (!rc)
		rc = tls_file_check("key", key, err, errlen);
	if (!rc)
		rc = tls_file_check("CA", ca, err, errlen);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return util_fail(err, errlen, -ENOMEM, "no memory for a TLS context");
	ERR_clear_error();
	c->ssl_ctx = SSL_CTX_new(TLS_method());
	if (!c->ssl_ctx) {
		free(c);
		return util_fail(err, errlen, -ENOMEM, "cannot create a TLS context (%s)",
				tls_why(why, sizeof(why)));
	}
	rc = tls_ctx_setup(c->ssl_ctx, cert, key, ca, err, errlen);
	if (rc) {
		px_tls_ctx_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
px_tls_ctx_free(struct px_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

/* ---- handshake ---- */

/* Alerts a peer sends when it refuses our certificate. */
static int
tls_cert_alert(int reason)
{
	switch (reason) {
	case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
	case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
	case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
	case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
	case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
		return 1;
	default:
		return 0;
	}
}

/* Maps a failed SSL call of the handshake (ret, with errno saved right
 * after it) to -errno and a message; -EINTR means "call again". */
static int
tls_hs_error(struct px_tls *t, int ret, int saved_errno, char *err, size_t errlen)
{
	long vr = SSL_get_verify_result(t->ssl);
	unsigned long e;
	char why[160];
	int reason;

	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		/* A blocking socket only "wants" when a signal or its timeout
		 * interrupted it. */
		if (saved_errno == EINTR)
			return -EINTR;
		return util_fail(err, errlen, -ETIMEDOUT, "TLS handshake timed out");
	case SSL_ERROR_ZERO_RETURN:
		return util_fail(err, errlen, -ECONNRESET,
				"peer closed the connection during the TLS handshake");
	case SSL_ERROR_SYSCALL:
		if (saved_errno == 0 || saved_errno == EPIPE || saved_errno == ECONNRESET)
			return util_fail(err, errlen, -ECONNRESET,
					"peer closed the connection during the TLS handshake");
		return util_fail(err, errlen, -saved_errno, "TLS handshake: %s",
				strerror(saved_errno));
	case SSL_ERROR_SSL:
		break;
	default:
		return util_fail(err, errlen, -EPROTO, "TLS handshake failed (%s)",
				tls_why(why, sizeof(why)));
	}
	if (vr == X509_V_ERR_HOSTNAME_MISMATCH)
		return util_fail(err, errlen, -EACCES, "peer certificate refused: expected node "
				 "%s, certificate is for %s", t->expect,
				 t->names[0] ? t->names : "another name");
	if (vr != X509_V_OK)
		return util_fail(err, errlen, -EACCES, "peer certificate refused: %s",
				X509_verify_cert_error_string(vr));
	e = ERR_peek_last_error();
	reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
	if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
		return util_fail(err, errlen, -ECONNRESET,
				"peer closed the connection during the TLS handshake");
	if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
		return util_fail(err, errlen, -EACCES, "peer presented no TLS certificate");
	if (tls_cert_alert(reason))
		return util_fail(err, errlen, -EACCES, "peer refused our TLS certificate (%s)",
				tls_why(why, sizeof(why)));
	return util_fail(err, errlen, -EPROTO, "TLS handshake failed (%s)",
			tls_why(why, sizeof(why)));
}

static int
tls_hs_run(struct px_tls *t, int is_client, char *err, size_t errlen)
{
	int ret, saved, rc;

	do {
		ERR_clear_error();
		errno = 0;
		ret = is_client ? SSL_connect(t->ssl) : SSL_accept(t->ssl);
		saved = errno;
		if (ret == 1)
			return 0;
		rc = tls_hs_error(t, ret, saved, err, errlen);
	} while (rc == -EINTR);
	return rc;
}

/* The server's verdict on the client's certificate (see px_tls.h). */
static int
tls_hs_confirm(struct px_tls *t, int is_client, char *err, size_t errlen)
{
	unsigned char b = PX_TLS_ACCEPTED;
	size_t n = 0;
	int ret, saved, rc;

	do {
		ERR_clear_error();
		errno = 0;
		if (is_client)
			ret = SSL_read_ex(t->ssl, &b, 1, &n);
		else
			ret = SSL_write_ex(t->ssl, &b, 1, &n);
		saved = errno;
		if (ret == 1)
			break;
		rc = tls_hs_error(t, ret, saved, err, errlen);
		if (rc != -EINTR)
			return rc;
	} while (1);
	if (n != 1 || b != PX_TLS_ACCEPTED)
		return util_fail(err, errlen, -EPROTO,
				"peer sent something else than the TLS acceptance byte");
	return 0;
}

int
px_tls_handshake(struct px_tls_ctx *ctx, int fd, int is_client, const char *peer,
		 struct px_tls **out, char *err, size_t errlen)
{
	struct px_tls *t;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	t = calloc(1, sizeof(*t));
	if (!t)
		return util_fail(err, errlen, -ENOMEM, "no memory for a TLS session");
	t->stage = malloc(PX_TLS_RECORD_MAX);
	t->ssl = SSL_new(ctx->ssl_ctx);
	if (!t->stage || !t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
		px_tls_free(t);
		return util_fail(err, errlen, -ENOMEM, "no memory for a TLS session");
	}
	rc = tls_set_peer(t, peer, err, errlen);
	if (!rc)
		rc = tls_hs_run(t, is_client, err, errlen);
	if (!rc)
		rc = tls_hs_confirm(t, is_client, err, errlen);
	if (rc) {
		px_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void
px_tls_free(struct px_tls *t)
{
	if (!t)
		return;
	/* SSL_free frees the BIOs; the socket BIO does not close fd. */
	SSL_free(t->ssl);
	free(t->stage);
	free(t);
}

/* ---- mode (a): blocking ---- */

/* Maps a failed SSL_read_ex/SSL_write_ex on the socket to -errno;
 * -EINTR means "call again with the same arguments". */
static int
tls_io_error(struct px_tls *t, int saved_errno)
{
	unsigned long e;

	switch (SSL_get_error(t->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return saved_errno == EINTR ? -EINTR : -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		return saved_errno ? -saved_errno : -ECONNRESET;
	case SSL_ERROR_SSL:
		e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
			return -ECONNRESET;
		return -EPROTO;
	default:
		return -EPROTO;
	}
}

int
px_tls_read_full(struct px_tls *t, void *buf, size_t len)
{
	unsigned char *p = buf;
	int saved, rc;

	if (t->detached)
		return -EINVAL;
	while (len) {
		size_t n = 0;

		ERR_clear_error();
		errno = 0;
		if (SSL_read_ex(t->ssl, p, len, &n) == 1) {
			p += n;
			len -= n;
			continue;
		}
		saved = errno;
		rc = tls_io_error(t, saved);
		if (rc != -EINTR)
			return rc;
	}
	return 0;
}

int
px_tls_write_full(struct px_tls *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	int saved, rc;

	if (t->detached)
		return -EINVAL;
	while (len) {
		size_t chunk = MIN(len, (size_t)INT_MAX), n = 0;

		ERR_clear_error();
		errno = 0;
		if (SSL_write_ex(t->ssl, p, chunk, &n) == 1) {
			p += n;
			len -= n;
			continue;
		}
		/* A retried SSL_write must repeat the same buffer and length,
		 * which the loop does: p and len did not move. */
		saved = errno;
		rc = tls_io_error(t, saved);
		if (rc != -EINTR)
			return rc;
	}
	return 0;
}

/* Copies up to cap bytes from iov[*i] + *off on into dst, advancing the
 * position past empty entries; returns the bytes copied. */
static size_t
tls_gather(unsigned char *dst, size_t cap, const struct iovec *iov, int iovcnt, int *i,
	   size_t *off)
{
	size_t n = 0;

	while (*i < iovcnt && n < cap) {
		size_t avail = iov[*i].iov_len - *off;
		size_t take = MIN(avail, cap - n);

		memcpy(dst + n, (const char *)iov[*i].iov_base + *off, take);
		n += take;
		*off += take;
		if (*off == iov[*i].iov_len) {
			(*i)++;
			*off = 0;
		}
	}
	return n;
}

int
px_tls_writev_full(struct px_tls *t, const struct iovec *iov, int iovcnt)
{
	size_t off = 0;
	int i = 0, rc;

	if (t->detached || iovcnt < 0)
		return -EINVAL;
	/* Gathered into whole records: a small message is one record, not a
	 * 24-byte header record and a payload record. */
	while (i < iovcnt) {
		size_t n = tls_gather(t->stage, PX_TLS_RECORD_MAX, iov, iovcnt, &i, &off);

		if (n == 0)
			break;
		rc = px_tls_write_full(t, t->stage, n);
		if (rc)
			return rc;
	}
	return 0;
}

int
px_tls_pending(const struct px_tls *t)
{
	return SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl);
}

int
px_sock_read_full(struct px_sock *s, void *buf, size_t len)
{
	if (s->tls)
		return px_tls_read_full(s->tls, buf, len);
	return util_read_full(s->fd, buf, len);
}

int
px_sock_write_full(struct px_sock *s, const void *buf, size_t len)
{
	if (s->tls)
		return px_tls_write_full(s->tls, buf, len);
	return util_write_full(s->fd, buf, len);
}

int
px_sock_pending(const struct px_sock *s)
{
	return s->tls ? px_tls_pending(s->tls) : 0;
}

/* ---- mode (b): detached ---- */

int
px_tls_detach(struct px_tls *t)
{
	BIO *rbio, *wbio;

	if (t->detached)
		return -EINVAL;
	if (!SSL_is_init_finished(t->ssl) || SSL_get_shutdown(t->ssl))
		return -EPROTO;
	/* What the session already read from the socket would never reach
	 * the io_uring side: the stream would be cut. */
	if (SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl))
		return -EPROTO;
	rbio = BIO_new(BIO_s_mem());
	wbio = BIO_new(BIO_s_mem());
	if (!rbio || !wbio) {
		BIO_free(rbio);
		BIO_free(wbio);
		return -ENOMEM;
	}
	/* An empty rbio means "more ciphertext needed", not EOF. */
	BIO_set_mem_eof_return(rbio, -1);
	BIO_set_mem_eof_return(wbio, -1);
	/* Frees the socket BIO (which does not close the fd). */
	SSL_set_bio(t->ssl, rbio, wbio);
	t->rbio = rbio;
	t->wbio = wbio;
	t->detached = 1;
	return 0;
}

/* Moves sealed ciphertext from the write BIO to out. */
static void
tls_drain(struct px_tls *t, unsigned char *out, size_t outcap, size_t *produced)
{
	while (*produced < outcap) {
		size_t want = MIN(outcap - *produced, (size_t)INT_MAX);
		int n = BIO_read(t->wbio, out + *produced, (int)want);

		if (n <= 0)
			break;
		*produced += (size_t)n;
	}
}

size_t
px_tls_seal_pending(const struct px_tls *t)
{
	return t->detached ? BIO_ctrl_pending(t->wbio) : 0;
}

int
px_tls_seal(struct px_tls *t, const struct iovec *iov, int iovcnt, size_t skip, void *out,
	    size_t outcap, size_t *consumed, size_t *produced)
{
	unsigned char *o = out;
	size_t off;
	int i = 0;

	*consumed = 0;
	*produced = 0;
	if (!t->detached || iovcnt < 0)
		return -EINVAL;
	/* Leftover ciphertext goes first: it precedes anything sealed now. */
	tls_drain(t, o, outcap, produced);
	while (i < iovcnt && skip >= iov[i].iov_len) {
		skip -= iov[i].iov_len;
		i++;
	}
	off = skip;
	/* One record per round, only while the whole record fits: a record
	 * is at most PX_TLS_OVERHEAD larger than its plaintext. */
	while (i < iovcnt && outcap - *produced > PX_TLS_OVERHEAD &&
	       BIO_ctrl_pending(t->wbio) == 0) {
		size_t max = MIN(outcap - *produced - PX_TLS_OVERHEAD, PX_TLS_RECORD_MAX);
		size_t avail = iov[i].iov_len - off, n, w = 0;
		const void *src;

		if (avail >= max || i == iovcnt - 1) {
			/* Straight from the caller's buffer, no copy. */
			n = MIN(avail, max);
			src = (const char *)iov[i].iov_base + off;
			off += n;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		} else {
			n = tls_gather(t->stage, max, iov, iovcnt, &i, &off);
			src = t->stage;
		}
		if (n == 0)
			continue;
		ERR_clear_error();
		if (SSL_write_ex(t->ssl, src, n, &w) != 1 || w != n)
			return -EPROTO;
		*consumed += n;
		tls_drain(t, o, outcap, produced);
	}
	return 0;
}

/* Moves ciphertext from in to the read BIO, keeping at most
 * PX_TLS_OPEN_BUF inside; returns the bytes moved. */
static size_t
tls_feed(struct px_tls *t, const unsigned char *in, size_t inlen)
{
	size_t held = BIO_ctrl_pending(t->rbio), n;

	if (held >= PX_TLS_OPEN_BUF || inlen == 0)
		return 0;
	n = MIN(inlen, PX_TLS_OPEN_BUF - held);
	if (BIO_write(t->rbio, in, (int)n) != (int)n)
		return 0;
	return n;
}

int
px_tls_open(struct px_tls *t, const void *in, size_t inlen, size_t *in_consumed, void *out,
	    size_t outcap, size_t *produced)
{
	const unsigned char *src = in;
	unsigned char *o = out;

	*in_consumed = 0;
	*produced = 0;
	if (!t->detached)
		return -EINVAL;
	*in_consumed += tls_feed(t, src, inlen);
	while (*produced < outcap) {
		size_t n = 0, fed;

		ERR_clear_error();
		if (SSL_read_ex(t->ssl, o + *produced, outcap - *produced, &n) == 1) {
			*produced += n;
			continue;
		}
		switch (SSL_get_error(t->ssl, 0)) {
		case SSL_ERROR_WANT_READ:
			/* The read BIO holds less than a record: add more. */
			fed = tls_feed(t, src + *in_consumed, inlen - *in_consumed);
			if (fed == 0)
				return 0;
			*in_consumed += fed;
			break;
		case SSL_ERROR_ZERO_RETURN:
			/* Plaintext before the close_notify first; the next call
			 * reports the close. */
			return *produced ? 0 : -ECONNRESET;
		default:
			return -EPROTO;
		}
	}
	return 0;
}
