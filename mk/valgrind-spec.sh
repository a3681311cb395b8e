#!/bin/sh
# Runs one spec file under Valgrind's memcheck; `make valgrind` calls it
# through prove, once per spec file, so prove gets the file's TAP output.
#
#   mk/valgrind-spec.sh spec/foo_spec.lua
#
# The environment comes from mk/valgrind.mk: VALGRIND (the valgrind
# command), VALGRIND_OPTS (its options, without --log-file), VALGRIND_LOGS
# (a directory), VALGRIND_LUA, BUSTED, VALGRIND_TIMEOUT (seconds) and
# VALGRIND_FILTER_OUT (busted's --filter-out pattern, may be empty).
#
# Each process memcheck watches (the busted process and the Lua processes
# the spec starts through /bin/sh) writes its report to its own file,
# $VALGRIND_LOGS/<spec>/<pid>.log. When the spec has finished, every report
# with a nonzero error count (memory errors, and leaks of the kinds the
# options count) is copied to stderr and the script exits 1, even if all
# the tests passed: a spec file fails on any error memcheck found in any of
# its processes. Otherwise it exits with busted's status.
set -u

spec=$1
name=$(basename "$spec" .lua)
logs=$VALGRIND_LOGS/$name
rm -rf "$logs"
mkdir -p "$logs" || exit 1

# %p: one file per process id; a process that execs another program
# keeps its id, and the new program's report replaces the old one's,
# which never got to the summary anyway
# VALGRIND_OPTS is a list of options, split on blanks without globbing
set -f
# shellcheck disable=SC2086
timeout -k 10 "$VALGRIND_TIMEOUT" $VALGRIND $VALGRIND_OPTS \
  --log-file="$logs/%p.log" "$VALGRIND_LUA" "$BUSTED" -o TAP \
  ${VALGRIND_FILTER_OUT:+--filter-out="$VALGRIND_FILTER_OUT"} "$spec"
status=$?
set +f

bad=0
for log in "$logs"/*.log; do
  [ -e "$log" ] || continue
  # "ERROR SUMMARY: 3 errors from 2 contexts": the count without the
  # suppressed ones; a process that was killed has no summary
  if grep -q '^==[0-9]*== ERROR SUMMARY: [1-9]' "$log"; then
    bad=$((bad + 1))
    echo "# valgrind: errors in $log" >&2
    sed 's/^/# /' "$log" >&2
  fi
done

if [ "$bad" -gt 0 ]; then
  echo "# valgrind: $bad process(es) of $spec had errors" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
