#!/usr/bin/env python3
"""gen-rules.py N [SEED] - write N realistic regex-filter rules to stdout.

For the benchmark (bench/): a rules file shaped like a site's real
header_checks/body_checks, with the usual mix of targets (mostly Subject
and body lines, then From/sender, attachments, MIME types, HELO and
client addresses) and actions (mostly reject and log, some hold, add,
discard).  The output is reproducible for a given N and SEED, every
pattern compiles, and none matches an ordinary message (a Subject of
plain words, a body of plain sentences, a sender at localhost, HELO
client.test, client 127.0.0.1), so the benchmark measures the cost of
matching, not of refusing.
"""

import random
import sys

SPAM_WORDS = [
    "viagra", "cialis", "casino", "lottery", "jackpot", "bitcoin doubler",
    "wire transfer", "inheritance", "beneficiary", "weight loss", "rolex",
    "replica", "payday loan", "crypto giveaway", "nigerian prince",
    "urgent reply", "act now", "risk free", "100% free", "work from home",
    "double your income", "million dollars", "unclaimed funds", "miracle cure",
    "hot singles", "cheap meds", "no prescription", "forex signals",
]
DOMAINS = [
    "spam-example.test", "bulkmailer.invalid", "cheap-pills.test",
    "win-prize.invalid", "phish-bank.test", "lotto-winner.invalid",
    "mass-mail.test", "shady-offers.invalid",
]
EXTENSIONS = ["exe", "scr", "bat", "com", "pif", "vbs", "js", "jse", "wsf",
              "cpl", "hta", "msi", "lnk", "iso", "img", "ace"]
MIME_TYPES = ["application/x-msdownload", "application/x-msdos-program",
              "application/x-ms-shortcut", "application/hta",
              "application/x-iso9660-image", "application/vnd.ms-cab-compressed"]
MAILERS = ["BulkBlaster", "MassSender", "Extractor Pro", "SpamCannon",
           "Dark Mailer", "Send-Safe"]


def esc(word):
    out = []
    for ch in word:
        if ch in r"\^$.|?*+()[]{}/":
            out.append("\\" + ch)
        elif ch == " ":
            out.append(r"\s+")
        else:
            out.append(ch)
    return "".join(out)


def rule(rng, i):
    kind = rng.random()
    word = esc(rng.choice(SPAM_WORDS))
    n = rng.randrange(1000)
    if kind < 0.30:
        action = rng.choice(["reject 550 5.7.1 Message content rejected (rule %d)" % i,
                             "reject", "log subject spam word", "hold"])
        return "header Subject /\\b%s\\b.*%03d/i %s" % (word, n, action)
    if kind < 0.55:
        action = rng.choice(["reject 550 5.7.1 Spam body (rule %d)" % i, "log body spam word",
                             "add X-Spam-Rule: %d" % i])
        return "body /%s\\s+(offer|now|today)\\s*#%d/i %s" % (word, n, action)
    if kind < 0.65:
        return "header From /@%s>?$/i reject 550 5.7.1 Sender domain blocked" \
            % esc("%d.%s" % (n, rng.choice(DOMAINS)))
    if kind < 0.72:
        return "sender /@%s$/i %s" % (esc("%d.%s" % (n, rng.choice(DOMAINS))),
                                      rng.choice(["reject", "discard", "hold"]))
    if kind < 0.80:
        exts = rng.sample(EXTENSIONS, 3)
        return "filename /\\.(%s)%d$/i reject 550 5.7.1 Attachment type refused" \
            % ("|".join(exts), n)
    if kind < 0.85:
        return "mime-type /^%s-%d$/ reject 550 5.7.1 MIME type refused" \
            % (esc(rng.choice(MIME_TYPES)), n)
    if kind < 0.90:
        return "header X-Mailer /^%s %d/ remove" % (esc(rng.choice(MAILERS)), n)
    if kind < 0.93:
        return "header * /^X-Spam-Flag-%d:\\s*yes/i hold" % n
    if kind < 0.96:
        return "helo /^(mail|smtp)%d\\.%s$/i reject 550 5.7.1 Bad HELO" \
            % (n, esc(rng.choice(DOMAINS)))
    if kind < 0.98:
        return "client /^192\\.0\\.2\\.%d$/ reject 554 5.7.1 Client blocked" % (n % 256)
    return "recipient /^(abuse-trap|honeypot)%d@/ discard" % n


def main():
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: gen-rules.py N [SEED]\n")
        return 2
    count = int(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = random.Random(seed)
    out = ["# %d regex rules written by modules/regex/gen-rules.py (seed %d)" % (count, seed), ""]
    for i in range(1, count + 1):
        out.append(rule(rng, i))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
