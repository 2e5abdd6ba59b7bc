#!/usr/bin/env bash
# Live updates under load, with two workers and the overlay, and a soak (issue 13):
# the two-node overlay topology (tests/e2e/overlay_topology.sh), meshlbd with two
# workers, Swarm's form of a published port over four tasks on two nodes; for
# MESHLB_SOAK_SECONDS (default 45; `scripts/test --nightly` runs 600):
#   traffic: wrk (keep-alive connections), a new connection every 50 ms, and 8 MiB
#            downloads one after another;
#   churn:   every 200 ms one change: the serving tasks' weights (1-5), an unused
#            service with 20 servers added or deleted, a MARK rule added or deleted,
#            a timeout set;
#   samples: meshlbd's resident memory and tracked flows every 5 s.
# Checked: no request fails of any kind, and resident memory does not grow once the
# tables are warm (the last sample within 8 MiB of the one at a fifth of the run).
set -uo pipefail
if [[ $EUID -ne 0 ]]; then echo "1..0 # SKIP needs root (network namespaces)"; exit 0; fi
MLB_RUN=${MLB_RUN:-/tmp/meshlb-e2e}-soak
source "$(dirname "$0")/overlay_topology.sh"
trap down EXIT

SECS=${MESHLB_SOAK_SECONDS:-45}
# In the ASan build the allocator holds freed memory back in its quarantine (256 MiB
# by default) to catch use after free: every snapshot freed would count as growth.
# A quarantine of 8 MiB fills in seconds, after which resident memory means what it
# does in the release build (where this setting does nothing).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8"
URL=http://198.18.0.1:8080/

up
serve || { echo "tasks did not start"; exit 1; }
start 2 || exit 1
publish || { echo "publish failed"; exit 1; }
[[ $(answers 4 | wc -w) == 4 ]] || { echo "not serving"; exit 1; }
PID=$(cat "$RUN/meshlbd.pid")

flows() {
  ctl stats --json | /usr/bin/python3 -c \
    'import json,sys; print(sum(w["flows"] for w in json.load(sys.stdin)["workers"]))'
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

END=$(($(date +%s) + SECS))
client wrk -t1 -c8 -d "${SECS}s" --timeout 5s "$URL" >"$RUN/wrk.out" 2>&1 &
WRK=$!
# New connections, each on its own.
(
  ok=0 bad=0
  while (($(date +%s) < END)); do
    if client curl -s -m 5 -H 'Connection: close' "$URL" | grep -q processed; then
      ok=$((ok + 1))
    else
      bad=$((bad + 1))
    fi
    sleep 0.05
  done
  echo "$ok $bad" >"$RUN/new-conns"
) &
NEWC=$!
# Downloads, one after another.
(
  ok=0 bad=0
  while (($(date +%s) < END)); do
    size=$(client curl -s -m 30 -o /dev/null -w '%{size_download}' "${URL}big")
    if [[ $size == $((8 << 20)) ]]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" >"$RUN/downloads"
) &
DL=$!
# Churn: one change every 200 ms; every command must be accepted.
(
  n=0 refused=0 svc_up=0 mark_up=0
  while (($(date +%s) < END)); do
    n=$((n + 1))
    case $((n % 4)) in
      0) for t in "${TASKS[@]}"; do
           ctl ipvsadm -e -f 256 -r "$(taskip "$t"):80" -m -w $((RANDOM % 5 + 1)) || refused=$((refused + 1))
         done ;;
      1) if ((svc_up)); then
           ctl ipvsadm -D -f 512 || refused=$((refused + 1))
         else
           { echo "-A -f 512 -s mh"
             for i in $(seq 20); do echo "-a -f 512 -r 198.18.129.$i:80 -m -w $i"; done
           } | ctl ipvsadm -R || refused=$((refused + 1))
         fi
         svc_up=$((1 - svc_up)) ;;
      2) if ((mark_up)); then
           ctl iptables -t mangle -D PREROUTING -p tcp --dport 9090 -j MARK --set-mark 512 || refused=$((refused + 1))
         else
           ctl iptables -t mangle -A PREROUTING -p tcp --dport 9090 -j MARK --set-mark 512 || refused=$((refused + 1))
         fi
         mark_up=$((1 - mark_up)) ;;
      3) ctl ipvsadm --set $((900 + n % 7)) 120 300 || refused=$((refused + 1)) ;;
    esac
    sleep 0.2
  done
  echo "$n $refused" >"$RUN/churn"
) &
CHURN=$!
: >"$RUN/samples"
while (($(date +%s) < END)); do
  echo "$(($(date +%s) - END + SECS)) $(rss_kb) $(flows)" >>"$RUN/samples"
  sleep 5
done
wait $WRK $NEWC $DL $CHURN

read -r nc_ok nc_bad <"$RUN/new-conns"
read -r dl_ok dl_bad <"$RUN/downloads"
read -r changes refused <"$RUN/churn"
requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$RUN/wrk.out")
errors=$(grep -E 'Socket errors|Non-2xx' "$RUN/wrk.out" | tr -s ' ' | tr '\n' ';')
echo "# $SECS s, two workers, overlay: wrk ${requests:-0} requests ${errors:-no errors};" \
  "new connections $nc_ok ok, $nc_bad failed; downloads $dl_ok ok, $dl_bad failed;" \
  "$changes changes, $refused refused"
echo "# samples (s, RSS KiB, flows): $(tr '\n' ';' <"$RUN/samples")"

no_request_failed() {
  ((${requests:-0} > 0 && nc_ok > 0 && nc_bad == 0 && dl_ok > 0 && dl_bad == 0)) && [[ -z $errors ]]
}
changes_applied() { ((changes > 0 && refused == 0)); }
memory_flat() {
  local n first last
  n=$(wc -l <"$RUN/samples")
  first=$(sed -n "$((n / 5 + 1))p" "$RUN/samples" | cut -d' ' -f2)
  last=$(tail -1 "$RUN/samples" | cut -d' ' -f2)
  echo "# RSS at a fifth of the run $first KiB, at the end $last KiB"
  ((n >= 3 && last <= first + 8192))
}
alive() { kill -0 "$PID" && ! grep -E 'AddressSanitizer|runtime error|LeakSanitizer|PANIC' "$RUN/meshlbd.log"; }
check "no request failed: wrk, new connections, downloads (two workers, overlay, live changes)" no_request_failed
check "every change accepted while under load" changes_applied
check "resident memory flat once the tables are warm" memory_flat
check "meshlbd alive, its log clean" alive
tap_end soak
