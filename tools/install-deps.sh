#!/bin/sh
# install-deps.sh: install the Debian packages petrel needs to build, test
# and benchmark.  Used by the README's Quick start and by .ci/run.
# strace: test_maildir_sync.py watches the daemon's mkdir and fsync calls.
# prometheus: its promtool checks the metrics endpoint's text (test_metrics.py).
# msmtp: test_msa.py submits with a real mail client (STARTTLS, AUTH).
test_pkgs="strace prometheus msmtp"
# Postfix is installed only for smtp-source/smtp-sink and the benchmark,
# Dovecot only for the test that reads delivered mail over IMAP and POP3,
# dnsmasq and aiosmtpd for the relay tests (a DNS server and SMTP peers);
# a policy-rc.d that exits 101 keeps their package scripts from starting
# them.  clang and libclang-rt-14-dev (Debian 12's libFuzzer runtime) build
# the fuzz harnesses (make fuzz, tools/fuzz.sh); mandoc, man-db and systemd
# check the man pages and the unit; debhelper, lintian and dpkg-dev build
# and check the Debian package.
set -e
pkgs="build-essential autoconf automake libtool libltdl-dev pkg-config
      libssl-dev libconfig-dev libpcre2-dev libc-ares-dev libcrypt-dev
      openssl python3 swaks libnet-ssleay-perl postfix procps psmisc
      dovecot-imapd dovecot-pop3d dnsmasq python3-aiosmtpd
      clang libclang-rt-14-dev
      mandoc man-db systemd debhelper lintian dpkg-dev"
missing=""
for p in $pkgs $test_pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
  exit 1
fi
echo "install-deps: installing$missing"
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
