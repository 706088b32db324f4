/*
 * smtp_module.c - the "smtp" transport's descriptor (MTA stage): relays
 * mail to the recipient domain's MX hosts or to a relay host.  The code
 * is shared with the lmtp transport (smtp_int.h lists the files); what is
 * this module's own is its name, its settings and their defaults.
 */
#include "smtp_int.h"

static const struct smtp_flavor flavor = {
	.name = "smtp",
	.lmtp = 0,
	.port = 25,
	.tls = "may",
};

static int smtp_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	return smtp_setup(host, conf, state, &flavor);
}

static const struct petrel_setting smtp_settings[] = {
	{ .name = "port", .type = PETREL_SET_INT,
	  .help = "TCP port of the MX hosts (default 25; a next hop's own port wins)" },
	{ .name = "destination_concurrency", .type = PETREL_SET_INT,
	  .help = "most connections to one destination (default 20)" },
	{ .name = "total_concurrency", .type = PETREL_SET_INT,
	  .help = "most outbound connections in all (default 100)" },
	{ .name = "connection_reuse_time", .type = PETREL_SET_INT,
	  .help = "seconds an idle connection is kept for the destination's next message (default 5, 0: none)" },
	{ .name = "connection_reuse_count", .type = PETREL_SET_INT,
	  .help = "most messages per connection (default 0: no cap)" },
	{ .name = "dead_time", .type = PETREL_SET_INT,
	  .help = "seconds a destination that no connection reaches is deferred at once (default 60)" },
	{ .name = "tls", .type = PETREL_SET_STRING,
	  .help = "\"none\", \"may\" (STARTTLS when offered, default), \"encrypt\" or \"verify\" (chain and name)" },
	{ .name = "tls_ca_file", .type = PETREL_SET_STRING,
	  .help = "CA certificates (PEM) for tls = \"verify\" instead of the system's store" },
	{ .name = "connect_timeout", .type = PETREL_SET_INT, .help = "seconds to connect (default 30)" },
	{ .name = "greeting_timeout", .type = PETREL_SET_INT, .help = "seconds to wait for the greeting (default 300)" },
	{ .name = "helo_timeout", .type = PETREL_SET_INT, .help = "seconds for the EHLO/HELO reply (default 300)" },
	{ .name = "starttls_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for the STARTTLS reply and the TLS handshake (default 300)" },
	{ .name = "auth_timeout", .type = PETREL_SET_INT, .help = "seconds for each AUTH reply (default 300)" },
	{ .name = "mail_timeout", .type = PETREL_SET_INT, .help = "seconds for the MAIL reply (default 300)" },
	{ .name = "rcpt_timeout", .type = PETREL_SET_INT, .help = "seconds for each RCPT reply (default 300)" },
	{ .name = "data_timeout", .type = PETREL_SET_INT, .help = "seconds for the DATA (354) reply (default 120)" },
	{ .name = "data_block_timeout", .type = PETREL_SET_INT,
	  .help = "seconds the peer may take to accept each block of the message (default 180)" },
	{ .name = "data_done_timeout", .type = PETREL_SET_INT,
	  .help = "seconds for the reply to the final dot (default 600)" },
	{ .name = "rset_timeout", .type = PETREL_SET_INT, .help = "seconds for the RSET reply (default 20)" },
	{ .name = "quit_timeout", .type = PETREL_SET_INT, .help = "seconds for the QUIT reply (default 20)" },
	{ .type = PETREL_SET_END },
};

PETREL_MODULE(
	.name = "smtp",
	.version = "1.0",
	.summary = "relays mail to MX hosts or a relay host (SMTP client, STARTTLS, on the event loop)",
	.settings = smtp_settings,
	.init = smtp_init,
	.fini = smtp_teardown,
	.transport = &smtp_transport_ops,
);
