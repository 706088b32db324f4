/*
 * lmtp.c - the "lmtp" transport (MDA stage): hands mail to an LMTP
 * server (RFC 2033), such as Dovecot's, on a Unix socket or over TCP, so
 * that the mailbox server files it (sieve, quota, its own index) instead
 * of petrel writing maildirs.  Typical use, for the local domains:
 *
 *   modules = { router = { local_transport = "lmtp"; };
 *               lmtp = { nexthop = "unix:/run/dovecot/lmtp"; }; };
 *
 * or per route (transport = "lmtp"; nexthop = "[10.0.0.5]:24") for a
 * mailbox tier on other machines.  The code is the smtp transport's
 * (modules/smtp/, on the event loop: no thread per connection); LMTP
 * differs in LHLO, in one reply per accepted recipient after the final
 * dot (each recipient is decided by its own: one over quota bounces, the
 * others are delivered), in never looking up MX, and in no loop check by
 * greeting name (the server is normally this very host).
 *
 * Recipients are not checked at RCPT time by this module: give the router
 * a 'mailboxes' list (as Postfix's local_recipient_maps) so that unknown
 * users are refused in the SMTP session, not bounced after it.
 */
#include "../smtp/smtp_int.h"

static const struct smtp_flavor flavor = {
	.name = "lmtp",
	.lmtp = 1,
	.port = 24,
	.tls = "none",
};

static int lmtp_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	return smtp_setup(host, conf, state, &flavor);
}

static const struct petrel_setting lmtp_settings[] = {
	{ .name = "nexthop", .type = PETREL_SET_STRING,
	  .help = "the LMTP server when no route names one: \"unix:/path\" (a Unix socket), "
	          "\"[host]:port\" or \"host:port\" (no MX lookup; no port means 24)" },
	{ .name = "port", .type = PETREL_SET_INT,
	  .help = "TCP port of a next hop that names none (default 24)" },
	{ .name = "destination_concurrency", .type = PETREL_SET_INT,
	  .help = "most connections to one LMTP server (default 20)" },
	{ .name = "total_concurrency", .type = PETREL_SET_INT,
	  .help = "most LMTP connections in all (default 100)" },
	{ .name = "connection_reuse_time", .type = PETREL_SET_INT,
	  .help = "seconds an idle connection is kept for the next message (default 5, 0: none)" },
	{ .name = "connection_reuse_count", .type = PETREL_SET_INT,
	  .help = "most messages per connection (default 0: no cap)" },
	{ .name = "dead_time", .type = PETREL_SET_INT,
	  .help = "seconds an LMTP server that no connection reaches is deferred at once (default 60)" },
	{ .name = "tls", .type = PETREL_SET_STRING,
	  .help = "\"none\" (default), \"may\", \"encrypt\" or \"verify\", as for modules.smtp" },
	{ .name = "tls_ca_file", .type = PETREL_SET_STRING,
	  .help = "CA certificates (PEM) for tls = \"verify\" instead of the system's store" },
	{ .name = "connect_timeout", .type = PETREL_SET_INT, .help = "seconds to connect (default 30)" },
	{ .name = "greeting_timeout", .type = PETREL_SET_INT,
	  .help = "seconds to wait for the LMTP greeting (default 300)" },
	{ .name = "lhlo_timeout", .type = PETREL_SET_INT, .help = "seconds for the LHLO reply (default 300)" },
	{ .name = "starttls_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for the STARTTLS reply and the TLS handshake (default 300)" },
	{ .name = "mail_timeout", .type = PETREL_SET_INT, .help = "seconds for the MAIL reply (default 300)" },
	{ .name = "rcpt_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for each RCPT reply (default 300)" },
	{ .name = "data_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for the DATA (354) reply (default 120)" },
	{ .name = "data_block_timeout", .type = PETREL_SET_INT,
	  .help = "seconds the server may take to accept each block of the message (default 180)" },
	{ .name = "data_done_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for each recipient's reply after the final dot (default 600)" },
	{ .name = "rset_timeout", .type = PETREL_SET_INT, .help = "seconds for the RSET reply (default 20)" },
	{ .name = "quit_timeout", .type = PETREL_SET_INT, .help = "seconds for the QUIT reply (default 20)" },
	{ .type = PETREL_SET_END },
};

PETREL_MODULE(
	.name = "lmtp",
	.version = "1.0",
	.summary = "hands mail to an LMTP server (Dovecot) on a Unix socket or TCP, on the event loop",
	.settings = lmtp_settings,
	.init = lmtp_init,
	.fini = smtp_teardown,
	.transport = &smtp_transport_ops,
);
