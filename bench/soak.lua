-------------------------------------------------------------------------------
-- bench/soak.lua: load and soak run for copas-c (one bounded run).
--
-- In one process, copas servers on several 127.0.0.1 ports and copas client
-- threads open and close TCP connections (connect, one line each way, close),
-- while timer threads arm and cancel deadlines with copas.pause/sleep,
-- copas.timeout and copas.timer. The run stops when both target counts are
-- reached or when SOAK_TIME seconds have passed, whichever comes first, then
-- tears everything down and compares resident memory, descriptors, Lua
-- registry entries and the scheduler's counts with the ones taken earlier.
--
--   make soak                        (builds the core and bench/soak_mem.c)
--   lua5.4 bench/soak.lua            (with LUA_PATH/LUA_CPATH set; without
--                                     soak_mem the heap figures are left out)
--
-- Measured at three quiet points (all load threads ended): after the first
-- 10 % of the counts or time, after half, at the end. Results and what the
-- checks mean: bench/results/2026-11-23-soak.md.
--
-- Environment (defaults in brackets):
--   SOAK_TIME        seconds before the load stops [120]
--   SOAK_CONNS       connections to open and close [1000000]
--   SOAK_TIMERS      timers to arm [10000000]
--   SOAK_CLIENTS     client threads, i.e. connections in flight [200; 100
--                    with COPAS_BACKEND=select, whose fds must stay < 1024]
--   SOAK_PORTS       listening ports [8]
--   SOAK_TIMER_THREADS  threads arming timers [2000; 300 with select]
--   SOAK_CLOSE       rst: clients close with SO_LINGER 0 after the server's
--                    reply, so no TIME_WAIT is left on either side; fin: an
--                    ordinary close (the servers close first, so TIME_WAIT
--                    entries pile up on the server side) [rst]
--   SOAK_SLACK       allowed RSS growth, percent [5]
--
-- Exit status 0 when every check passed, 1 otherwise.
-------------------------------------------------------------------------------

local copas = require "copas"
local socket = require "socket"

local floor = math.floor

-- optional: the allocator's bytes in use (bench/soak_mem.c, built by `make soak`)
local has_mem, soak_mem = pcall(require, "soak_mem")
if not has_mem then soak_mem = nil end

local function env_num(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if n == nil or n <= 0 then
    io.stderr:write(name, " must be a positive number, got ", v, "\n")
    os.exit(2)
  end
  return n
end

local backend = os.getenv("COPAS_BACKEND") or "epoll"
local is_select = backend == "select"

local cfg = {
  time = env_num("SOAK_TIME", 120),
  conns = floor(env_num("SOAK_CONNS", 1000000)),
  timers = floor(env_num("SOAK_TIMERS", 10000000)),
  clients = floor(env_num("SOAK_CLIENTS", is_select and 100 or 200)),
  ports = floor(env_num("SOAK_PORTS", 8)),
  timer_threads = floor(env_num("SOAK_TIMER_THREADS", is_select and 300 or 2000)),
  close = os.getenv("SOAK_CLOSE") or "rst",
  slack = env_num("SOAK_SLACK", 5),
}
if cfg.close ~= "rst" and cfg.close ~= "fin" then
  io.stderr:write("SOAK_CLOSE must be rst or fin\n")
  os.exit(2)
end


-------------------------------------------------------------------------------
-- measurements
-------------------------------------------------------------------------------

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local PID = (read_file("/proc/self/stat") or ""):match("^(%d+)")

-- resident set size in kB
local function rss_kb()
  local s = read_file("/proc/self/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or -1
end

-- open descriptors of this process (the pipe of the listing itself is one
-- of them, at every measurement alike)
local function fd_count()
  local p = io.popen("ls /proc/" .. PID .. "/fd")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- registry entries: `live` are those holding a value other than a number
-- (luaL_ref keeps freed slots as numbers on its free list), `total` all
local function registry_count()
  local live, total = 0, 0
  for _, v in pairs(debug.getregistry()) do
    total = total + 1
    if type(v) ~= "number" then live = live + 1 end
  end
  return live, total
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- the resident size is read twice: as it is, and after malloc_trim(0) has
-- handed the allocator's free pages back (when soak_mem is built); the
-- second one counts pages holding live data, not pages kept from a past peak
local function sample()
  full_gc()
  local rss_kept = rss_kb()
  if soak_mem then soak_mem.trim() end
  local live, total = registry_count()
  local st = copas.status()
  return {
    rss = rss_kb(), rss_kept = rss_kept, fds = fd_count(), lua_kb = collectgarbage("count"),
    -- malloc'd kB that the Lua heap does not account for: C core, LuaSocket
    -- (LuaJIT's heap has its own allocator, outside malloc's figure)
    c_kb = soak_mem and (soak_mem.inuse() / 1024 - (jit and 0 or collectgarbage("count"))) or nil,
    reg_live = live, reg_total = total,
    threads = st.read + st.write + st.active + st.timer + st.inactive,
    timeouts = st.timeout, status = st,
  }
end


-------------------------------------------------------------------------------
-- counters and stop rule
-------------------------------------------------------------------------------

local n = {
  conns_started = 0, conns_ok = 0, conns_failed = 0, served = 0,
  armed = 0, fired = 0, cancelled = 0,
}
-- per timer pattern: how many times each ran
local kinds = {}
local first_errors = {}

local function note_error(what, err)
  if #first_errors < 5 then first_errors[#first_errors + 1] = what .. ": " .. tostring(err) end
end

local t0
local stop = false
-- the current phase's targets (see run_phase)
local phase = { conns = 0, timers = 0, deadline = 0 }
local function time_up() return stop or copas.gettime() >= phase.deadline end


-------------------------------------------------------------------------------
-- connections
-------------------------------------------------------------------------------

local servers, ports = {}, {}

local function serve(c)
  local line, err = c:receive("*l")
  if line then
    local ok
    ok, err = c:send(line .. "\n")
    if ok then n.served = n.served + 1 end
  end
  if err and err ~= "closed" then note_error("server", err) end
  c:close()
end

local function start_servers()
  for i = 1, cfg.ports do
    local srv = assert(socket.bind("127.0.0.1", 0))
    local _, port = srv:getsockname()
    ports[i] = tonumber(port)
    servers[i] = srv
    copas.addserver(srv, copas.handler(serve), 10, "soak_server_" .. i)
  end
end

local function stop_servers()
  for i = 1, #servers do copas.removeserver(servers[i]) end
end

local function one_connection(port)
  -- tcp4: the descriptor exists now, so the option can be set before connect
  local skt = assert(socket.tcp4())
  if cfg.close == "rst" then assert(skt:setoption("linger", { on = true, timeout = 0 })) end
  local c = copas.wrap(skt)
  c:settimeout(10)
  local ok, err = c:connect("127.0.0.1", port)
  if ok then
    ok, err = c:send("ping\n")
    if ok then
      local line
      line, err = c:receive("*l")
      ok = line == "ping"
      if line and not ok then err = "bad reply " .. line end
    end
  end
  c:close()
  return ok, err
end

local function client(id)
  local k = id
  while n.conns_started < phase.conns and not time_up() do
    n.conns_started = n.conns_started + 1
    k = k + 1
    local ok, err = one_connection(ports[k % #ports + 1])
    if ok then
      n.conns_ok = n.conns_ok + 1
    else
      n.conns_failed = n.conns_failed + 1
      note_error("client", err)
    end
  end
end


-------------------------------------------------------------------------------
-- timers: a mix of patterns; per pattern, `armed` counts every deadline set
-- (sleep/pause with a delay, copas.timeout with a delay, a copas.timer arm),
-- `fired` those that expired, `cancelled` those dropped or replaced before
-- expiry (wakeup, copas.timeout(0), re-arm, timer:cancel)
-------------------------------------------------------------------------------

local function never() error("soak: a cancelled timer fired") end

local function wake(co) copas.wakeup(co) end

local patterns = {
  -- a short pause that expires
  function(i)
    copas.pause(0.001 * (1 + i % 4))
    return 1, 1, 0
  end,
  -- copas.timeout armed, re-armed three times (each replaces the last), cancelled
  function()
    copas.timeout(30, never)
    copas.timeout(20, never)
    copas.timeout(10, never)
    copas.timeout(5, never)
    copas.timeout(0)
    return 4, 0, 4
  end,
  -- a timeout that fires and wakes the thread out of a long pause
  function()
    copas.timeout(0.002, wake)
    copas.pause(30)
    return 2, 1, 1
  end,
  -- the deprecated sleep: positive (expires), then a yield without a deadline
  function(i)
    copas.sleep(0.001 * (1 + i % 3))
    copas.sleep(0)
    return 1, 1, 0
  end,
  -- copas.timer armed and cancelled before it fires
  function()
    local t = copas.timer.new { delay = 30, callback = never }
    t:cancel()
    return 1, 0, 1
  end,
  -- copas.timer that fires once and wakes this thread from pauseforever
  function()
    local me = coroutine.running()
    copas.timer.new { delay = 0.002, callback = function() copas.wakeup(me) end }
    copas.pauseforever()
    return 1, 1, 0
  end,
  -- a recurring copas.timer that runs three times, then cancels itself
  function()
    local me, runs = coroutine.running(), 0
    copas.timer.new {
      delay = 0.001, recurring = true,
      callback = function(t)
        runs = runs + 1
        if runs == 3 then
          t:cancel()
          copas.wakeup(me)
        end
      end,
    }
    copas.pauseforever()
    return 3, 3, 0
  end,
  -- a long pause cut short by another thread's wakeup
  function()
    local me = coroutine.running()
    copas.addthread(function() copas.wakeup(me) end)
    copas.pause(30)
    return 1, 0, 1
  end,
}
local pattern_names = {
  "pause-expires", "timeout-rearm-cancel", "timeout-wakes-pause", "sleep-expires",
  "timer-cancel", "timer-fires", "timer-recurring", "pause-woken",
}
for i = 1, #patterns do kinds[i] = 0 end

local function timer_worker(id)
  local i = id
  while n.armed < phase.timers and not time_up() do
    i = i + 1
    local p = i % #patterns + 1
    local a, f, c = patterns[p](i)
    kinds[p] = kinds[p] + 1
    n.armed, n.fired, n.cancelled = n.armed + a, n.fired + f, n.cancelled + c
  end
end


-------------------------------------------------------------------------------
-- the run
-------------------------------------------------------------------------------

local results = { checks = {} }

local function fmt_int(x)
  local s = tostring(floor(x))
  local out = s:reverse():gsub("(%d%d%d)", "%1 "):reverse()
  return (out:gsub("^ ", ""))
end

local function progress(s, label)
  local el = copas.gettime() - t0
  io.stdout:write(string.format(
    "[%6.1fs] %-8s conns %s (failed %d)  timers %s  rss %d kB  lua %d kB  c %s kB  fds %d  reg %d/%d"
    .. "  threads %d\n",
    el, label, fmt_int(n.conns_ok), n.conns_failed, fmt_int(n.armed), s.rss, floor(s.lua_kb),
    s.c_kb and tostring(floor(s.c_kb)) or "-", s.fds, s.reg_live, s.reg_total, s.threads))
  io.stdout:flush()
end

-- waits until only the servers' accept waits are left (at most 5 s)
local function drain(servers_left)
  local deadline = copas.gettime() + 5
  while copas.gettime() < deadline do
    local st = copas.status()
    if st.read == servers_left and st.write + st.active + st.timer + st.inactive + st.timeout == 0 then
      return
    end
    copas.pause(0.01)
  end
end

-- one load phase: workers run until the phase's counts or deadline, then
-- every thread they started has ended
local next_report = 10
local function run_phase(conns, timers, deadline)
  phase.conns, phase.timers, phase.deadline = conns, timers, deadline
  local workers = {}
  for i = 1, cfg.clients do workers[#workers + 1] = copas.addthread(client, i) end
  for i = 1, cfg.timer_threads do workers[#workers + 1] = copas.addthread(timer_worker, i) end
  local function alive()
    for _, co in ipairs(workers) do
      if coroutine.status(co) ~= "dead" then return true end
    end
    return false
  end
  while alive() do
    copas.pause(0.25)
    if copas.gettime() - t0 >= next_report then
      next_report = next_report + 10
      local sm = sample()
      if results.warm then results.last = sm end
      progress(sm, "")
    end
  end
  drain(#servers)
end

local function main()
  results.start = sample()
  start_servers()
  -- prime: one of each thing, so lazily loaded modules and metatables exist
  -- before the baseline for the registry is taken
  for i = 1, #ports do assert(one_connection(ports[i])) end
  for p = 1, #patterns do patterns[p](p) end
  drain(#servers)
  n.served = 0
  results.primed = sample()

  -- warm-up: the first 10 % of the counts or of the time, then a quiet point
  t0 = copas.gettime()
  run_phase(math.ceil(cfg.conns / 10), math.ceil(cfg.timers / 10), t0 + cfg.time / 10)
  results.warm = sample()
  results.warm_at = { t = copas.gettime() - t0, conns = n.conns_ok, timers = n.armed }
  progress(results.warm, "warm-up")

  -- to half the counts or of the time, then a second quiet point: by then
  -- the tables and arrays sized by the most threads and descriptors in use
  -- at once have reached that size, and the second half of the work shows
  -- what grows with the work
  run_phase(math.ceil(cfg.conns / 2), math.ceil(cfg.timers / 2), t0 + cfg.time / 2)
  results.mid = sample()
  results.mid_at = { t = copas.gettime() - t0, conns = n.conns_ok, timers = n.armed }
  progress(results.mid, "half-way")

  -- the rest, to the full counts or SOAK_TIME
  run_phase(cfg.conns, cfg.timers, t0 + cfg.time)
  results.elapsed = copas.gettime() - t0
  results.stopped_by = (n.conns_started >= cfg.conns and n.armed >= cfg.timers)
    and "counts reached" or "SOAK_TIME"
  stop_servers()
  drain(0)
  results.final = sample()
  progress(results.final, "end")
end

local started = os.time()
-- an error in main (or a worker) stops the load and the servers, so the
-- loop ends and the error is reported (xpcall would not do: Lua 5.1 cannot
-- yield across it)
copas.addthread(main)
local function on_error(err, co)
  results.crash = results.crash or copas.gettraceback(tostring(err), co)
  stop = true
  phase.deadline = 0
  if servers[1] then
    for i = 1, #servers do pcall(copas.removeserver, servers[i]) end
    servers = {}
  end
end
copas.seterrorhandler(on_error, true)
copas.loop()

if results.crash then
  io.stderr:write("soak: ", results.crash, "\n")
  os.exit(1)
end


-------------------------------------------------------------------------------
-- report
-------------------------------------------------------------------------------

local r = results
local warm = r.warm or r.primed
local fin = r.final
local pass = true

local function check(name, ok, detail)
  r.checks[#r.checks + 1] = { name, ok, detail }
  if not ok then pass = false end
end

local rss_limit = warm.rss * (1 + cfg.slack / 100)
check("RSS at end within " .. cfg.slack .. "% of warm-up" .. (soak_mem and " (after trim)" or ""),
  fin.rss <= rss_limit,
  string.format("%d kB vs %d kB (%+.1f%%)", fin.rss, warm.rss, (fin.rss / warm.rss - 1) * 100))
-- the heaps are compared with the half-way point (both with the load
-- drained), over the second half of the work; 64 kB covers one more doubling
-- of an array sized by a busier moment (timer heap 16 B a node, thread and
-- descriptor tables), which a leak of a byte per operation soon exceeds
local mid = r.mid or warm
local ops = (n.conns_ok + n.armed) - (r.mid_at and (r.mid_at.conns + r.mid_at.timers) or 0)
if fin.c_kb then
  check("C-side heap at end within 64 kB of half-way", fin.c_kb <= mid.c_kb + 64,
    string.format("%d kB vs %d kB, %+.3f B per connection or timer since", floor(fin.c_kb),
      floor(mid.c_kb), ops > 0 and (fin.c_kb - mid.c_kb) * 1024 / ops or 0))
end
-- the Lua heap varies from one quiet point to the next: copas keeps about
-- ten weak-keyed tables per thread or socket (names, error handlers,
-- timeouts, ...), and each keeps the size of its last rehash, up to 8192
-- slots (some 256 kB) at a few thousand threads; hence SOAK_SLACK % + 1 MB,
-- which a leak of one byte per operation exceeds in a default run
check("Lua heap at end within " .. cfg.slack .. "% + 1 MB of half-way",
  fin.lua_kb <= mid.lua_kb * (1 + cfg.slack / 100) + 1024,
  string.format("%d kB vs %d kB, %+.3f B per connection or timer since", floor(fin.lua_kb),
    floor(mid.lua_kb), ops > 0 and (fin.lua_kb - mid.lua_kb) * 1024 / ops or 0))
check("descriptors back to start", fin.fds == r.start.fds,
  string.format("%d vs %d", fin.fds, r.start.fds))
check("registry live entries not grown", fin.reg_live <= r.primed.reg_live,
  string.format("%d vs %d after priming", fin.reg_live, r.primed.reg_live))
check("no threads, waits or timeouts left", fin.threads == 0 and fin.timeouts == 0,
  string.format("threads %d, timeouts %d", fin.threads, fin.timeouts))
check("no failed connections", n.conns_failed == 0 and n.conns_ok == n.served,
  string.format("%d failed; %d ok, %d served", n.conns_failed, n.conns_ok, n.served))
check("counts consistent", n.fired + n.cancelled == n.armed,
  string.format("fired %d + cancelled %d, armed %d", n.fired, n.cancelled, n.armed))

local function rate(x) return fmt_int(x / r.elapsed) .. "/s" end

print("")
print(string.format("soak: %s, backend %s, %s", _VERSION,
  backend, jit and jit.version or "no JIT"))  -- luacheck: ignore 113 (LuaJIT global)
print(string.format("settings: SOAK_TIME=%g SOAK_CONNS=%d SOAK_TIMERS=%d SOAK_CLIENTS=%d "
  .. "SOAK_PORTS=%d SOAK_TIMER_THREADS=%d SOAK_CLOSE=%s", cfg.time, cfg.conns, cfg.timers,
  cfg.clients, cfg.ports, cfg.timer_threads, cfg.close))
print(string.format("load ran %.1f s (stopped by %s); wall time %d s in all",
  r.elapsed, r.stopped_by, os.time() - started))
print("")
print("| figure | value |")
print("|---|---|")
local rows = {
  { "connections opened+closed", fmt_int(n.conns_ok) .. " of " .. fmt_int(cfg.conns)
    .. " (" .. rate(n.conns_ok) .. ")" },
  { "connections failed", fmt_int(n.conns_failed) },
  { "timers armed", fmt_int(n.armed) .. " of " .. fmt_int(cfg.timers)
    .. " (" .. rate(n.armed) .. ")" },
  { "timers fired / cancelled", fmt_int(n.fired) .. " / " .. fmt_int(n.cancelled) },
  { "warm-up sample at", r.warm_at and string.format("%.1f s (%s conns, %s timers)",
    r.warm_at.t, fmt_int(r.warm_at.conns), fmt_int(r.warm_at.timers)) or "not reached" },
  { "half-way sample at", r.mid_at and string.format("%.1f s (%s conns, %s timers)",
    r.mid_at.t, fmt_int(r.mid_at.conns), fmt_int(r.mid_at.timers)) or "not reached" },
  { "RSS start / primed / warm-up / half-way / end (kB)", string.format("%d / %d / %d / %d / %d",
    r.start.rss, r.primed.rss, warm.rss, mid.rss, fin.rss) },
  { "RSS before trim: warm-up / half-way / end (kB)", string.format("%d / %d / %d",
    warm.rss_kept, mid.rss_kept, fin.rss_kept) },
  { "RSS last sample under load (kB)", r.last and tostring(r.last.rss) or "-" },
  { "Lua heap primed / warm-up / half-way / end (kB)", string.format("%d / %d / %d / %d",
    floor(r.primed.lua_kb), floor(warm.lua_kb), floor(mid.lua_kb), floor(fin.lua_kb)) },
  { "C-side malloc in use primed / warm-up / half-way / end (kB)", fin.c_kb and
    string.format("%d / %d / %d / %d", floor(r.primed.c_kb), floor(warm.c_kb), floor(mid.c_kb),
      floor(fin.c_kb)) or "- (soak_mem not built)" },
  { "descriptors start / warm-up / end", string.format("%d / %d / %d",
    r.start.fds, warm.fds, fin.fds) },
  { "registry live: primed / warm-up / end", string.format("%d / %d / %d",
    r.primed.reg_live, warm.reg_live, fin.reg_live) },
  -- freed luaL_ref slots stay on the registry's free list and are reused, so
  -- this follows the most references held at once, not what is held now
  { "registry slots incl. free list: primed / warm-up / end", string.format("%d / %d / %d",
    r.primed.reg_total, warm.reg_total, fin.reg_total) },
  { "scheduler threads warm-up / end", string.format("%d / %d", warm.threads, fin.threads) },
}
for p = 1, #patterns do
  rows[#rows + 1] = { "timer pattern " .. pattern_names[p], fmt_int(kinds[p]) .. " runs" }
end
for _, row in ipairs(rows) do print("| " .. row[1] .. " | " .. row[2] .. " |") end
print("")
for _, c in ipairs(r.checks) do
  print(string.format("%s  %s: %s", c[2] and "ok  " or "FAIL", c[1], c[3]))
end
for _, e in ipairs(first_errors) do print("first errors: " .. e) end
print(pass and "soak: PASS" or "soak: FAIL")
os.exit(pass and 0 or 1)
