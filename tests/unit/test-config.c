/*
 * test-config.c - table-driven tests of the configuration loader: each
 * case is a file's text and either success or the error text expected
 * (file:line: setting: reason).  Also checks that etc/petrel.conf loads
 * and mentions every setting the loader knows.
 */
#include "config.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define L "listeners = ( { listen = \"127.0.0.1:2525\"; stage = \"mta\"; } );\n"

static const struct {
	const char *label;
	const char *text;
	const char *error;      /* NULL: must load; else a substring of the errors */
} cases[] = {
	{ .label = "minimal", .text = L },
	{ .label = "all simple settings", .text = L
	  "hostname = \"mx.test\"; spool = \"/tmp/x\"; domains = [\"A.test\", \"b.test\"];\n"
	  "relay_networks = [\"127.0.0.0/8\", \"::1/128\", \"10.1.2.3\"];\n"
	  "message_size_limit = 2048; recipient_limit = 100; smtp_timeout = 5; data_timeout = 9;\n" },
	{ .label = "int64 size", .text = L "message_size_limit = 50000000000L;\n" },
	{ .label = "no listeners", .text = "hostname = \"x\";\n", .error = "listeners: at least one listener" },
	{ .label = "syntax error has line", .text = L "hostname = \"x\"\nspool = ;\n", .error = ":3: syntax error" },
	{ .label = "unknown setting", .text = L "\nfoo = 1;\n", .error = ":3: foo: unknown setting" },
	{ .label = "wrong type int", .text = L "recipient_limit = \"x\";\n", .error = ":2: recipient_limit: must be an integer" },
	{ .label = "wrong type string", .text = L "hostname = 5;\n", .error = ":2: hostname: must be a string" },
	{ .label = "below minimum", .text = L "recipient_limit = 99;\n", .error = "recipient_limit: 99 is out of range" },
	{ .label = "empty string", .text = L "hostname = \"\";\n", .error = "hostname: must not be empty" },
	{ .label = "bad listen address", .text = "listeners = ( { listen = \"localhost:25\"; stage = \"mta\"; } );\n",
	  .error = ":1: listeners[0].listen: 'localhost:25': not a numeric" },
	{ .label = "bad port", .text = "listeners = ( { listen = \"127.0.0.1:99999\"; stage = \"mta\"; } );\n",
	  .error = "bad port" },
	{ .label = "no port", .text = "listeners = ( { listen = \"127.0.0.1\"; stage = \"mta\"; } );\n",
	  .error = "expected ADDRESS:PORT" },
	{ .label = "ipv6 listen", .text = "listeners = ( { listen = \"[::1]:2525\"; stage = \"mta\"; } );\n" },
	{ .label = "listener without stage", .text = "listeners = ( { listen = \"127.0.0.1:25\"; } );\n",
	  .error = "stage = \"mta\" or \"msa\" is required" },
	{ .label = "unknown listener key", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; port = 1; } );\n",
	  .error = "listeners[0].port: unknown listener setting" },
	{ .label = "tls without a key pair", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\";\n"
	  "  tls = \"starttls\"; } );\n",
	  .error = ":2: listeners[0].tls: TLS needs tls_cert_file and tls_key_file" },
	{ .label = "tls with the global key pair", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; tls = \"implicit\"; } );\n"
	  "tls_cert_file = \"/x/cert.pem\"; tls_key_file = \"/x/key.pem\";\n" },
	{ .label = "tls with its own key pair", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; tls = \"starttls\";\n"
	  "  tls_cert_file = \"/x/cert.pem\"; tls_key_file = \"/x/key.pem\"; } );\n" },
	{ .label = "tls with half a key pair", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; tls = \"starttls\";\n"
	  "  tls_cert_file = \"/x/cert.pem\"; } );\n", .error = "TLS needs tls_cert_file and tls_key_file" },
	{ .label = "auth without passwords", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\";\n"
	  "  auth = true; auth_cleartext = true; } );\n",
	  .error = ":2: listeners[0].auth: auth = true needs the top-level auth_passwords" },
	{ .label = "auth without tls", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; auth = true; } );\n"
	  "auth_passwords = \"/x/passwd\";\n", .error = "listeners[0].auth: AUTH is offered under TLS only" },
	{ .label = "msa without auth", .text = "listeners = ( { listen = \"127.0.0.1:587\";\n"
	  "  stage = \"msa\"; tls = \"starttls\"; } );\ntls_cert_file = \"/x/c.pem\"; tls_key_file = \"/x/k.pem\";\n",
	  .error = ":2: listeners[0].stage: stage \"msa\" takes mail from logged-in users only: set auth = true" },
	{ .label = "msa with auth", .text = "listeners = ( { listen = \"127.0.0.1:587\"; stage = \"msa\";\n"
	  "  tls = \"starttls\"; auth = true; } );\ntls_cert_file = \"/x/c.pem\"; tls_key_file = \"/x/k.pem\";\n"
	  "auth_passwords = \"/x/passwd\";\n" },
	{ .label = "auth not a bool", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; auth = \"yes\"; } );\n",
	  .error = "listeners[0].auth: must be true or false" },
	{ .label = "auth with passwords", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; auth = true;\n"
	  "  auth_cleartext = true; } );\nauth_passwords = \"/x/passwd\"; auth_failure_limit = 5;\n" },
	{ .label = "auth failure limit 0", .text = L "auth_failure_limit = 0;\n", .error = "auth_failure_limit: 0 is out of range" },
	{ .label = "tls bad word", .text = "listeners = ( { listen = \"127.0.0.1:25\"; stage = \"mta\"; tls = \"yes\"; } );\n",
	  .error = "expected \"none\"" },
	{ .label = "bad cidr", .text = L "relay_networks = [ \"10.0.0.0/33\" ];\n",
	  .error = ":2: relay_networks[0]: '10.0.0.0/33' is not an address" },
	{ .label = "domain with @", .text = L "domains = [ \"a@b\" ];\n", .error = "is not a domain name" },
	{ .label = "domains not strings", .text = L "domains = [ 1, 2 ];\n", .error = "domains: must be a list of strings" },
	{ .label = "module block not group", .text = L "modules = { maildir = 1; };\n",
	  .error = "modules.maildir: a module's settings are a group" },
	{ .label = "two errors both reported", .text = L "foo = 1;\nbar = 2;\n", .error = ":3: bar: unknown setting" },
};

static int load_text(const char *text, struct buf *errs, struct config **out)
{
	char path[] = "/tmp/petrel-test-config-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return -1;
	close(fd);
	*out = config_load(path, errs);
	unlink(path);
	return 0;
}

int main(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct buf errs = {0};
		struct config *c = NULL;
		if (load_text(cases[i].text, &errs, &c) < 0) {
			tap_ok(0, "%s: temp file", cases[i].label);
			continue;
		}
		if (!cases[i].error) {
			tap_ok(c != NULL, "%s: loads", cases[i].label);
			if (!c)
				tap_diag("%s", errs.data);
		} else {
			int hit = !c && errs.data && strstr(errs.data, cases[i].error);
			tap_ok(hit, "%s: error '%s'", cases[i].label, cases[i].error);
			if (!hit)
				tap_diag("got: %s", errs.data ? errs.data : "(loaded)");
		}
		config_free(&c);
		buf_free(&errs);
	}

	/* values land where they should */
	struct buf errs = {0};
	struct config *c = NULL;
	if (load_text(L "domains = [\"Example.ORG\"]; relay_networks = [\"192.168.0.0/16\"];\n"
	              "message_size_limit = 4096; spool = \"rel/spool\";\n", &errs, &c) == 0 && c) {
		tap_ok(config_is_local_domain(c, "example.org"), "domains are lower-cased and case-insensitive");
		tap_ok(!config_is_local_domain(c, "other.org"), "other domains are not local");
		tap_ok(c->message_size_limit == 4096, "message_size_limit value");
		tap_ok(c->spool[0] == '/' && strstr(c->spool, "/rel/spool"), "relative spool made absolute");
		struct cidr k;
		tap_ok(config_parse_cidr("192.168.0.0/16", &k) == 0, "cidr parses");
		struct sockaddr_in in = { .sin_family = AF_INET };
		inet_pton(AF_INET, "192.168.44.1", &in.sin_addr);
		tap_ok(config_may_relay(c, (struct sockaddr *)&in), "relay network matches inside");
		inet_pton(AF_INET, "192.169.0.1", &in.sin_addr);
		tap_ok(!config_may_relay(c, (struct sockaddr *)&in), "relay network refuses outside");
	} else {
		tap_ok(0, "values test config loads");
	}
	config_free(&c);
	buf_free(&errs);

	/* the embedded default */
	c = config_load(NULL, &errs);
	tap_ok(c && c->nlisteners == 1 && config_is_local_domain(c, "localhost"),
	       "embedded default: one listener, domain localhost");
	config_free(&c);
	buf_free(&errs);

	/* etc/petrel.conf loads and documents every setting */
	char *path = xasprintf("%s/etc/petrel.conf", TOP_SRCDIR);
	c = config_load(path, &errs);
	tap_ok(c != NULL, "etc/petrel.conf loads");
	if (!c)
		tap_diag("%s", errs.data);
	FILE *f = fopen(path, "r");
	static char text[65536];
	size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
	text[n] = 0;
	if (f)
		fclose(f);
	for (int i = 0; config_setting_name_at(i); i++) {
		char *needle = xasprintf("\n%s = ", config_setting_name_at(i));
		tap_ok(strstr(text, needle) != NULL, "etc/petrel.conf sets '%s'", config_setting_name_at(i));
		free(needle);
	}
	free(path);
	config_free(&c);
	buf_free(&errs);
	return tap_done();
}
