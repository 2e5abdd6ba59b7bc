#!/usr/bin/env bash
# The Debian package (issue 14), as an operator gets it: built from the tree with
# dpkg-buildpackage, lintian clean, installed on this machine, its man pages rendered
# without warnings, --help on every program and command, its systemd unit verified,
# the demo run against the installed programs, and the service started by its init
# script (this machine has no systemd) from /etc/default/meshlbd, driven by a member of
# group meshlb without root, and stopped cleanly. Purged at the end. Root only.
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (dpkg -i, namespaces)"; exit 0; fi
source "$(dirname "$0")/topology.sh"
ROOT=$MLB_ROOT
PKG=$MLB_RUN/package
USER_OK=meshlbtest USER_NO=meshlbnobody
cleanup() {
  [[ -x /etc/init.d/meshlbd ]] && ip netns exec mlb-lb /etc/init.d/meshlbd stop >/dev/null 2>&1
  topo_down
  dpkg --purge meshlb >/dev/null 2>&1
  userdel "$USER_OK" 2>/dev/null
  userdel "$USER_NO" 2>/dev/null
  ip netns del mlb-bind 2>/dev/null
  ip netns del mlb-bindpeer 2>/dev/null
}
trap cleanup EXIT
cleanup
mkdir -p "$MLB_RUN"

# The tree as git has it (committed, or changed and not ignored), built as a package.
test_build() {
  rm -rf "$PKG" && mkdir -p "$PKG/meshlb" || return 1
  (cd "$ROOT" && git ls-files --cached --others --exclude-standard | tar -T - -cf -) |
    tar -xf - -C "$PKG/meshlb" || return 1
  local start=$SECONDS
  (cd "$PKG/meshlb" && dpkg-buildpackage -b -us -uc) >"$PKG/build.log" 2>&1 ||
    { tail -30 "$PKG/build.log" | sed 's/^/# /'; return 1; }
  echo "# built in $((SECONDS - start)) s: $(cd "$PKG" && ls ./*.deb | tr '\n' ' ')"
  [[ -f $PKG/meshlb_0.1.0_amd64.deb ]]
}

test_lintian() {
  local out
  out=$(lintian --fail-on error,warning "$PKG/meshlb_0.1.0_amd64.changes" 2>&1)
  local rc=$?
  echo "# lintian: exit $rc${out:+; }$(echo "$out" | tr '\n' ';')"
  ((rc == 0)) && ! grep -qE '^[EW]:' <<<"$out"
}

test_install() {
  dpkg -i "$PKG/meshlb_0.1.0_amd64.deb" >"$PKG/install.log" 2>&1 ||
    { sed 's/^/# /' "$PKG/install.log"; return 1; }
  local f missing=""
  for f in /usr/sbin/meshlbd /usr/sbin/meshlbctl /usr/sbin/meshlb-swarm /usr/sbin/meshlb-bind \
    /lib/systemd/system/meshlbd.service /etc/init.d/meshlbd /etc/default/meshlbd \
    /usr/share/bash-completion/completions/meshlbctl; do
    [[ -e $f ]] || missing+=" $f"
  done
  echo "# installed: $(dpkg -L meshlb | grep -c .) paths; missing:${missing:- none}; group: $(getent group meshlb)"
  [[ -z $missing ]] && getent group meshlb >/dev/null
}

test_man_pages() {
  local page warnings=0 out
  for page in meshlbd meshlbctl meshlb-swarm meshlb-bind; do
    out=$(MANWIDTH=80 man --warnings=all "$page" 2>&1 >/dev/null)
    [[ -n $out ]] && { echo "# $page: $out"; warnings=1; }
    MANWIDTH=80 man "$page" 2>/dev/null | grep -q "^NAME" || { echo "# $page: not rendered"; warnings=1; }
  done
  ((warnings == 0))
}

test_help_everywhere() {
  local cmd bad=""
  while read -r cmd; do
    out=$($cmd 2>&1) || { bad+=" [$cmd: exit $?]"; continue; }
    grep -qi "usage" <<<"$out" || bad+=" [$cmd: no usage]"
  done <<'CMDS'
/usr/sbin/meshlbd --help
/usr/sbin/meshlbctl --help
/usr/sbin/meshlbctl ipvsadm --help
/usr/sbin/meshlbctl iptables --help
/usr/sbin/meshlbctl sysctl --help
/usr/sbin/meshlbctl healthcheck --help
/usr/sbin/meshlbctl stats --help
/usr/sbin/meshlbctl announce --help
/usr/sbin/meshlb-swarm --help
/usr/sbin/meshlb-bind --help
CMDS
  echo "# --help without a daemon:${bad:- every program and command printed its usage}"
  [[ -z $bad ]]
}

test_unit_verifies() {
  local out
  out=$(systemd-analyze verify /lib/systemd/system/meshlbd.service 2>&1)
  echo "# systemd-analyze verify: ${out:-clean}"
  [[ -z $out ]]
}

test_demo_installed() {
  local out
  out=$(MLB_RUN=$MLB_RUN/demo "$ROOT/scripts/demo" --installed 2>&1)
  echo "$out" >"$PKG/demo.log"
  local tasks
  tasks=$(grep -o 'processed by task t[0-9]*' "$PKG/demo.log" | sort -u | tr '\n' ' ')
  echo "# demo with /usr/sbin's programs: answered by $tasks"
  grep -q "meshlbd (/usr/sbin/meshlbd) runs" "$PKG/demo.log" && [[ $(wc -w <<<"$tasks") == 16 ]]
}

# The service as the package runs it, without systemd: the init script, the options in
# /etc/default/meshlbd, the control socket for group meshlb.
test_service() {
  topo_up
  tasks_serve
  cat >/etc/default/meshlbd <<CONF
MESHLB_EAL_OPTS="--lcores 0@0,1@1 --no-huge -m 512 --no-pci --file-prefix mlb-pkg-$$ --log-level pmd.*:error $(port_args 0 1) $(port_args 1 1)"
MESHLB_HUGEPAGES=0
MESHLBD_OPTS="--metrics 127.0.0.1:9556"
CONF
  ip netns exec mlb-lb /etc/init.d/meshlbd start >/dev/null || { cat /var/log/meshlbd.log; return 1; }
  local i
  for i in $(seq 100); do [[ -S /run/meshlb/meshlb.sock ]] && break; sleep 0.1; done
  [[ -S /run/meshlb/meshlb.sock ]] || { echo "# no socket"; sed 's/^/# /' /var/log/meshlbd.log; return 1; }
  echo "# socket: $(stat -c '%A %U:%G' /run/meshlb/meshlb.sock); run dir: $(stat -c '%A %U:%G' /run/meshlb)"
  [[ $(stat -c '%a %G' /run/meshlb/meshlb.sock) == "660 meshlb" ]] || return 1
  useradd -M -G meshlb "$USER_OK" && useradd -M "$USER_NO" || return 1
  lbx ip addr add 198.18.0.1/24 dev lb0 && lbx ip addr add 198.18.1.1/24 dev lb1 &&
    lbx ip link set lb0 up && lbx ip link set lb1 up || return 1
  local as_member as_other
  as_member=$(ip netns exec mlb-lb su -s /bin/sh "$USER_OK" -c \
    'meshlbctl ipvsadm -A -t 198.18.0.1:8080 -s rr &&
     for i in 1 2 3; do meshlbctl ipvsadm -a -t 198.18.0.1:8080 -r 198.18.1.1$i:80 -m || exit 1; done &&
     meshlbctl iptables -t nat -A POSTROUTING -m ipvs --ipvs -j SNAT --to-source 198.18.1.1 &&
     meshlbctl ipvsadm -L -n | grep -c "Masq"' 2>&1)
  as_other=$(ip netns exec mlb-lb su -s /bin/sh "$USER_NO" -c 'meshlbctl ipvsadm -L -n' 2>&1)
  echo "# a member of meshlb: $as_member real servers listed; another user: $as_other"
  [[ $as_member == 3 && $as_other == *"ermission denied"* ]] || return 1
  [[ $(task_sequence 8080 6) == 123123 ]] || { echo "# not served"; return 1; }
  ip netns exec mlb-lb /etc/init.d/meshlbd status >/dev/null || { echo "# status says not running"; return 1; }
  ip netns exec mlb-lb /etc/init.d/meshlbd stop >/dev/null || return 1
  echo "# stopped: $(tail -n 1 /var/log/meshlbd.log); state file: $(grep -c '^ipvsadm -a' /var/lib/meshlb/state) servers"
  # (an exited meshlbd may stay a zombie a moment here: this machine's PID 1 reaps late)
  if ps -C meshlbd -o stat= | grep -qv '^Z'; then echo "# still running: $(ps -C meshlbd -o pid=,stat=)"; return 1; fi
  if lbx tc filter show dev p0 ingress | grep -q meshlb_drop; then echo "# p0 not given back"; return 1; fi
  grep -q "meshlbd: stopping" /var/log/meshlbd.log
}

# meshlb-bind refuses what would cut the machine off, in a namespace of its own: the
# interface of the default route, one carrying an SSH session (a connection to port 22
# from its peer), and a veth, which is no PCI device, with the --vdev to use instead.
test_bind_refusals() {
  ip netns add mlb-bind && ip netns add mlb-bindpeer || return 1
  local i out ok=1
  for i in 1 2 3; do
    ip -n mlb-bind link add "e$i" type veth peer name "e${i}p" netns mlb-bindpeer
    ip -n mlb-bind addr add "198.18.7.$i/24" dev "e$i"
    ip -n mlb-bindpeer addr add "198.18.7.1$i/24" dev "e${i}p"
    ip -n mlb-bind link set "e$i" up
    ip -n mlb-bindpeer link set "e${i}p" up
  done
  ip -n mlb-bind route add default via 198.18.7.11 dev e1
  ip netns exec mlb-bind timeout 20 /usr/bin/python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.7.2", 22)); s.listen(1); c, _ = s.accept(); time.sleep(15)' &
  local server=$!
  sleep 0.5
  ip netns exec mlb-bindpeer timeout 20 /usr/bin/python3 -c '
import socket, time
s = socket.create_connection(("198.18.7.2", 22)); time.sleep(15)' &
  local peer=$!
  for _ in $(seq 30); do ip netns exec mlb-bind ss -Htn state established | grep -q ':22 ' && break; sleep 0.1; done
  for i in 1 2 3; do
    out=$(ip netns exec mlb-bind meshlb-bind "e$i" 2>&1)
    echo "# meshlb-bind e$i: exit $?: $out"
  done >"$MLB_RUN/bind.log"
  cat "$MLB_RUN/bind.log"
  grep -q "e1: exit 1: meshlb-bind: refusing e1: it carries the default route" "$MLB_RUN/bind.log" &&
    grep -q "e2: exit 1: meshlb-bind: refusing e2: it carries an SSH session (198.18.7.2:22<-198.18.7.1[123]:" "$MLB_RUN/bind.log" &&
    grep -q "e3: exit 1: meshlb-bind: e3 is not a PCI device (a veth): .*--vdev net_af_xdp0,iface=e3" "$MLB_RUN/bind.log" ||
    ok=0
  kill "$server" "$peer" 2>/dev/null
  wait "$server" "$peer" 2>/dev/null
  ip netns del mlb-bind
  ip netns del mlb-bindpeer
  ((ok))
}

test_purge() {
  dpkg --purge meshlb >/dev/null 2>&1 || return 1
  [[ ! -e /usr/sbin/meshlbd && ! -e /etc/default/meshlbd && ! -e /var/lib/meshlb ]]
}

check "dpkg-buildpackage builds the package from the tree" test_build
if ((failed)); then tap_end package; exit 1; fi
check "lintian: no error or warning" test_lintian
check "dpkg -i installs it: programs, unit, init script, defaults, completion, group meshlb" test_install
check "man pages meshlbd(8) meshlbctl(8) meshlb-swarm(8) meshlb-bind(8) render without warnings" \
  test_man_pages
check "--help on every program and meshlbctl command, without a daemon" test_help_everywhere
check "systemd-analyze verify meshlbd.service is clean" test_unit_verifies
check "scripts/demo --installed: the overlay demo with the installed programs" test_demo_installed
check "the service from /etc/default/meshlbd: group meshlb drives it without root, stops cleanly" \
  test_service
check "meshlb-bind refuses the default route's interface, an SSH session's, and a veth (naming --vdev)" \
  test_bind_refusals
check "dpkg --purge removes it, configuration and state included" test_purge
tap_end package
