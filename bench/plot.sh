#!/usr/bin/env bash
# Plots of a benchmark data file written by bench/run.sh.
#
#   bench/plot.sh bench/results/<date>-<machine>.tsv <outdir>
#
# Reads the tab-separated file (header line, then: scenario, metric, impl,
# median, min, max, runs) and draws with gnuplot (Debian: gnuplot-nox) into
# <outdir>:
#   throughput.png  echo round trips/s against connections (echo-N, scale-N)
#                   and HTTP requests/s against connections (http-N)
#   latency.png     p50/p90/p99/p99.9 per implementation, echo-1000 and
#                   http-1000 (or the largest echo-N / http-N present)
#   cpu.png         server CPU time per round trip / request, every echo,
#                   scale and HTTP case
#   memory.png      server memory per idle connection (idle-N)
# Points and bars are medians over the runs; whiskers span min to max.
# A plot whose figures are absent from the file is left out. Every
# implementation keeps its colour in every plot.
#
# Prints one line per image written, "<file>\t<description>", on stdout.
# Exit status: 0 when at least one image was written, 1 otherwise, 2 on bad
# usage.

set -u
export LC_ALL=C

if [ $# -ne 2 ] || [ ! -f "$1" ]; then
  echo "usage: $0 <results.tsv> <outdir>" >&2
  exit 2
fi
TSV=$1
OUT=$2
command -v gnuplot >/dev/null 2>&1 || { echo "plot.sh: gnuplot not found (Debian package gnuplot-nox)" >&2; exit 1; }
mkdir -p "$OUT" || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/copas-plot.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# implementations in legend order, and their colours (Okabe-Ito palette,
# told apart by most colour-blind readers); others get the spare colours
ORDER="copas-c copas-ref cqueues luv c-epoll nginx"
SPARE="#56B4E9 #F0E442 #000000 #8C564B"
colour() {
  case $1 in
    copas-c) echo "#D55E00" ;; copas-ref) echo "#CC79A7" ;; cqueues) echo "#009E73" ;;
    luv) echo "#0072B2" ;; c-epoll) echo "#7F7F7F" ;; nginx) echo "#E69F00" ;;
    *) local n i=0 k
       for n in $(awk -F'\t' 'NR > 1 { print $3 }' "$TSV" | awk '!s[$0]++'); do
         case " $ORDER " in *" $n "*) continue ;; esac
         [ "$n" = "$1" ] && break
         i=$(( i + 1 ))
       done
       k=$(( i % 4 + 1 ))
       echo "$SPARE" | cut -d' ' -f$k ;;
  esac
}

RUNS=$(awk -F'\t' 'NR > 1 && $7 > r { r = $7 } END { print r + 0 }' "$TSV")
NAME=$(basename "$TSV" .tsv)
if [ "$RUNS" -gt 1 ]; then SPREAD="medians of $RUNS runs, whiskers from min to max"; else SPREAD="1 run"; fi
CAPTION="$NAME: $SPREAD"

# table MODE ARG METRIC_RE SCALE > file
#   MODE scen: one row per scenario matching the regex ARG (in file order),
#              figures of the metric matching METRIC_RE
#   MODE metric: one row per metric of the "|"-separated list METRIC_RE,
#              figures of scenario ARG
# Row: label, number (the N of "name-N", or the metric's place in the list,
# from 0), then median, min,
# max per implementation (NaN when absent), values times SCALE. The first
# line is "# impl impl ..." naming the columns; no rows, no output.
table() {
  awk -F'\t' -v mode="$1" -v arg="$2" -v mre="$3" -v scale="$4" -v order="$ORDER" '
    NR == 1 { next }
    mode == "scen" && ($1 !~ ("^(" arg ")$") || $2 !~ ("^(" mre ")$")) { next }
    mode == "metric" && $1 != arg { next }
    mode == "metric" { hit = 0; n = split(mre, ml, "|"); for (k = 1; k <= n; k++) if (ml[k] == $2) hit = 1; if (!hit) next }
    $4 !~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ { next }
    {
      r = mode == "scen" ? $1 : $2
      if (!(r in rowseen)) { rowseen[r] = 1; rows[++nr] = r }
      if (!($3 in impseen)) { impseen[$3] = 1; found[++nf] = $3 }
      med[r, $3] = $4 * scale; lo[r, $3] = $5 * scale; hi[r, $3] = $6 * scale
    }
    END {
      if (nr == 0) exit
      if (mode == "metric") { nr = 0; n = split(mre, ml, "|"); for (k = 1; k <= n; k++) if (ml[k] in rowseen) { rows[++nr] = ml[k]; pos[ml[k]] = k - 1 } }
      no = split(order, o, " "); ni = 0
      for (k = 1; k <= no; k++) if (o[k] in impseen) imps[++ni] = o[k]
      for (k = 1; k <= nf; k++) { known = 0; for (j = 1; j <= no; j++) if (o[j] == found[k]) known = 1; if (!known) imps[++ni] = found[k] }
      printf "#"; for (k = 1; k <= ni; k++) printf " %s", imps[k]; printf "\n"
      for (i = 1; i <= nr; i++) {
        r = rows[i]
        if (mode == "scen") { x = r; sub(/^.*-/, "", x) } else x = pos[r]
        printf "%s\t%s", r, x
        for (k = 1; k <= ni; k++) {
          if ((r, imps[k]) in med) printf "\t%.6g\t%.6g\t%.6g", med[r, imps[k]], lo[r, imps[k]], hi[r, imps[k]]
          else printf "\tNaN\tNaN\tNaN"
        }
        printf "\n"
      }
    }' "$TSV"
}

# gnuplot settings of a data file made by table(): impls, colours, column count
vars() {
  local f=$1 imps c cols=""
  imps=$(head -1 "$f" | sed 's/^# *//')
  for c in $imps; do cols="$cols $(colour "$c")"; done
  printf 'imps = "%s"; cols = "%s"; n = words(imps)\n' "$imps" "${cols# }"
}

# scenario with the given connection count, or the largest one of that kind
pick() {
  local kind=$1 want=$2
  if awk -F'\t' -v s="$kind-$want" '$1 == s { f = 1 } END { exit !f }' "$TSV"; then echo "$kind-$want"; return; fi
  awk -F'\t' -v k="$kind" 'index($1, k "-") == 1 { n = substr($1, length(k) + 2); if (n ~ /^[0-9]+$/ && n + 0 > m) m = n + 0 } END { if (m) print k "-" m }' "$TSV"
}

COMMON='
set encoding utf8
set termoption noenhanced
set border 3 lw 1.2
set tics nomirror out
set grid ytics lt 1 lc rgb "#e4e4e4" lw 1
set key bmargin center horizontal reverse Left samplen 2 width 1 height 1
set datafile separator "\t"
set datafile missing "NaN"
'
WROTE=0
emit() { echo -e "$1\t$2"; WROTE=1; }
gp() {  # gp NAME SCRIPT: runs gnuplot, reports a failure
  if ! LC_ALL=C.UTF-8 gnuplot 2>"$TMP/gnuplot.err" <<<"$2"; then
    echo "plot.sh: gnuplot failed on $1:" >&2; sed 's/^/  /' "$TMP/gnuplot.err" >&2
    return 1
  fi
  grep -v "no valid points" "$TMP/gnuplot.err" | sed "s/^/plot.sh: $1: /" >&2
}

# ---------------------------------------------------------------- throughput
table scen '(echo|scale)-[0-9]+' 'rt/s' 0.001 > "$TMP/echo.dat"
table scen 'http-[0-9]+' 'req/s' 0.001 > "$TMP/http.dat"
if [ -s "$TMP/echo.dat" ] || [ -s "$TMP/http.dat" ]; then
  panels=0; [ -s "$TMP/echo.dat" ] && panels=$(( panels + 1 )); [ -s "$TMP/http.dat" ] && panels=$(( panels + 1 ))
  panel() {  # panel FILE TITLE YLABEL
    [ -s "$1" ] || return 0
    local xt
    xt=$(awk -F'\t' '!/^#/ { l = $2 % 1000 ? $2 : $2 / 1000 "k"; printf "%s\"%s\" %s", s, l, $2; s = ", " }' "$1")
    cat <<EOF
$(vars "$1")
set title "$2" font ",13"
set xlabel "concurrent connections (log scale)"
set ylabel "$3"
set logscale x
set xtics ($xt)
set autoscale xfix
set offsets graph 0.06, graph 0.06, 0, 0
set yrange [0:*]
plot for [i=1:n] "$1" using 2:(column(3*i)):(column(3*i+1)):(column(3*i+2)) \\
       with yerrorlines lw (word(imps, i) eq "copas-c" ? 3 : 1.6) pt 7 ps 1.1 \\
       lc rgb word(cols, i) title word(imps, i)
EOF
  }
  gp throughput "$COMMON
set terminal pngcairo size $(( panels * 700 )),560 font 'DejaVu Sans,11'
set output '$OUT/throughput.png'
set multiplot layout 1,$panels title 'Throughput against connection count (higher is better); $CAPTION' font ',12'
$(panel "$TMP/echo.dat" "Echo: 64-byte lines, 1 in flight per connection (loadgen)" "thousand round trips per second")
$(panel "$TMP/http.dat" "HTTP keep-alive: wrk -t1" "thousand requests per second")
unset multiplot
" && emit throughput.png "Throughput against connection count: echo round trips/s and HTTP requests/s"
fi


# ---------------------------------------------------------------- latency
PCTS="p50 ms|p90 ms|p99 ms|p99.9 ms"
E=$(pick echo 1000); H=$(pick http 1000)
: > "$TMP/lat-e.dat"; : > "$TMP/lat-h.dat"
[ -z "$E" ] || table metric "$E" "$PCTS" 1 > "$TMP/lat-e.dat"
[ -z "$H" ] || table metric "$H" "$PCTS" 1 > "$TMP/lat-h.dat"
if [ -s "$TMP/lat-e.dat" ] || [ -s "$TMP/lat-h.dat" ]; then
  panels=0; [ -s "$TMP/lat-e.dat" ] && panels=$(( panels + 1 )); [ -s "$TMP/lat-h.dat" ] && panels=$(( panels + 1 ))
  lpanel() {  # lpanel FILE TITLE
    [ -s "$1" ] || return 0
    cat <<EOF
$(vars "$1")
set title "$2" font ",13"
set xlabel "percentile of all round trips / requests"
set ylabel "latency (ms, log scale)"
set logscale y
set xtics ("p50" 0, "p90" 1, "p99" 2, "p99.9" 3)
set xrange [-0.3:3.3]
set format y "%g"
set ytics add (0.2, 0.5, 2, 5, 20, 50, 200, 500, 2000, 5000)
# each implementation a little to the side, so that the whiskers do not hide each other
plot for [i=1:n] "$1" using (\$2 + (i - (n + 1) / 2.0) * 0.05):(column(3*i)):(column(3*i+1)):(column(3*i+2)) \\
       with yerrorlines lw (word(imps, i) eq "copas-c" ? 3 : 1.6) pt 7 ps 1.1 \\
       lc rgb word(cols, i) title word(imps, i)
EOF
  }
  gp latency "$COMMON
set terminal pngcairo size $(( panels * 700 )),560 font 'DejaVu Sans,11'
set output '$OUT/latency.png'
set multiplot layout 1,$panels title 'Latency percentiles (lower is better); $CAPTION' font ',12'
$(lpanel "$TMP/lat-e.dat" "Echo, ${E#echo-} connections (loadgen)")
$(lpanel "$TMP/lat-h.dat" "HTTP keep-alive, ${H#http-} connections (wrk -t1)")
unset multiplot
" && emit latency.png "Latency percentiles (p50, p90, p99, p99.9): $E${E:+${H:+ and }}$H"
fi

# ---------------------------------------------------------------- cpu
table scen '(echo|scale|http)-[0-9]+' 'server CPU us/(rt|req)' 1 > "$TMP/cpu.dat"
if [ -s "$TMP/cpu.dat" ]; then
  ncl=$(grep -vc '^#' "$TMP/cpu.dat")
  gp cpu "$COMMON
$(vars "$TMP/cpu.dat")
set terminal pngcairo size $(( 500 + ncl * 130 )),560 font 'DejaVu Sans,11'
set output '$OUT/cpu.png'
set title \"Server CPU time per round trip (echo) or request (HTTP), lower is better\n$CAPTION\" font ',12'
set ylabel 'server CPU (utime+stime) per round trip / request (µs)'
set xlabel 'case and concurrent connections'
set style data histograms
set style histogram errorbars gap 1.5 lw 1
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.9
set errorbars small
set yrange [0:*]
set xtics scale 0
plot for [i=1:n] '$TMP/cpu.dat' using (column(3*i)):(column(3*i+1)):(column(3*i+2)):xtic(1) \\
       lc rgb word(cols, i) title word(imps, i)
" && emit cpu.png "Server CPU time per round trip or request, by case"
fi

# ---------------------------------------------------------------- memory
table scen 'idle-[0-9]+' 'RSS B/conn' "$(awk 'BEGIN { print 1 / 1024 }')" > "$TMP/mem.dat"
if [ -s "$TMP/mem.dat" ]; then
  # one row per implementation: index, name, median, min, max
  awk -F'\t' 'NR == 1 { n = split(substr($0, 3), imps, " "); next }
              NR == 2 { i = 0; for (k = 1; k <= n; k++) if ($(3 * k) != "NaN")
                          printf "%d\t%s\t%s\t%s\t%s\n", i++, imps[k], $(3 * k), $(3 * k + 1), $(3 * k + 2) }' \
    "$TMP/mem.dat" | while IFS=$'\t' read -r line; do   # + colour as 0xRRGGBB
      c=$(colour "$(echo "$line" | cut -f2)"); printf '%s\t%d\n' "$line" "0x${c#\#}"
    done > "$TMP/mem-rows.dat"
  conns=$(awk -F'\t' 'NR == 2 { print $2 }' "$TMP/mem.dat")
  nrows=$(wc -l < "$TMP/mem-rows.dat")
  gp memory "$COMMON
set terminal pngcairo size $(( 420 + nrows * 110 )),560 font 'DejaVu Sans,11'
set output '$OUT/memory.png'
set title \"Server memory per idle connection ($conns connections held), lower is better\n$CAPTION\" font ',12'
set ylabel 'server RSS growth / connections (KiB)'
set style fill solid 0.9 border rgb '#333333'
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set xrange [-0.6:$nrows - 0.4]
set xtics scale 0
set errorbars small
plot '$TMP/mem-rows.dat' using 1:3:(0.6):6:xtic(2) with boxes lc rgb variable notitle, \\
     '' using 1:(\$5 > \$4 ? \$4 : NaN):(0):(\$5 - \$4) with vectors heads size screen 0.008,90 lc rgb '#333333' notitle, \\
     '' using 1:5:(sprintf('%.1f', \$3)) with labels offset 0,0.8 notitle, \\
     10 with lines dt 2 lw 1.5 lc rgb '#333333' title 'issue #5 target: 10 KiB'
" && emit memory.png "Server memory per idle connection"
fi

[ "$WROTE" = 1 ] || { rmdir "$OUT" 2>/dev/null; echo "plot.sh: nothing to plot in $TSV" >&2; exit 1; }
exit 0
