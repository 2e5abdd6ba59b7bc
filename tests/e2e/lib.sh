# Helpers every end-to-end scenario shares (sourced by topology.sh and the tests).

# TAP: `check DESCRIPTION COMMAND...` runs one check and reports it; `tap_end`
# prints the plan and the summary and returns non-zero when a check failed.
# A shell error inside a check (an arithmetic expansion of an empty value) aborts the
# whole `if` it runs in, report and count included: the check in progress is then
# reported failed by the next check, or by tap_end, rather than left out.
passed=0
failed=0
_checking=""
_check_aborted() {
  [[ -z $_checking ]] && return
  echo "not ok $((passed + failed + 1)) - $_checking (aborted by a shell error in the check)"
  failed=$((failed + 1))
  _checking=""
}
check() {
  _check_aborted
  local what=$1
  shift
  local n=$((passed + failed + 1))
  _checking=$what
  if "$@"; then
    echo "ok $n - $what"
    passed=$((passed + 1))
  else
    echo "not ok $n - $what"
    failed=$((failed + 1))
  fi
  _checking=""
}
# iperf3 -c HOST for SECS seconds, run through a namespace's command prefix (client, ...):
# prints the bytes received; on failure, the end of iperf3's output as TAP comments.
iperf_received() {  # secs, host, command prefix...
  local secs=$1 host=$2 out
  shift 2
  out=$("$@" timeout $((secs + 27)) iperf3 -c "$host" -t "$secs" -J) ||
    { echo "$out" | tail -5 | sed 's/^/# /'; return 1; }
  echo "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])'
}
tap_end() {  # scenario name
  _check_aborted
  echo "1..$((passed + failed))"
  echo "# $1: $passed passed, $failed failed"
  ((failed == 0))
}

# The wiring both overlay topologies share, namespaces prefixed $1 ("ov", "sw"):
# $1-client (c0 198.18.0.10/24) -- p0 in $1-lb; p1 in $1-lb -- bridge br0 in $1-under;
# and each further argument, a node namespace $1-NODE, on br0 through its eth0 with
# address 198.19.0.(NODE's number + 1)/24.
wire_underlay() {
  local p=$1 n ip
  shift
  ip link add c0 netns "$p-client" type veth peer name p0 netns "$p-lb"
  ip -n "$p-client" addr add 198.18.0.10/24 dev c0
  ip -n "$p-client" link set c0 up
  ip netns exec "$p-client" ethtool -K c0 tx off >/dev/null
  ip -n "$p-under" link add br0 type bridge
  ip -n "$p-under" link set br0 up
  ip link add p1 netns "$p-lb" type veth peer name u0 netns "$p-under"
  ip -n "$p-under" link set u0 master br0 up
  for n in "$@"; do
    ip="198.19.0.$((${n#n} + 1))"
    ip link add eth0 netns "$p-$n" type veth peer name "u$n" netns "$p-under"
    ip -n "$p-under" link set "u$n" master br0 up
    ip -n "$p-$n" addr add "$ip/24" dev eth0
    ip -n "$p-$n" link set eth0 up
    ip netns exec "$p-$n" ethtool -K eth0 tx off >/dev/null
  done
}

# An HTTP server of DIR on [ADDR]:80 in namespace NS, in the background, its log to LOG.
# Not `python3 -m http.server`: its start looks its address up (getfqdn), which in a
# task's namespace waits for a resolver it cannot reach.
http6_serve() {  # ns, addr, dir, log
  (ip netns exec "$1" /usr/bin/python3 -u -c '
import functools, http.server, socket, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
Server((sys.argv[1], 80), handler).serve_forever()
' "$2" "$3" >"$4" 2>&1 &)
  for _ in $(seq 50); do
    ip netns exec "$1" bash -c "echo > /dev/tcp/$2/80" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# The sum over workers of one counter of `meshlbctl stats --json` (ctl: the caller's).
stat_sum() {
  ctl stats --json | /usr/bin/python3 -c "import json,sys; print(sum(w['$1'] for w in json.load(sys.stdin)['workers']))"
}

# Stops the meshlbd whose pid is in file $1 (SIGTERM, then SIGKILL after 5 s) and removes
# the namespaces named after it, with whatever still runs in them (servers). Safe under
# `set -e`: it only acts on what exists.
teardown() {
  local pidfile=$1 pid ns existing
  shift
  if [[ -f $pidfile ]]; then
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    fi
    rm -f "$pidfile"
  fi
  existing=$(ip netns list | awk '{print $1}')
  for ns in "$@"; do
    grep -qx "$ns" <<<"$existing" || continue
    for pid in $(ip netns pids "$ns"); do
      if ! kill -KILL "$pid" 2>/dev/null; then continue; fi  # it may have exited already
    done
    ip netns del "$ns"
  done
}
