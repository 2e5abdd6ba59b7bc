# A real Docker Swarm in network namespaces, with meshlb in front of it (sourced by
# tests/e2e/swarm_test.sh and `scripts/demo --swarm`):
#
#   sw-client 198.18.0.10 --veth-- [p0] meshlbd in sw-lb [p1] --veth-- sw-under (bridge)
#     twins: lb0 198.18.0.1/24, lb1 198.19.0.1/24 (VTEP)     |-- sw-n1 198.19.0.2: dockerd, manager
#     meshlb-swarm run: vxlan4096 198.18.128.250 (ingress)     '-- sw-n2 198.19.0.3: dockerd, worker
#
# Each node is a real dockerd (Debian's docker.io) in its own network namespace, with
# its own data, exec root and socket, and `meshlb-swarm node` beside it. The ingress
# network is recreated with --ip-range so that Docker never gives the appliance's
# address (198.18.128.250) to a task. Every address is from 198.18.0.0/15. The task
# image is Debian's busybox-static (no registry is needed): httpd, a CGI naming the
# task and the peer it sees, and a CGI streaming 24 MiB.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${MLB_BUILD:-$ROOT/build}
RUN=${MLB_RUN:-/tmp/meshlb-e2e-swarm}-sw
SOCK=$RUN/meshlb.sock
NODES=(n1 n2)
NS=(sw-lb sw-client sw-under sw-n1 sw-n2)
APP_OV=198.18.128.250
APP_VTEP=198.19.0.1
nodeip() { echo "198.19.0.$((${1#n} + 1))"; }
ndir() { echo "$RUN/node${1#n}"; }  # a node's dockerd state, named as its hostname

lbx() { ip netns exec sw-lb "$@"; }
ctl() { ip netns exec sw-lb "$BUILD/control/meshlbctl" --socket "$SOCK" "$@"; }
client() { ip netns exec sw-client "$@"; }
dk() { local n=$1; shift; docker -H "unix://$(ndir "$n")/docker.sock" "$@"; }

# Everything this topology starts goes with it: the agents; dockerd, its containerd
# and shims (their command lines name the node's directory); the containers'
# processes (in the node's cgroup parent, `meshlb-sw-NODE`); their mounts.
down() {
  local pidf n
  for pidf in "$RUN"/agent.pid; do
    [[ -f $pidf ]] && kill "$(cat "$pidf")" 2>/dev/null
    rm -f "$pidf"
  done
  for n in "${NODES[@]}"; do
    [[ -f $(ndir "$n")/pid ]] && kill "$(cat "$(ndir "$n")/pid")" 2>/dev/null
  done
  for _ in $(seq 50); do pgrep -f "$RUN/node[12]/" >/dev/null || break; sleep 0.1; done
  pkill -KILL -f "$RUN/node[12]/"
  local cg
  for n in "${NODES[@]}"; do
    for cg in /sys/fs/cgroup/*/meshlb-sw-$n; do
      [[ -d $cg ]] || continue
      cat "$cg"/*/cgroup.procs 2>/dev/null | xargs -r kill -KILL 2>/dev/null
      for _ in $(seq 20); do rmdir "$cg"/* "$cg" 2>/dev/null && break; sleep 0.1; done
    done
  done
  teardown "$RUN/meshlbd.pid" "${NS[@]}"
  if [[ -d $RUN ]]; then
    grep -o " $RUN/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "${RUN:?}"/node1 "${RUN:?}"/node2 "${RUN:?}"/tls
  fi
}

# cgroup v1 hierarchies, as Debian's cgroupfs-mount sets them up (dockerd needs them
# where there is no systemd to do it).
cgroups_up() {
  mountpoint -q /sys/fs/cgroup/devices && return 0
  if command -v cgroupfs-mount >/dev/null; then cgroupfs-mount; fi
  mountpoint -q /sys/fs/cgroup/devices
}

dockerd_up() {  # node
  local n=$1 d i=${1#n}
  d=$(ndir "$n")
  mkdir -p "$d"
  # A shared mount, so that the namespaces dockerd mounts under it reach the node
  # agent's container (bind-propagation=rslave); systemd hosts share / already.
  mount --bind "$d" "$d" && mount --make-rshared "$d"
  cat >"$d/daemon.json" <<JSON
{"bip": "198.18.$((230 + i)).1/24",
 "default-address-pools": [{"base": "198.18.$((192 + 16 * (i - 1))).0/20", "size": 24}],
 "cgroup-parent": "meshlb-sw-$n",
 "deprecated-key-path": "$d/key.json", "log-level": "warn"}
JSON
  # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup hierarchies.
  # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: a task's image is imported, so the node must
  # not try (and time out) pulling it from a registry first.
  # The manager also serves its API on TCP with TLS, client certificates required.
  local tcp=""
  [[ $n == n1 ]] && tcp="-H tcp://$(nodeip n1):2376 --tlsverify --tlscacert $RUN/tls/ca.pem \
    --tlscert $RUN/tls/server.pem --tlskey $RUN/tls/server-key.pem"
  (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nsenter --net="/var/run/netns/sw-$n" unshare --uts sh -c \
    "hostname node$i; exec dockerd --config-file $d/daemon.json --data-root $d/root \
     --exec-root $d/exec --pidfile $d/pid -H unix://$d/docker.sock $tcp" >"$d/dockerd.log" 2>&1 &)
  for _ in $(seq 150); do
    dk "$n" info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -5 "$d/dockerd.log" >&2
  return 1
}

# Certificates for the manager's TLS endpoint: a CA, the server's (for its underlay
# address), a client's in tls/client (ca.pem, cert.pem, key.pem: DOCKER_CERT_PATH), and
# the same client with a CA the server does not chain to in tls/wrong.
tls_up() {
  local t=$RUN/tls
  mkdir -p "$t/client" "$t/wrong"
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
  key "$t/ca-key.pem" && key "$t/server-key.pem" && key "$t/client/key.pem" && key "$t/wrong-key.pem" &&
    openssl req -x509 -new -key "$t/ca-key.pem" -subj /CN=meshlb-test-ca -days 2 -out "$t/ca.pem" &&
    openssl req -x509 -new -key "$t/wrong-key.pem" -subj /CN=other-ca -days 2 -out "$t/wrong/ca.pem" &&
    openssl req -new -key "$t/server-key.pem" -subj /CN=node1 |
    openssl x509 -req -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial -days 2 \
      -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$(nodeip n1)") \
      -out "$t/server.pem" 2>/dev/null &&
    openssl req -new -key "$t/client/key.pem" -subj /CN=meshlb-swarm |
    openssl x509 -req -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial -days 2 \
      -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out "$t/client/cert.pem" 2>/dev/null ||
    return 1
  cp "$t/ca.pem" "$t/client/ca.pem"
  cp "$t/client/cert.pem" "$t/client/key.pem" "$t/wrong/"
}

# The task image, from busybox-static: `docker import` on every node.
image_up() {
  local img=$RUN/img n
  rm -rf "$img"
  mkdir -p "$img/bin" "$img/www/cgi-bin"
  cp /bin/busybox "$img/bin/"
  for c in sh httpd hostname dd cat; do ln -s busybox "$img/bin/$c"; done
  cat >"$img/www/cgi-bin/who" <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "processed by $(hostname) for $REMOTE_ADDR"
CGI
  cat >"$img/www/cgi-bin/big" <<'CGI'
#!/bin/sh
printf 'Content-Type: application/octet-stream\r\n\r\n'
printf '%-63s\n' "$(hostname)"
dd if=/dev/zero bs=65536 count=384 2>/dev/null
CGI
  chmod +x "$img"/www/cgi-bin/*
  echo ok >"$img/www/index.html"
  # The same content on ports 80 and 81 (81: a second target port to publish).
  local cmd='httpd -p 81 -h /www && exec httpd -f -p 80 -h /www'
  for n in "${NODES[@]}"; do
    tar -C "$img" -c . | dk "$n" import -c "CMD [\"/bin/sh\", \"-c\", \"$cmd\"]" - \
      meshlb-task:1 >/dev/null || return 1
  done
}

# The node agent's image: meshlb-swarm and the shared objects it loads, as they are
# on this machine (ldd), imported on every node.
node_image_up() {
  local img=$RUN/node-img bin=$BUILD/swarm/meshlb-swarm n lib
  rm -rf "$img"
  mkdir -p "$img/usr/bin"
  cp "$bin" "$img/usr/bin/"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$img$(dirname "$lib")"
    cp -L "$lib" "$img$lib"
  done
  for n in "${NODES[@]}"; do
    tar -C "$img" -c . | dk "$n" import - meshlb-node:1 >/dev/null || return 1
  done
}

swarm_up() {
  # A data-path port other than VXLAN's 4789: the agent must read it from the swarm.
  dk n1 swarm init --advertise-addr "$(nodeip n1)" --default-addr-pool 198.18.128.0/18 \
    --data-path-port 4790 >/dev/null || return 1
  dk n2 swarm join --token "$(dk n1 swarm join-token -q worker)" "$(nodeip n1):2377" >/dev/null ||
    return 1
  # The ingress network, recreated so that part of it is kept for the appliance.
  echo y | dk n1 network rm ingress >/dev/null || return 1
  for _ in $(seq 50); do dk n1 network inspect ingress >/dev/null 2>&1 || break; sleep 0.1; done
  dk n1 network create --driver overlay --ingress --subnet 198.18.128.0/24 \
    --ip-range 198.18.128.0/25 --gateway 198.18.128.1 ingress >/dev/null
}

up() {
  down
  mkdir -p "$RUN"
  rm -f "$RUN"/*.log "$RUN/state"  # no configuration from an earlier run
  cgroups_up || { echo "# cgroup hierarchies missing (cgroupfs-mount)" >&2; return 1; }
  for ns in "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  wire_underlay sw "${NODES[@]}"
  local n
  for n in "${NODES[@]}"; do
    # Replies a task sends outside the overlay leave through the node's gateway.
    ip -n "sw-$n" route add default via "$APP_VTEP"
  done
  tls_up || { echo "# could not make the TLS certificates" >&2; return 1; }
  for n in "${NODES[@]}"; do dockerd_up "$n" || return 1; done
  swarm_up || return 1
  image_up || return 1
  node_image_up || return 1
}

start() {  # meshlbd with a state file, its twins addressed
  rm -f "$SOCK"
  ip netns exec sw-lb "$BUILD/control/meshlbd" --lcores 0@0,1@1 --no-huge -m 512 --no-pci \
    --file-prefix "mlb-sw-$$" --log-level 'pmd.*:error' \
    --vdev net_af_packet0,iface=p0 --vdev net_af_packet1,iface=p1 \
    -- --control-socket "$SOCK" --state-file "$RUN/state" >>"$RUN/meshlbd.log" 2>&1 &
  echo $! >"$RUN/meshlbd.pid"
  for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
  [[ -S $SOCK ]] || { cat "$RUN/meshlbd.log" >&2; return 1; }
  lbx ip addr add 198.18.0.1/24 dev lb0
  lbx ip addr add "$APP_VTEP/24" dev lb1
  lbx ip link set lb0 up
  lbx ip link set lb1 up
}

# The agents: one for the appliance (in its namespace), one per node.
agent_start() {
  (ip netns exec sw-lb "$BUILD/swarm/meshlb-swarm" run --docker-host "unix://$(ndir n1)/docker.sock" \
    --socket "$SOCK" --overlay-address "$APP_OV" --vtep "$APP_VTEP" --publish-address 198.18.0.1 \
    --drain-timeout 30 --status-file "$RUN/swarm.status" >>"$RUN/agent.log" 2>&1 &
    echo $! >"$RUN/agent.pid")
}
agent_stop() {
  [[ -f $RUN/agent.pid ]] || return 0
  local pid
  pid=$(cat "$RUN/agent.pid")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$RUN/agent.pid"
}
# The node side as a real cluster runs it: a global service on every node, in the
# node's network namespace, with the capabilities to enter Docker's namespaces and
# Docker's state mounted (the node's own directory: a template on its hostname).
nodes_start() {
  dk n1 service create --detach --name meshlb-node --mode global --network host \
    --cap-add NET_ADMIN --cap-add SYS_ADMIN --no-resolve-image --stop-grace-period 5s \
    --mount "type=bind,src=$RUN/{{.Node.Hostname}},dst=/run/node,bind-propagation=rslave" \
    meshlb-node:1 /usr/bin/meshlb-swarm node --docker-host unix:///run/node/docker.sock \
    --netns-dir /run/node/exec/netns --overlay-address "$APP_OV" --vtep "$APP_VTEP" >/dev/null
}
# The node agents' output, each node's (stopping them first with $1 = stop).
nodes_log() {
  local n c
  for n in "${NODES[@]}"; do
    for c in $(dk "$n" ps -aq --filter label=com.docker.swarm.service.name=meshlb-node); do
      [[ ${1:-} == stop ]] && dk "$n" stop "$c" >/dev/null
      dk "$n" logs "$c" 2>&1
    done
  done
}

# The task answering one request to port $1 ("node2.3"), or "FAIL".
who() {
  local out
  out=$(client curl -s -m 3 "http://198.18.0.1:$1/cgi-bin/who") || { echo FAIL; return; }
  sed -n 's/^processed by \([^ ]*\) for .*/\1/p' <<<"$out"
}
