# Prints line coverage per source file and in total from an lcov
# tracefile, and exits 1 when the total is under `min` (percent).
#   awk -v min=90 -f mk/coverage-table.awk build/coverage/csrc.info

/^SF:/ { file = substr($0, 4); sub(/.*\/csrc\//, "csrc/", file) }
/^LF:/ { found[file] += substr($0, 4) }
/^LH:/ { hit[file] += substr($0, 4) }

function pct(h, f) { return f > 0 ? 100 * h / f : 100 }

END {
    n = 0
    for (f in found) names[++n] = f
    # insertion sort: awk has no portable sort
    for (i = 2; i <= n; i++) {
        v = names[i]
        for (j = i - 1; j >= 1 && names[j] > v; j--) names[j + 1] = names[j]
        names[j + 1] = v
    }
    printf "%-24s %7s %7s %8s\n", "file", "lines", "hit", "coverage"
    for (i = 1; i <= n; i++) {
        f = names[i]
        printf "%-24s %7d %7d %7.1f%%\n", f, found[f], hit[f], pct(hit[f], found[f])
        tf += found[f]; th += hit[f]
    }
    total = pct(th, tf)
    printf "%-24s %7d %7d %7.1f%%\n", "total", tf, th, total
    if (total < min) {
        printf "coverage %.1f%% is under the minimum of %s%%\n", total, min
        exit 1
    }
    printf "coverage %.1f%% meets the minimum of %s%%\n", total, min
}
