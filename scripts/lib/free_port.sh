# free_port: prints a loopback TCP port nothing listens on (up to 50 random tries in
# 20000-49999); fails when none is found. Shared by the benchmarks and shell tests that
# start a server. Source it.
# shellcheck shell=bash
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}
