#!/bin/bash
# How many neighbours the kernel resolves for N network namespaces on one bridge, each sending
# every other one IPv6 datagram (root). The neighbour table is one per kernel: past
# net.ipv6.neigh.default.gc_thresh3 (1,024) entries for all namespaces together, new ones are
# refused ("neighbor table overflow" in the kernel log). Usage: bench/netns_neighbours.sh [N]
set -u
N=${1:-45}
cleanup() {
  for i in $(seq 1 "$N"); do ip netns del "fcnb-$i" 2>/dev/null; done
  ip netns del fcnb-br 2>/dev/null
}
trap cleanup EXIT
ip netns add fcnb-br
ip -n fcnb-br link add br0 type bridge
ip -n fcnb-br link set br0 up
for i in $(seq 1 "$N"); do
  ip netns add "fcnb-$i"
  ip -n fcnb-br link add "p$i" type veth peer name eth0 netns "fcnb-$i"
  ip -n fcnb-br link set "p$i" master br0
  ip -n fcnb-br link set "p$i" up
  ip -n "fcnb-$i" addr add "fd98:fc::$(printf %x "$i")/64" dev eth0 nodad
  ip -n "fcnb-$i" link set eth0 up
done
sleep 2
before=$(dmesg | grep -c "table overflow")
for i in $(seq 1 "$N"); do
  ip netns exec "fcnb-$i" python3 -c "
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
refused = 0
for j in range(1, $N + 1):
    if j != $i:
        try:
            s.sendto(b'x', ('fd98:fc::%x' % j, 9))
        except OSError:
            refused += 1
time.sleep(3)
" &
done
wait
resolved=0
for i in $(seq 1 "$N"); do
  resolved=$((resolved + $(ip -n "fcnb-$i" -6 neigh show | grep -c "REACHABLE\|STALE\|DELAY\|PROBE")))
done
after=$(dmesg | grep -c "table overflow")
echo "{\"namespaces\": $N, \"neighbours_wanted\": $((N * (N - 1))), \"resolved\": $resolved," \
  "\"overflow_messages\": $((after - before)), \"gc_thresh3\": $(cat /proc/sys/net/ipv6/neigh/default/gc_thresh3)}"
