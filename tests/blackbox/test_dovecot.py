#!/usr/bin/env python3
"""The maildir stage as users meet it: Dovecot reads what petrel delivered.

A Dovecot of its own (IMAP and POP3 on loopback ports, a passwd-file, the
maildirs petreld writes) is started next to petreld, which runs as an
unprivileged user as in production.  A message sent over SMTP must come
out of IMAP and POP3 byte for byte as it is in the maildir file (with the
CRLF line ends those protocols use), and Dovecot must take the file over
the way the maildir specification says (new/ to cur/ with its flags).
Skipped without root or without Dovecot (Debian: dovecot-imapd,
dovecot-pop3d).
"""

import imaplib
import os
import poplib
import grp
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, T  # noqa: E402

DOVECOT = petrel.DOVECOT
USER = "nobody"
PASSWORD = "imap secret"


class Dovecot(petrel.PrivateDovecot):
    def __init__(self, maildirs, uid, gid):
        super().__init__(os.path.join(os.path.dirname(maildirs), "dovecot"))
        self.imap_port = petrel._free_port()
        self.pop3_port = petrel._free_port()
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("user:{PLAIN}%s\n" % PASSWORD)
        with open(self.conf, "w") as f:
            f.write("""# written by tests/blackbox/test_dovecot.py
protocols = imap pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{mail}/localhost/%n
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/localhost/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""".format(d=self.dir, log=self.log, mail=maildirs, uid=uid, gid=gid,
           imap=self.imap_port, pop3=self.pop3_port))
        self.start()

    def ready(self):
        imaplib.IMAP4(petrel.HOST, self.imap_port).logout()
        return True


def crlf_of(maildir_file_bytes):
    return maildir_file_bytes.replace(b"\n", b"\r\n")


def test_imap_and_pop3_read_what_petrel_delivered():
    if os.geteuid() != 0:
        petrel.skip("needs root (Dovecot, and petreld dropping to %s)" % USER)
    if not os.access(DOVECOT, os.X_OK):
        petrel.skip("Dovecot not installed (dovecot-imapd, dovecot-pop3d)")
    d = Daemon(settings={"user": USER}, start=False)
    pw = petrel.run_as(d, USER)
    with d:
        d.start()
        dov = None
        try:
            body = ("Gr\u00fc\u00dfe, 8-bit body\n"
                    ".a line that starts with a dot\n"
                    "..and one with two\n"
                    "\n"
                    "last line\n")
            msg = make_message("Dovecot reads this", body,
                               headers=["X-Long: first part\r\n\tfolded second part"])
            with d.client() as c:
                c.ehlo()
                qid = c.send_mail("sender@example.test", ["user@localhost"], msg)
            stored = d.wait_delivered("user", 1)[0]
            dov = Dovecot(d.mail, pw.pw_uid, grp.getgrgid(pw.pw_gid).gr_gid)

            m = imaplib.IMAP4(petrel.HOST, dov.imap_port)
            m.login("user", PASSWORD)
            typ, data = m.select("INBOX")
            assert typ == "OK" and data == [b"1"], (typ, data)
            typ, data = m.fetch("1", "(RFC822.SIZE RFC822)")
            assert typ == "OK", (typ, data)
            fetched = data[0][1]
            assert fetched == crlf_of(stored), (fetched[:300], stored[:300])
            assert b"RFC822.SIZE %d" % len(crlf_of(stored)) in data[0][0], data[0][0]
            assert fetched.startswith(b"Return-Path: <sender@example.test>\r\n"
                                      b"Delivered-To: user@localhost\r\n"), fetched[:120]
            assert qid.encode() in fetched
            typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-LONG)])")
            assert b"Subject: Dovecot reads this" in data[0][1], data
            assert b"X-Long: first part\r\n\tfolded second part" in data[0][1], data

            # a second message arrives while the mailbox is open
            msg2 = make_message("while you read")
            q2 = petrel.send_one(d.port, "b@example.test", "user@localhost", msg2)
            # (Dovecot has moved the first file to cur/ by now)
            d.wait_log(q2 + r": to=<user@localhost>.*status=sent")
            deadline = time.monotonic() + T(10)
            while True:
                typ, data = m.noop()
                typ, data = m.select("INBOX")
                if data == [b"2"]:
                    break
                assert time.monotonic() < deadline, "Dovecot never saw message 2"
                time.sleep(0.2)
            typ, data = m.fetch("2", "(BODY.PEEK[TEXT])")
            assert data[0][1] == crlf_of(petrel.to_lf(msg2).split(b"\n\n", 1)[1]), data
            m.store("1", "+FLAGS", "\\Seen")
            m.logout()
            # Dovecot took the files over: new/ -> cur/, flags in the name
            cur = os.listdir(os.path.join(d.mail, "localhost", "user", "cur"))
            assert any(n.endswith(":2,S") for n in cur), cur

            p = poplib.POP3(petrel.HOST, dov.pop3_port)
            p.user("user")
            p.pass_(PASSWORD)
            count, _ = p.stat()
            assert count == 2, count
            resp, lines, octets = p.retr(1)
            # POP3 undoes its own dot-stuffing; lines come without CRLF
            assert b"\r\n".join(lines) + b"\r\n" == crlf_of(stored), lines[:5]
            p.quit()
            assert "Error" not in dov.log_text(), dov.log_text()
            d.stop()
        finally:
            if dov:         # before the temp dir (its config) goes
                dov.stop()


if __name__ == "__main__":
    petrel.main()
