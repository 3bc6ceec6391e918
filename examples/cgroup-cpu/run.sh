#!/usr/bin/env bash
# Runs the cgroup example: creates /faultline-example (in the v1 cpu hierarchy, or v2 on a
# pure v2 host), starts the demo service in it, runs the experiment, removes everything.
# As root. FAULTLINE names the binary (default: faultline on PATH); extra arguments go to
# `faultline run` (e.g. --html report.html).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
faultline=${FAULTLINE:-faultline}
name=faultline-example
work=$(mktemp -d)
dirs=()
if [ -d /sys/fs/cgroup/cpu ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  dirs+=(/sys/fs/cgroup/cpu/$name)          # hybrid or v1: the cpu controller's hierarchy
else
  dirs+=(/sys/fs/cgroup/$name)              # pure v2
fi
service=
cleanup() {
  [ -n "$service" ] && kill "$service" 2>/dev/null && wait "$service" 2>/dev/null || true
  for d in "${dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for d in "${dirs[@]}"; do mkdir -p "$d"; done
"$faultline" demo-service --listen 127.0.0.1:0 > "$work/service.out" &
service=$!
for _ in $(seq 100); do grep -q listening "$work/service.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$work/service.out")
[ -n "$port" ] || { echo "the demo service did not start" >&2; exit 2; }
for d in "${dirs[@]}"; do echo "$service" > "$d/cgroup.procs"; done
sed "s/{{PORT}}/$port/g" "$here/experiment.yaml" > "$work/experiment.yaml"
sed "s/{{PORT}}/$port/g" "$here/policy.toml" > "$work/policy.toml"
set +e
"$faultline" run --policy "$work/policy.toml" "$work/experiment.yaml" "$@"
code=$?
set -e
exit $code
