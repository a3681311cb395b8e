-- wrk script used by bench/run.sh for the HTTP case: after the run, print
-- the latency percentiles of all requests as one line of key=value pairs
-- (milliseconds), the same keys as bench/loadgen.c. It defines no
-- per-request hook, so it costs nothing while the load runs.
--
--   wrk -t1 -c1000 -d2s --latency -s bench/wrk-latency.lua http://127.0.0.1:<port>/

-- luacheck: globals done
function done(_, latency)
  local function ms(p) return latency:percentile(p) / 1000 end
  io.write(string.format("latency p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    ms(50), ms(90), ms(99), ms(99.9), latency.max / 1000))
end
