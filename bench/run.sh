#!/usr/bin/env bash
# Benchmark matrix: this project's Copas against its peers, same workloads,
# same pinning (servers on CPU 0, load generators on CPU 1).
#
#   bench/run.sh            full matrix (3 runs per case, 8-9 minutes)
#   bench/run.sh quick      smoke test (1 run, short durations, 1.5 minutes)
#
# Settings (environment):
#   BENCH_RUNS            runs per case; the table shows medians (full: 3)
#   BENCH_DURATION        seconds of load per echo/HTTP case (full: 2)
#   BENCH_IDLE_DURATION   seconds the idle connections are held (full: 10)
#   BENCH_LUA             interpreter (default lua5.4)
#   BENCH_ONLY            space-separated scenario names to run (echo scale
#                         http timers pingpong idle); default all
#   BENCH_SERVER_CPU / BENCH_LOAD_CPU   cores to pin to (0 / 1)
#   COPAS_REF_PATH        directory holding a reference Copas (copas.lua or
#                         src/copas.lua, for example a checkout of Copas 4.11)
#                         and, if not installed, its Lua dependencies
#                         (binaryheap, timerwheel, coxpcall); adds the
#                         "copas-ref" column. Unset: the column is skipped.
#   BENCH_NO_RESULTS=1    do not write bench/results/<date>-<machine>.md
#                         (nor the .tsv and the plots)
#   BENCH_RESULTS_DIR     where the results go (default bench/results)
#
# Results: <date>-<machine>.md (the tables below), <date>-<machine>.tsv (every
# figure stored, tab-separated: scenario, metric, impl, median, min, max,
# runs; also latency percentiles the tables leave out) and, when gnuplot is
# installed, PNG plots of the .tsv in <date>-<machine>/ drawn by bench/plot.sh
# (linked from the .md). A quick run adds "-quick" to these names.
#
# Peers: cqueues and luv (their Lua modules must be installed for BENCH_LUA),
# bench/c_echo.c (plain C epoll server, the physical limit) and nginx for the
# HTTP case; missing peers are skipped. wrk drives the HTTP case,
# bench/loadgen.c the echo and idle cases. All traffic is on 127.0.0.1.
#
# Figures: server CPU is utime+stime of the server process over the measured
# window (/proc/<pid>/stat); the "x" figures are copas-c's median divided by
# that peer's median (below 1 = copas-c uses less / does less). Each peer a
# target compares with runs right after copas-c, and the targets' CPU ratios
# to c-epoll are medians of the ratios within each run, which a machine
# whose speed drifts between runs disturbs less.

set -u
export LC_ALL=C

MODE=${1:-full}
case "$MODE" in
  quick) RUNS=${BENCH_RUNS:-1}; DUR=${BENCH_DURATION:-1}; IDLE_DUR=${BENCH_IDLE_DURATION:-2}
         SCALE_CONNS="10000"; SLEEPERS="20000 2"; PINGPONG="10000 20"; IDLE_CONNS=10000 ;;
  full)  RUNS=${BENCH_RUNS:-3}; DUR=${BENCH_DURATION:-2}; IDLE_DUR=${BENCH_IDLE_DURATION:-10}
         SCALE_CONNS="10000 19000"; SLEEPERS="100000 4"; PINGPONG="10000 100"; IDLE_CONNS=10000 ;;
  *) echo "usage: $0 [quick|full]" >&2; exit 2 ;;
esac
ECHO_CONNS="100 1000"
HTTP_CONNS="100 1000"
ONLY=${BENCH_ONLY:-"echo scale http timers pingpong idle"}
LUA=${BENCH_LUA:-lua5.4}
SCPU=${BENCH_SERVER_CPU:-0}
LCPU=${BENCH_LOAD_CPU:-1}

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/copas-bench.XXXXXX")
SPID=""

cleanup() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" >&2; }
has() { command -v "$1" >/dev/null 2>&1; }
wants() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- build
say "== building (core, loadgen, c_echo)"
make -s -C "$ROOT" LUA_VERSION="${BENCH_LUA_VERSION:-5.4}" >&2 || exit 1
eval "$(make -s -C "$ROOT" env LUA_VERSION="${BENCH_LUA_VERSION:-5.4}")"
OUR_LUA_PATH=$LUA_PATH
OUR_LUA_CPATH=$LUA_CPATH
unset LUA_PATH LUA_CPATH
CC=${CC:-cc}
$CC -std=c99 -O2 -Wall -Wextra -o "$WORK/loadgen" "$BENCH_DIR/loadgen.c" || exit 1
$CC -std=c99 -O2 -Wall -Wextra -o "$WORK/c_echo" "$BENCH_DIR/c_echo.c" || exit 1
LOADGEN=$WORK/loadgen

for tool in taskset timeout; do has $tool || { say "missing: $tool"; exit 1; }; done

# ---------------------------------------------------------------- peers
IMPLS="copas-c"
REF_LUA_PATH=""
if [ -n "${COPAS_REF_PATH:-}" ]; then
  r=$COPAS_REF_PATH
  if [ -f "$r/src/copas.lua" ]; then r="$r/src"; fi
  if [ -f "$r/copas.lua" ]; then
    REF_LUA_PATH="$r/?.lua;$r/?/init.lua;"
    [ "$r" = "$COPAS_REF_PATH" ] || REF_LUA_PATH="$REF_LUA_PATH$COPAS_REF_PATH/?.lua;$COPAS_REF_PATH/?/init.lua;"
    REF_LUA_PATH="$REF_LUA_PATH;"
    IMPLS="$IMPLS copas-ref"
  else
    say "COPAS_REF_PATH has no copas.lua: copas-ref skipped"
  fi
else
  say "COPAS_REF_PATH unset: copas-ref column skipped"
fi
if $LUA -e 'require "cqueues"' 2>/dev/null; then IMPLS="$IMPLS cqueues"; else say "cqueues not found: skipped"; fi
if $LUA -e 'require "luv"' 2>/dev/null; then IMPLS="$IMPLS luv"; else say "luv not found: skipped"; fi
IMPLS="$IMPLS c-epoll"
HAVE_NGINX=0; has nginx && HAVE_NGINX=1
HAVE_WRK=0; has wrk && HAVE_WRK=1

# run order: the peers a target compares with run right after copas-c, so
# that each pair of runs meets the same machine (see pratio below)
# order FIRST...: FIRST (those present) then the rest of IMPLS
order() {
  local o="" i
  for i in "$@" $IMPLS; do
    case " $IMPLS nginx " in *" $i "*) ;; *) continue ;; esac
    case " $o " in *" $i "*) ;; *) o="$o $i" ;; esac
  done
  echo $o
}
ECHO_ORDER=$(order copas-c c-epoll)
HTTP_ORDER=$(order copas-c $( [ "$HAVE_NGINX" = 1 ] && echo nginx ) luv)

# prints the command line (with its environment) that runs workload $2 for impl $1
impl_cmd() {
  local impl=$1 wl=$2; shift 2
  case $impl in
    copas-c)   echo "env LUA_PATH='$OUR_LUA_PATH' LUA_CPATH='$OUR_LUA_CPATH' $LUA $BENCH_DIR/workloads/copas/$wl.lua $*" ;;
    copas-ref) echo "env LUA_PATH='$REF_LUA_PATH' $LUA $BENCH_DIR/workloads/copas/$wl.lua $*" ;;
    cqueues)   echo "$LUA $BENCH_DIR/workloads/cqueues/$wl.lua $*" ;;
    luv)       echo "$LUA $BENCH_DIR/workloads/luv/$wl.lua $*" ;;
    c-epoll)   [ "$wl" = echo ] && echo "$WORK/c_echo $*" ;;
  esac
}

CMDS=$WORK/commands
: > "$CMDS"
note_cmd() { grep -qxF -- "$1" "$CMDS" || echo "$1" >> "$CMDS"; }

# kv KEY LINE: value of KEY=... in a key=value line
kv() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

# kvn KEY LINE: the same, 0 when absent
kvn() { local v; v=$(kv "$1" "$2"); echo "${v:-0}"; }

# store SCENARIO METRIC IMPL VALUE (empty values are not stored)
# ('/' in a metric name is kept as ':' in the file name)
store() { [ -n "$4" ] || return 0; mkdir -p "$WORK/res/$1"; echo "$4" >> "$WORK/res/$1/${2//\//:}@$3"; }
# xstore: the same for figures that go to the .tsv (and the plots) only
xstore() { [ -n "$4" ] || return 0; mkdir -p "$WORK/xres/$1"; echo "$4" >> "$WORK/xres/$1/${2//\//:}@$3"; }

free_port() {
  $LUA -e 'local s = require("socket").bind("127.0.0.1", 0); print((select(2, s:getsockname()))); s:close()'
}

# start_server "command": starts it pinned, sets SPID (the server process
# itself: exec, no wrapper) and PORT. The servers exit by themselves at the
# end of the lifetime they are given.
start_server() {
  local cmd=$1 out=$WORK/server.out
  : > "$out"
  note_cmd "taskset -c $SCPU $cmd"
  eval "exec taskset -c $SCPU $cmd" > "$out" 2>"$WORK/server.err" &
  SPID=$!
  PORT=""
  local i
  for i in $(seq 100); do
    PORT=$(sed -n 's/^port=//p' "$out" | head -1)
    [ -n "$PORT" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$PORT" ]; then
    say "   server did not start: $cmd"; sed 's/^/   | /' "$WORK/server.err" >&2
    stop_server; return 1
  fi
}

stop_server() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}

server_cpu() {  # utime+stime of $SPID in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$SPID/stat"
}

# loadgen run against a fresh server: SCEN IMPL CONNS DURATION MSG
run_loadgen() {
  local scen=$1 impl=$2 conns=$3 dur=$4 msg=$5 cmd line
  # Copas 4.11 waits with socket.select: at most FD_SETSIZE (1024) sockets
  if [ "$impl" = copas-ref ] && [ "$conns" -gt 1000 ]; then return; fi
  cmd=$(impl_cmd "$impl" echo 0 "$(( ${dur%.*} + 60 ))") || return
  [ -n "$cmd" ] || return
  start_server "$cmd" || { store "$scen" "conns failed" "$impl" "$conns"; return; }
  note_cmd "LOADGEN_WATCH_PID=<server pid> taskset -c $LCPU $LOADGEN 127.0.0.1 <port> $conns $dur $msg"
  line=$(LOADGEN_WATCH_PID=$SPID timeout $(( ${dur%.*} + 90 )) taskset -c "$LCPU" \
         "$LOADGEN" 127.0.0.1 "$PORT" "$conns" "$dur" "$msg")
  stop_server
  say "   $impl: $line"
  if [ "$msg" = 0 ]; then
    store "$scen" "server CPU s" "$impl" "$(kv server_cpu_s "$line")"
    store "$scen" "server ctx switches" "$impl" "$(kv server_ctxsw "$line")"
    store "$scen" "RSS B/conn" "$impl" "$(kv server_rss_per_conn_b "$line")"
  else
    store "$scen" "server CPU us/rt" "$impl" "$(kv server_cpu_us_per_rt "$line")"
    store "$scen" "rt/s" "$impl" "$(kv rt_per_s "$line")"
    store "$scen" "p99 ms" "$impl" "$(kv p99_ms "$line")"
    xstore "$scen" "p50 ms" "$impl" "$(kv p50_ms "$line")"
    xstore "$scen" "p90 ms" "$impl" "$(kv p90_ms "$line")"
    xstore "$scen" "p99.9 ms" "$impl" "$(kv p999_ms "$line")"
  fi
  # connections not served: never connected, dropped, or no round trip
  local bad=$(( conns - $(kvn connected "$line") + $(kvn failed "$line") + $(kvn starved "$line") ))
  [ "$bad" -le "$conns" ] || bad=$conns
  store "$scen" "conns failed" "$impl" "$bad"
}

# wrk run against a fresh server: SCEN IMPL CONNS
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; print v }'; }
run_wrk() {
  local scen=$1 impl=$2 conns=$3 cmd out cpu0 cpu1 rps p99 errs
  local life=$(( DUR + 60 ))
  if [ "$impl" = nginx ]; then
    local ndir=$WORK/nginx port
    mkdir -p "$ndir"
    port=$(free_port)
    sed -e "s#@DIR@#$ndir#g" -e "s#@PORT@#$port#g" "$BENCH_DIR/nginx.conf" > "$ndir/nginx.conf"
    note_cmd "taskset -c $SCPU nginx -p <dir> -c <dir>/nginx.conf   (bench/nginx.conf with @DIR@, @PORT@ filled in)"
    taskset -c "$SCPU" nginx -p "$ndir" -c "$ndir/nginx.conf" 2>"$WORK/server.err" &
    SPID=$!
    PORT=$port
    local i
    for i in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
      sleep 0.05
    done
  else
    cmd=$(impl_cmd "$impl" http 0 "$life") || return
    [ -n "$cmd" ] || return
    start_server "$cmd" || return
  fi
  note_cmd "taskset -c $LCPU wrk -t1 -c$conns -d${DUR}s --latency -s $BENCH_DIR/wrk-latency.lua http://127.0.0.1:<port>/"
  cpu0=$(server_cpu)
  out=$(timeout $(( DUR + 30 )) taskset -c "$LCPU" wrk -t1 -c"$conns" -d"${DUR}s" --latency \
        -s "$BENCH_DIR/wrk-latency.lua" "http://127.0.0.1:$PORT/" 2>&1)
  cpu1=$(server_cpu)
  stop_server
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  p99=$(echo "$out" | awk '$1 == "99%" { print $2 }' | to_ms)
  errs=$(echo "$out" | awk '/Socket errors:/ { gsub(/[^0-9 ]/, " "); n = 0; for (i = 1; i <= NF; i++) n += $i; print n }
                            /Non-2xx/ { print $NF }' | awk '{ s += $1 } END { print s + 0 }')
  local reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
  say "   $impl: rps=$rps p99_ms=$p99 errors=$errs requests=$reqs server_cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')"
  store "$scen" "req/s" "$impl" "${rps:-0}"
  store "$scen" "p99 ms" "$impl" "${p99:-NA}"
  store "$scen" "errors" "$impl" "$errs"
  local lat
  lat=$(echo "$out" | grep '^latency ' | tail -1)
  xstore "$scen" "p50 ms" "$impl" "$(kv p50_ms "$lat")"
  xstore "$scen" "p90 ms" "$impl" "$(kv p90_ms "$lat")"
  xstore "$scen" "p99.9 ms" "$impl" "$(kv p999_ms "$lat")"
  if [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
    store "$scen" "server CPU us/req" "$impl" "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$reqs" 'BEGIN { printf "%.3f", (b - a) * 1e6 / n }')"
  fi
}

# self-contained workload (sleepers, pingpong): SCEN IMPL WORKLOAD ARGS...
run_self() {
  local scen=$1 impl=$2 wl=$3; shift 3
  local cmd line
  cmd=$(impl_cmd "$impl" "$wl" "$@") || return
  [ -n "$cmd" ] || return
  note_cmd "taskset -c $SCPU $cmd"
  line=$(eval "timeout 120 taskset -c $SCPU $cmd" 2>"$WORK/self.err" | tail -1)
  say "   $impl: ${line:-FAILED $(tail -1 "$WORK/self.err")}"
  [ -n "$line" ] || { store "$scen" failed "$impl" 1; return; }
  if [ "$wl" = sleepers ]; then
    store "$scen" "CPU s" "$impl" "$(kv cpu_s "$line")"
    store "$scen" "wall s" "$impl" "$(kv wall_s "$line")"
    store "$scen" "late mean ms" "$impl" "$(kv late_mean_ms "$line")"
    store "$scen" "late p99 ms" "$impl" "$(kv late_p99_ms "$line")"
  else
    store "$scen" "switches/s" "$impl" "$(kv switches_per_s "$line")"
    store "$scen" "switches/CPU s" "$impl" "$(kv switches_per_cpu_s "$line")"
    store "$scen" "CPU s" "$impl" "$(kv cpu_s "$line")"
  fi
}

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
SCENARIOS=""
addscen() { SCENARIOS="$SCENARIOS $1"; }

for run in $(seq "$RUNS"); do
  say "== run $run/$RUNS"
  if wants echo; then
    for c in $ECHO_CONNS; do
      addscen "echo-$c"
      say " echo, $c connections, ${DUR}s"
      for impl in $ECHO_ORDER; do run_loadgen "echo-$c" "$impl" "$c" "$DUR" 64; done
    done
  fi
  if wants scale; then
    for c in $SCALE_CONNS; do
      addscen "scale-$c"
      say " echo scale, $c connections, ${DUR}s"
      for impl in $ECHO_ORDER; do run_loadgen "scale-$c" "$impl" "$c" "$DUR" 64; done
    done
  fi
  if wants http && [ "$HAVE_WRK" = 1 ]; then
    for c in $HTTP_CONNS; do
      addscen "http-$c"
      say " http keep-alive (wrk -t1), $c connections, ${DUR}s"
      for impl in $HTTP_ORDER; do
        [ "$impl" = c-epoll ] || run_wrk "http-$c" "$impl" "$c"
      done
    done
  fi
  if wants timers; then
    addscen "timers"
    say " timers: sleepers.lua $SLEEPERS"
    for impl in $IMPLS; do run_self timers "$impl" sleepers $SLEEPERS; done
  fi
  if wants pingpong; then
    addscen "pingpong"
    say " scheduling: pingpong.lua $PINGPONG"
    for impl in $IMPLS; do run_self pingpong "$impl" pingpong $PINGPONG; done
  fi
  if wants idle; then
    addscen "idle-$IDLE_CONNS"
    say " idle: $IDLE_CONNS connections held ${IDLE_DUR}s"
    for impl in $IMPLS; do run_loadgen "idle-$IDLE_CONNS" "$impl" "$IDLE_CONNS" "$IDLE_DUR" 0; done
  fi
done
ELAPSED=$(( $(date +%s) - T0 ))

# ---------------------------------------------------------------- table
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "NA" || v == "") print "-"; else if (v + 0 >= 1000) printf "%.0f", v; else if (v + 0 >= 10) printf "%.1f", v; else printf "%.3g", v }'; }

COLS="$IMPLS"
[ "$HAVE_NGINX" = 1 ] && COLS="$COLS nginx"
TABLE=$WORK/table.md
{
  printf "| case | metric |"; for i in $COLS; do printf " %s |" "$i"; done; echo
  printf "|---|---|"; for i in $COLS; do printf -- "---|"; done; echo
  seen=""
  done_metrics=""
  for s in $SCENARIOS; do
    case " $seen " in *" $s "*) continue ;; esac
    seen="$seen $s"
    for f in "$WORK/res/$s/"*@copas-c "$WORK/res/$s/"*@*; do
      [ -e "$f" ] || continue
      m=$(basename "$f"); m=${m%@*}
      case "|$done_metrics|" in *"|$s/$m|"*) continue ;; esac
      done_metrics="${done_metrics:-}|$s/$m"
      ours=$( [ -f "$WORK/res/$s/$m@copas-c" ] && median "$WORK/res/$s/$m@copas-c" || echo NA )
      printf "| %s | %s |" "$s" "${m//:/\/}"
      for i in $COLS; do
        if [ -f "$WORK/res/$s/$m@$i" ]; then
          v=$(median "$WORK/res/$s/$m@$i")
          if [ "$i" != copas-c ] && [ "$ours" != NA ] && [ "$v" != NA ] && \
             awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }'; then
            printf " %s (%sx) |" "$(fmt "$v")" "$(awk -v a="$ours" -v b="$v" 'BEGIN { printf "%.2f", a / b }')"
          else
            printf " %s |" "$(fmt "$v")"
          fi
        else
          printf " - |"
        fi
      done
      echo
    done
  done
} > "$TABLE"

# ---------------------------------------------------------------- targets
# med SCEN METRIC IMPL: median or empty
med() { local f="$WORK/res/$1/${2//\//:}@$3"; [ -f "$f" ] && median "$f"; }
# check NAME EXPR VALUES...: EXPR is an awk condition over a, b, c, d
TARGETS=$WORK/targets.md
check() {
  local name=$1 expr=$2 shown=$3; shift 3
  local v
  for v in "$@"; do
    if [ -z "$v" ] || [ "$v" = NA ]; then echo "| $name | n/a (not measured) |"; return; fi
  done
  if awk -v a="${1:-0}" -v b="${2:-0}" -v c="${3:-0}" -v d="${4:-0}" "BEGIN { exit !($expr) }"; then
    echo "| $name | met: $shown |"
  else
    echo "| $name | NOT met: $shown |"
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "NA" }'; }
# pratio SCEN METRIC A B: the median over runs of A's figure / B's figure
# in the same run (the two ran back to back); the ratio of the medians
# when a run of either stored nothing
pratio() {
  local fa="$WORK/res/$1/${2//\//:}@$3" fb="$WORK/res/$1/${2//\//:}@$4"
  if [ -f "$fa" ] && [ -f "$fb" ] && [ "$(wc -l < "$fa")" = "$RUNS" ] && [ "$(wc -l < "$fb")" = "$RUNS" ]; then
    paste "$fa" "$fb" | awk '$2 > 0 { print $1 / $2 }' > "$WORK/pairs"
    [ "$(wc -l < "$WORK/pairs")" = "$RUNS" ] && { median "$WORK/pairs" | xargs printf "%.2f"; return; }
  fi
  ratio "$(med "$1" "$2" "$3")" "$(med "$1" "$2" "$4")"
}
{
  echo "| target | result (medians; CPU ratios to c-epoll: median of the per-run ratios) |"
  echo "|---|---|"
  for c in $ECHO_CONNS; do
    o=$(med "echo-$c" "server CPU us/rt" copas-c); r=$(med "echo-$c" "server CPU us/rt" c-epoll)
    x=$(pratio "echo-$c" "server CPU us/rt" copas-c c-epoll)
    check "1. echo $c conns: CPU/rt <= 1.3x C" "a <= 1.3" "${x}x c-epoll ($o vs $r us)" "$x"
  done
  for c in $SCALE_CONNS; do
    o=$(med "scale-$c" "server CPU us/rt" copas-c); r=$(med "scale-$c" "server CPU us/rt" c-epoll)
    f=$(med "scale-$c" "conns failed" copas-c); x=$(pratio "scale-$c" "server CPU us/rt" copas-c c-epoll)
    check "2. scale $c conns: all served, CPU/rt <= 1.4x C" "a <= 1.4 && b == 0" "${x}x c-epoll, $f not served" "$x" "$f"
  done
  for c in $HTTP_CONNS; do
    o=$(med "http-$c" "req/s" copas-c); l=$(med "http-$c" "req/s" luv); n=$(med "http-$c" "req/s" nginx)
    e=$(med "http-$c" errors copas-c); p=$(med "http-$c" "p99 ms" copas-c)
    if [ "$c" = 1000 ]; then
      check "3. http $c conns: > luv, >= 0.85x nginx, 0 errors, p99 < 50 ms" "a > b && a >= 0.85 * c && d == 0 && ${p:-999} < 50" \
        "$(ratio "$o" "$l")x luv, $(ratio "$o" "$n")x nginx, $e errors, p99 $p ms" "$o" "$l" "$n" "$e"
    else
      check "3. http $c conns: > luv, >= 0.85x nginx" "a > b && a >= 0.85 * c" \
        "$(ratio "$o" "$l")x luv, $(ratio "$o" "$n")x nginx" "$o" "$l" "$n"
    fi
  done
  o=$(med timers "CPU s" copas-c); r=$(med timers "CPU s" copas-ref); m=$(med timers "late mean ms" copas-c)
  check "4. timers: CPU <= 0.5x Copas 4.11, mean lateness < 2 ms" "a <= 0.5 * b && c < 2" \
    "$(ratio "$o" "$r")x copas-ref, mean lateness $m ms" "$o" "$r" "$m"
  o=$(med pingpong "switches/s" copas-c); r=$(med pingpong "switches/s" copas-ref)
  check "5. pause(0) switches/s >= 1.5x Copas 4.11" "a >= 1.5 * b" "$(ratio "$o" "$r")x copas-ref" "$o" "$r"
  o=$(med "idle-$IDLE_CONNS" "server CPU s" copas-c); w=$(med "idle-$IDLE_CONNS" "server ctx switches" copas-c)
  check "6. idle $IDLE_CONNS conns for ${IDLE_DUR}s: CPU < 0.01 s, no wake-ups" "a < 0.01 && b == 0" \
    "$o s CPU (10 ms clock ticks), $w context switches" "$o" "$w"
  o=$(med "idle-$IDLE_CONNS" "RSS B/conn" copas-c)
  check "7. memory: <= 10 KB RSS per idle connection" "a <= 10240" "$o B" "$o"
} > "$TARGETS"

HOST=$(hostname -s 2>/dev/null || hostname)
DATE=$(date -u +%Y-%m-%d)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
REPORT=$WORK/report.md
{
  echo "# Benchmark results, $DATE, $HOST"
  echo
  echo "- mode: $MODE; runs per case: $RUNS (medians shown); load duration ${DUR}s; idle hold ${IDLE_DUR}s; matrix time ${ELAPSED}s"
  echo "- machine: $CPU, $(nproc) CPUs, $(uname -sr); Lua: $($LUA -v 2>&1 | head -1)"
  echo "- git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "- servers pinned to CPU $SCPU, load generators to CPU $LCPU; only 127.0.0.1"
  echo "- load average at start: $LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes wall-clock figures, rt/s and req/s, noisy; CPU per request is steadier)"
  [ -z "${BENCH_NOTE:-}" ] || echo "- note: $BENCH_NOTE"
  echo "- columns: copas-c = this project; copas-ref = \$COPAS_REF_PATH; (Nx) = copas-c median / that column's median"
  echo "- echo/scale: loadgen, 64-byte lines, one request in flight per connection; idle: loadgen with 0 bytes (connections held), RSS B/conn = server RSS growth / connections"
  echo
  cat "$TABLE"
  echo
  echo "Targets (issue #5):"
  echo
  cat "$TARGETS"
  echo
  echo "Commands, run from the repository root (servers get port 0 and print the port they bound):"
  echo
  echo '```'
  echo "make; cc -std=c99 -O2 -o <build>/loadgen bench/loadgen.c; cc -std=c99 -O2 -o <build>/c_echo bench/c_echo.c"
  if [ -n "${COPAS_REF_PATH:-}" ]; then
    sed "s#$WORK/#<build>/#g; s#$COPAS_REF_PATH#\$COPAS_REF_PATH#g; s#$ROOT/#./#g; s#$ROOT#.#g" "$CMDS"
  else
    sed "s#$WORK/#<build>/#g; s#$ROOT/#./#g; s#$ROOT#.#g" "$CMDS"
  fi
  echo '```'
} > "$REPORT"

# ---------------------------------------------------------------- data file
# every figure stored: scenario, metric, impl, median, min, max, runs
TSV=$WORK/results.tsv
{
  printf 'scenario\tmetric\timpl\tmedian\tmin\tmax\truns\n'
  seen=""
  for s in $SCENARIOS; do
    case " $seen " in *" $s "*) continue ;; esac
    seen="$seen $s"
    for f in "$WORK/res/$s/"*@* "$WORK/xres/$s/"*@*; do
      [ -e "$f" ] && basename "$f"
    done | sed 's/@[^@]*$//' | awk '!seen[$0]++' | while IFS= read -r m; do
      for i in $COLS; do
        for f in "$WORK/res/$s/$m@$i" "$WORK/xres/$s/$m@$i"; do
          [ -f "$f" ] || continue
          grep -E '^-?[0-9.]+([eE][-+]?[0-9]+)?$' "$f" | sort -g |
            awk -v s="$s" -v m="${m//:/\/}" -v i="$i" -v med="$(median "$f")" \
              '{ v[NR] = $1 } END { if (NR) printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s, m, i, med, v[1], v[NR], NR }'
        done
      done
    done
  done
} > "$TSV"

if [ "${BENCH_NO_RESULTS:-0}" != 1 ]; then
  RESDIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
  NAME=$DATE-$HOST$( [ "$MODE" = quick ] && echo -quick )
  mkdir -p "$RESDIR" || exit 1
  RESDIR=$(cd "$RESDIR" && pwd)
  cp "$TSV" "$RESDIR/$NAME.tsv"
  # the plots, linked from the report
  if has gnuplot; then
    rm -rf "${RESDIR:?}/$NAME"
    if "$BENCH_DIR/plot.sh" "$RESDIR/$NAME.tsv" "$RESDIR/$NAME" > "$WORK/plots"; then
      {
        echo
        echo "Plots of $NAME.tsv (all figures above and the latency percentiles), made with:"
        echo
        echo '```'
        echo "bench/plot.sh ${RESDIR#$ROOT/}/$NAME.tsv ${RESDIR#$ROOT/}/$NAME"
        echo '```'
        while IFS=$'\t' read -r png alt; do
          echo
          echo "![$alt]($NAME/$png)"
        done < "$WORK/plots"
      } >> "$REPORT"
    else
      say "no plots linked (bench/plot.sh said why above)"
    fi
  else
    say "gnuplot not found (Debian package gnuplot-nox): plots skipped"
  fi
fi

cat "$REPORT"
if [ "${BENCH_NO_RESULTS:-0}" != 1 ]; then
  cp "$REPORT" "$RESDIR/$NAME.md"
  say "written: ${RESDIR#$ROOT/}/$NAME.md, $NAME.tsv$( [ -s "$WORK/plots" ] && echo ", $NAME/*.png")"
fi
