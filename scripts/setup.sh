#!/usr/bin/env bash
# Set up everything netstack needs on a Debian machine, as root:
#   - Debian packages: a C compiler and Python headers (for the cffi checksum),
#     iproute2, tshark, tcpdump (the reference the dissector is tested against), swaks,
#     iputils-ping, nftables, openssl; the Perl TLS modules swaks needs for -tls; nmap (the scan test);
#     chromium and chromium-driver (the headless browser the HTML report is tested in, with Selenium);
#     postfix, for its smtp-source and smtp-sink only (installed unconfigured, never started);
#   - a virtual environment in .venv with netstack installed (editable) plus the test extras.
# Idempotent: a second run only checks. Prints what it does on stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "run as root (the lab creates a network namespace and a TUN device)"
    exit 2
fi

debs=(gcc libffi-dev python3 python3-venv python3-dev iproute2 tshark tcpdump swaks nmap libnet-ssleay-perl libio-socket-ssl-perl iputils-ping nftables openssl ca-certificates procps chromium chromium-driver)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Postfix's smtp-source and smtp-sink (the C load generator and sink of `netstack bench smtp
# --client smtp-source`).  Only the binaries are wanted: Postfix is installed unconfigured
# ("No configuration"), a policy-rc.d forbids starting any daemon during the install, and the
# service is disabled and stopped afterwards, so no mail server is left running or enabled.
if [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/sbin/smtp-sink ]; then
    say "installing postfix (for smtp-source/smtp-sink only; no daemon is started)"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    apt-get install -y -qq --no-install-recommends postfix >&2 || { [ "$made_policy" = 1 ] && rm -f "$policy"; exit 1; }
    [ "$made_policy" = 1 ] && rm -f "$policy"
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now postfix >/dev/null 2>&1 || true
    fi
    if [ -x /usr/sbin/postfix ]; then
        /usr/sbin/postfix status >/dev/null 2>&1 && /usr/sbin/postfix stop >&2 || true
    fi
fi

# The Python to build the venv from: python3 on PATH, which must be 3.11 or newer.
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    say "$py is older than 3.11; set PYTHON=/path/to/python3.11+"
    exit 2
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$py" -m venv "$venv"
fi
stamp="$venv/.netstack-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ -n "$(find native -newer "$stamp" -type f 2>/dev/null | head -1)" ]; then
    say "installing netstack and its test extras into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    # gcc is installed above, so a failed C build is a real failure here, not a fallback.
    NETSTACK_REQUIRE_NATIVE=1 "$venv/bin/python" -m pip install -q -e ".[test]" >&2
    touch "$stamp"
fi
# matplotlib builds its font cache on first use by running fc-list; do it here, once, so that no
# test (the unit tier refuses subprocesses) is the first user.
"$venv/bin/python" -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager" >&2
"$venv/bin/netstack" info >&2
