/* px_tls: optional TLS 1.3 on a replication link, with mutual certificate
 * authentication against one CA file.  The HMAC handshake (px_handshake_s)
 * still runs, inside the TLS channel: TLS proves the peer holds a key the
 * CA signed, the secret proves it belongs to this resource.
 *
 * Order on every link:
 *   connect/accept, set SO_RCVTIMEO/SO_SNDTIMEO
 *   px_tls_handshake(ctx, fd, is_client = we connected, &tls)
 *   px_handshake_s(&(struct px_sock){ fd, tls }, ...)
 *   meta link: px_send_s/px_recv_s on that px_sock, blocking (mode a)
 *   data link: px_tls_detach(tls), then px_tls_seal/px_tls_open around the
 *              io_uring send and recv (mode b, below)
 *
 * Why two modes: the data links do their socket I/O through io_uring on a
 * queue thread, and without kTLS (no CONFIG_TLS here, and Debian's OpenSSL
 * 3.0 has no ktls) OpenSSL cannot own those sockets.  After px_tls_detach
 * the session never touches the socket: it only turns plaintext into
 * ciphertext and back in memory.
 *
 * Wire: plain TLS 1.3 (no session tickets, so nothing arrives after the
 * handshake), then one application byte from the server, PX_TLS_ACCEPTED:
 * in TLS 1.3 the client finishes before the server has judged the client's
 * certificate, and this byte is how the client learns it was accepted
 * (else it gets the server's alert, -EACCES) before any px message.
 *
 * Identity: the peer's certificate must chain to the CA and carry the
 * peer's node name, as the subject CN or as a DNS subjectAltName (exact,
 * case-insensitive, no wildcards): a CA's signature proves membership of
 * whatever the CA signs, the name proves which node it is.  The HMAC
 * handshake then mixes px_tls_binding() into its answers, so that an
 * answer made inside one TLS session is worthless in any other: a relay
 * holding valid certificates but not the secret fails.
 *
 * Threads: a struct px_tls_ctx may be shared by any threads once built.  A
 * struct px_tls is used by one thread at a time (seal and open included:
 * they share one SSL object).  Nothing here closes the socket.
 *
 * ---- Detached mode with io_uring (one data link) ----
 *
 * Sending.  Keep a ciphertext send buffer ctx_buf of at least
 * PX_TLS_SEAL_MIN bytes (64 KiB or more is better: up to four records per
 * send) with ctx_len (sealed bytes in it) and ctx_sent (bytes of it the
 * kernel took).  The plaintext queue is the existing list of iovecs plus
 * tx_skip (plaintext bytes already taken from its head).
 *   1. If ctx_sent < ctx_len: submit a send of ctx_buf + ctx_sent,
 *      ctx_len - ctx_sent.  Ciphertext already sealed is sent AS IS: never
 *      seal the same plaintext twice (the record sequence number advanced;
 *      a resealed record is a different record and the peer fails -EPROTO).
 *   2. Else: ctx_len = ctx_sent = 0; build the iovecs of the queue and call
 *      px_tls_seal(t, iov, n, tx_skip, ctx_buf, cap, &consumed, &produced).
 *      tx_skip += consumed and complete the messages wholly consumed, as
 *      for plaintext bytes sent today (a message's bytes are in ctx_buf, and
 *      its buffers may be reused, once consumed).  ctx_len = produced; go
 *      to 1.  produced == 0 means nothing to send: stop the pump.
 *   On completion of a send of res bytes: ctx_sent += res (a short send
 *   just leaves a tail for step 1).  Acks and other sends issued while the
 *   send is in flight are only queued as plaintext.
 *   px_tls_seal_pending() > 0 also means "call px_tls_seal even with no new
 *   plaintext" (it never is with a buffer of PX_TLS_SEAL_MIN or more).
 *
 * Receiving.  Add a ciphertext receive buffer crx (64 KiB, crx_len bytes).
 *   1. Submit a recv into crx + crx_len, sizeof(crx) - crx_len (never
 *      MSG_WAITALL: ciphertext length has no relation to message length).
 *   2. On completion of res > 0: crx_len += res.  Then loop:
 *        px_tls_open(t, crx, crx_len, &used, dst, dstcap, &got)
 *      where dst is where plaintext goes today: rx + rx_tail
 *      (LK_RX_BUF - rx_tail), or the payload buffer of the tag being
 *      filled (payload + payload_got, payload_len - payload_got), so data
 *      still lands straight in the tag.  Drop used bytes from crx (memmove),
 *      account got bytes exactly as a plaintext recv of got bytes, run the
 *      parser.  Repeat while got > 0 (records already inside the session may
 *      still yield plaintext: call with crx_len 0 too).  When got == 0 every
 *      byte of crx was taken and more ciphertext is needed: go to 1.
 *      If the parser stalls (no free tag), stop without a recv and resume
 *      at the open loop, not at the recv, when it restarts.
 *   res == 0 or an error: the peer is gone, as today.  px_tls_open < 0:
 *   -ECONNRESET (close_notify), -EPROTO (tampered or garbage): fail the link.
 *
 * A session that returned an error from any call is dead: free it and
 * close the socket. */
#ifndef BLKMIRROR_PX_TLS_H
#define BLKMIRROR_PX_TLS_H

#include <stddef.h>
#include <sys/uio.h>

#include "proto/px.h"

#define PX_TLS_ACCEPTED   0x42            /* the server's first application byte */
#define PX_TLS_RECORD_MAX 16384u          /* plaintext bytes in one TLS record */
#define PX_TLS_OVERHEAD   256u            /* ciphertext a record adds, at most (RFC 8446 5.2) */
/* A px_tls_seal buffer this large always takes one full record. */
#define PX_TLS_SEAL_MIN   (PX_TLS_RECORD_MAX + PX_TLS_OVERHEAD)
/* Ciphertext px_tls_open keeps inside the session, at most; larger than a
 * record so a whole record always fits. */
#define PX_TLS_OPEN_BUF   (64u * 1024)

struct px_tls_ctx;
struct px_tls;

/* Builds the TLS configuration of a node: TLS 1.3 only, our certificate
 * chain (PEM, leaf first) and its private key (PEM, not encrypted), and
 * the CA file (PEM) every peer certificate must chain to; the peer must
 * present one.  0, or -errno with err (may be NULL) naming the file:
 * -ENOENT/-EACCES/... from open, -EINVAL for a file that is not a regular
 * file or holds no usable certificate/key, or a key that does not match
 * the certificate, -ENOMEM.  *out is NULL on failure.  Any thread. */
int px_tls_ctx_new(struct px_tls_ctx **out, const char *cert, const char *key, const char *ca,
		   char *err, size_t errlen);
/* Sessions keep what they need: the ctx may be freed before them.
 * NULL is a no-op. */
void px_tls_ctx_free(struct px_tls_ctx *ctx);

/* Runs the TLS handshake on the blocking socket fd (the caller set
 * SO_RCVTIMEO/SO_SNDTIMEO and ignores SIGPIPE), client side when is_client,
 * and for the client waits for PX_TLS_ACCEPTED.  peer is the node name the
 * peer's certificate must carry (see Identity above).  0 and *out, or
 * -errno with err set: -EACCES when a certificate was refused, by us (err
 * says why, from X509_verify_cert_error_string, or, for a certificate of
 * another node, the name expected and the names it carries) or by the
 * peer, or the peer sent none; -ETIMEDOUT when a socket timeout expired;
 * -ECONNRESET when the peer closed; -EPROTO for any other TLS failure (not
 * TLS, no common cipher...); -EINVAL for an empty peer; -ENOMEM.  Does not
 * close fd.  Any thread. */
int px_tls_handshake(struct px_tls_ctx *ctx, int fd, int is_client, const char *peer,
		     struct px_tls **out, char *err, size_t errlen);
/* Frees the session without a close_notify; the caller closes the socket.
 * NULL is a no-op. */
void px_tls_free(struct px_tls *t);

/* PX_TLS_BINDING_LEN bytes of the session's exporter (RFC 8446 7.5, label
 * PX_TLS_BINDING_LABEL, no context): the same on both ends of one session,
 * unknown to anyone else and different in every other session.  After the
 * handshake, detached or not.  0 or -EPROTO. */
#define PX_TLS_BINDING_LABEL "EXPORTER-blkmirror-auth"
#define PX_TLS_BINDING_LEN   32
int px_tls_binding(struct px_tls *t, unsigned char out[PX_TLS_BINDING_LEN]);

/* Mode (a), blocking on the socket: exactly len bytes, 0 or -errno:
 * -ECONNRESET on EOF or close_notify, -EAGAIN when SO_RCVTIMEO/SO_SNDTIMEO
 * expired (as util_read_full), -EPIPE and others from the socket, -EPROTO
 * for a bad record; -EINVAL once detached.  writev sends the iovecs as one
 * stream, in records of up to PX_TLS_RECORD_MAX bytes, the last one ending
 * with the last iovec. */
int px_tls_read_full(struct px_tls *t, void *buf, size_t len);
int px_tls_write_full(struct px_tls *t, const void *buf, size_t len);
int px_tls_writev_full(struct px_tls *t, const struct iovec *iov, int iovcnt);
/* 1 when a read can progress without the socket (plaintext decrypted or
 * record bytes read ahead inside the session): a poll() loop must not wait
 * for POLLIN then.  0 otherwise. */
int px_tls_pending(const struct px_tls *t);

/* struct px_sock I/O: util_read_full/util_write_full on fd when tls is NULL,
 * else px_tls_read_full/px_tls_write_full.  Same returns. */
int px_sock_read_full(struct px_sock *s, void *buf, size_t len);
int px_sock_write_full(struct px_sock *s, const void *buf, size_t len);
int px_sock_pending(const struct px_sock *s);

/* Switches to mode (b): from now on the session reads and writes memory,
 * never the socket.  Call after the handshakes (TLS and px_handshake_s),
 * before any data-link I/O.  0, -EPROTO when the handshake did not finish
 * or the session already holds bytes it read from the socket (they would
 * be lost: the peer sent before the handshake ended), -EINVAL when already
 * detached, -ENOMEM. */
int px_tls_detach(struct px_tls *t);

/* Mode (b), sending: encrypts plaintext from iov (iovcnt entries, starting
 * skip bytes in) into out, at most outcap bytes.  *consumed: plaintext
 * bytes taken (now inside records, never to be sealed again); *produced:
 * ciphertext bytes written to out, to be sent in order and in full.
 * Ciphertext a call sealed but could not fit (only when outcap is below
 * PX_TLS_SEAL_MIN) stays inside and comes first from the next call, so no
 * byte is lost at a record boundary.  Each record holds up to
 * PX_TLS_RECORD_MAX plaintext bytes (small iovecs are gathered into one
 * record).  Progress needs outcap > PX_TLS_OVERHEAD; outcap >=
 * PX_TLS_SEAL_MIN takes at least one full record per call.  0 (also when
 * nothing was consumed), -EINVAL when not detached, -EPROTO when the session
 * failed. */
int px_tls_seal(struct px_tls *t, const struct iovec *iov, int iovcnt, size_t skip,
		void *out, size_t outcap, size_t *consumed, size_t *produced);
/* Ciphertext sealed and not yet handed out by px_tls_seal. */
size_t px_tls_seal_pending(const struct px_tls *t);

/* Mode (b), receiving: takes ciphertext from in (inlen bytes; *in_consumed
 * of them were taken, the caller keeps the rest for the next call) and
 * writes the plaintext available into out (at most outcap; *produced).  A
 * partial record is kept inside until the rest arrives, so *produced may
 * be 0.  On return either all of in was taken or out is full; plaintext may
 * still be waiting inside when out is full, so call again (inlen may be 0)
 * until *produced is 0.  0; -ECONNRESET once the peer's close_notify is
 * reached (the plaintext before it is handed out first); -EPROTO for a bad
 * record (tampering, garbage); -EINVAL when not detached. */
int px_tls_open(struct px_tls *t, const void *in, size_t inlen, size_t *in_consumed, void *out,
		size_t outcap, size_t *produced);

#endif
