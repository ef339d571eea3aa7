#!/usr/bin/env bash
# Set everything up, then run the main demo:
#   1. read the seed article's HELO packet with the dissector (netstack trace --explain);
#   2. bring up the lab: a network namespace with a TUN device, the stack on 198.18.0.2;
#   3. from the kernel side of the namespace: ping the stack, then send a real message
#      with swaks to the stack's SMTP server;
#   4. show the delivered Maildir file and the packet trace of the SMTP session;
#   5. write the HTML report of that session (ladder, graphs, TCP states, every packet
#      explained) and print its path ($NETSTACK_DEMO_REPORT, default /tmp/netstack-demo-report.html);
#   6. tear everything down (also on Ctrl-C or failure).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
cd "$here"
venv="$here/.venv"
netstack="$venv/bin/netstack"

ns="netstack-demo-$$"
ifname="nsdemo$(( $$ % 100000 ))"
work=$(mktemp -d /tmp/netstack-demo.XXXXXX)
serve_pid=""

cleanup() {
    if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
        kill -INT "$serve_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$serve_pid" 2>/dev/null || true
    fi
    # serve removes what it created; this is a safety net for a crashed serve.
    ip link del "$ifname" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

banner() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

banner "1. The seed article's HELO packet, read field by field"
"$netstack" trace --explain -c 1 "$here/tests/support/seed_article_packets.txt"

banner "2. The lab: namespace $ns, TUN $ifname, kernel 198.18.0.1, stack 198.18.0.2"
"$netstack" serve --netns "$ns" --ifname "$ifname" --pcap "$work/session.pcap" \
    --state-log "$work/states.jsonl" --maildir "$work/mail" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do
    grep -q ready "$work/serve.log" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
done
grep ready "$work/serve.log"

banner "3a. ping from the kernel side"
ip netns exec "$ns" ping -c 3 -i 0.2 198.18.0.2

banner "3b. swaks sends a message to the stack's SMTP server"
ip netns exec "$ns" swaks --server 198.18.0.2 --port 25 --helo demo.example.test \
    --from student@example.test --to postmaster@example.test \
    --header "Subject: hello through a userspace TCP/IP stack" \
    --body "This message crossed netstack's own IPv4 and TCP."

banner "3c. Ask the running stack, as ss and nstat would ask the kernel"
"$netstack" ss -tanio --netns "$ns"
"$netstack" stats --netns "$ns"

banner "4a. The delivered Maildir file"
kill -INT "$serve_pid"; wait "$serve_pid" || true; serve_pid=""
tail -n 25 "$work/serve.log"
for f in "$work"/mail/*/new/*; do echo "--- $f"; cat "$f"; done

banner "4b. The SMTP session as the stack saw it (netstack trace -A FILE tcp port 25)"
echo "(With TUN offloads on, a data segment's TCP checksum field holds only the pseudo-header"
echo " sum when captured: the kernel completes it, as a NIC would. tcpdump prints such packets"
echo " as 'incorrect' and so do we; 'netstack trace --explain' says which ones are offloaded.)"
"$netstack" trace -A "$work/session.pcap" tcp port 25

banner "5. The report of this session"
report=${NETSTACK_DEMO_REPORT:-/tmp/netstack-demo-report.html}
"$netstack" report "$work/session.pcap" --state-log "$work/states.jsonl" -o "$report" \
    --title "netstack demo: ping and an SMTP session through a userspace TCP/IP stack"
echo "report: $report (open it in a browser; click a packet to read it field by field)"
