#!/usr/bin/env bash
# Start the demo target, inspect it with heapscope, stop it. Usage: demo.sh HEAPSCOPE DEMO_TARGET
set -euo pipefail
hs=$1; target=$2
fifo=$(mktemp -u); mkfifo "$fifo"
"$target" < "$fifo" > "$fifo.pid" &
tpid=$!
exec 3>"$fifo"            # keeps the target's stdin open until we close it
trap 'exec 3>&-; wait $tpid 2>/dev/null; rm -f "$fifo" "$fifo.pid"' EXIT
for _ in $(seq 100); do [ -s "$fifo.pid" ] && break; sleep 0.05; done
echo "\$ heapscope stat $tpid"
"$hs" stat "$tpid"
echo
echo "\$ heapscope chunks $tpid --limit 20"
"$hs" chunks "$tpid" --limit 20
