#!/usr/bin/env bash
# Runs the network example: creates the namespace fl-example with a veth pair, starts the demo
# service inside it, runs the experiment, deletes the namespace (and with it the veth pair).
# As root. FAULTLINE names the binary (default: faultline on PATH); extra arguments go to
# `faultline run` (e.g. --html report.html).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
faultline=${FAULTLINE:-faultline}
ns=fl-example
work=$(mktemp -d)
service=
cleanup() {
  [ -n "$service" ] && kill "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del fl-ex-host 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip link add fl-ex-host type veth peer name fl-ex-ns
ip link set fl-ex-ns netns "$ns"
ip addr add 10.203.0.1/30 dev fl-ex-host
ip link set fl-ex-host up
ip -n "$ns" addr add 10.203.0.2/30 dev fl-ex-ns
ip -n "$ns" link set fl-ex-ns up
ip -n "$ns" link set lo up
ip netns exec "$ns" "$faultline" demo-service --listen 10.203.0.2:18080 > "$work/service.out" &
service=$!
for _ in $(seq 100); do grep -q listening "$work/service.out" 2>/dev/null && break; sleep 0.05; done
grep -q listening "$work/service.out" || { echo "the demo service did not start" >&2; exit 2; }
set +e
"$faultline" run --policy "$here/policy.toml" "$here/experiment.yaml" "$@"
code=$?
set -e
exit $code
