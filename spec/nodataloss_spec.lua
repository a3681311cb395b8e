-- No data lost: many concurrent connections move byte streams of random
-- sizes through copas, read back with random patterns (receive(n),
-- receive(n, prefix), '*l' lines, receivepartial, '*a'), some over sockets
-- with small kernel buffers, plain and TLS. Every byte is checked.
--
-- Each stream is made from a seed: chunk k of a stream is a rotation of one
-- fixed pseudo-random block (65521 bytes, a prime) by an offset hashed from
-- (seed, k), so the receiver regenerates the exact bytes it expects at any
-- position without keeping the sent data, and a lost, repeated or shifted
-- piece shows up as a mismatch. Everything random (modes, sizes, buffer
-- classes, read patterns, piece sizes) comes from a Park-Miller generator
-- seeded from one base seed, the same on every Lua version.
--
-- Per connection, each side sends its stream (possibly empty) while it
-- receives the other side's; when it has received and checked the whole
-- incoming stream and sent its own, it sends the verdict line "ok\n" (plain
-- TCP: then shutdown("send")). Each side reads the peer's verdict (plain:
-- then the orderly close) before closing, so no side closes with unread
-- data (which would make the kernel reset the connection), and closes only
-- once its own verdict's send has returned: a send that waits for room
-- keeps the rest of its TLS record in LuaSec, and a close meanwhile would
-- drop it.
--
-- Configuration (environment):
--   COPAS_NODATALOSS_SEED=<n>  base seed (printed with every failure)
--   COPAS_HEAVY=1              1000 concurrent connections, sizes up to 64 MB,
--                              the client side in a child process
--   COPAS_NODATALOSS_N=<n>     another number of connections
-- Small buffers: LuaSocket's "send-buffer-size" and "recv-buffer-size"
-- options (SO_SNDBUF/SO_RCVBUF) at 1 KB and 16 KB, which Linux doubles (and
-- raises the send buffer to its 4.5 KB minimum). Receive buffers below about
-- 16 KB are not used: over loopback (64 KB segments) the kernel then falls
-- back to zero-window probing with backed-off timers and a transfer stalls
-- for seconds even with plain blocking LuaSocket, without copas. On the
-- server side the options are set on a second listening socket and
-- inherited by the accepted connections (LuaSec sockets have no setoption,
-- and a TLS handshake comes before the first byte the server could use to
-- decide).

local unpack = table.unpack or unpack  -- luacheck: ignore 143
local floor, min, exp, log = math.floor, math.min, math.exp, math.log
local concat = table.concat

local role = os.getenv("COPAS_NODATALOSS_ROLE")
local HEAVY = os.getenv("COPAS_HEAVY") == "1"
local BASE_SEED = tonumber(os.getenv("COPAS_NODATALOSS_SEED") or "") or 20261123

local MB = 1024 * 1024
local TIMEOUT = 120                 -- copas timeout of every socket (seconds)
local MAXREAD = 256 * 1024          -- largest single read
local MAXSEND = 256 * 1024          -- largest single send


-------------------------------------------------------------------------------
-- deterministic bytes
-------------------------------------------------------------------------------

-- Park-Miller "minimal standard" generator (exact with doubles and integers).
-- g() -> float in [0, 1); g(n) -> integer in [1, n]
local function rng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = (x * 48271) % 2147483647
    if n then return x % n + 1 end
    return (x - 1) / 2147483646
  end
end

-- a size between 1 and max, spread evenly over the orders of magnitude
local function logsize(g, max)
  if max <= 1 then return max end
  local n = floor(exp(g() * log(max + 1)))
  if n < 1 then n = 1 elseif n > max then n = max end
  return n
end

local BASE_LEN = 65521
local base do
  local g = rng(7)
  local bytes = {}
  for i = 1, BASE_LEN do bytes[i] = g(256) - 1 end
  bytes[1000], bytes[2000] = 10, 13   -- at least one "\n" and one "\r"
  local parts = {}
  for i = 1, BASE_LEN, 4096 do
    parts[#parts + 1] = string.char(unpack(bytes, i, min(i + 4095, BASE_LEN)))
  end
  base = concat(parts)
end

local function chunk(seed, k)
  local x = (seed * 7919 + k * 104729 + 1) % 2147483647
  x = (x * 48271) % 2147483647
  x = (x * 48271) % 2147483647
  local off = x % BASE_LEN
  return base:sub(off + 1) .. base:sub(1, off)
end

-- a cursor over the stream of `size` bytes made from `seed`
local function stream(seed, size)
  return { seed = seed, size = size, pos = 0, k = -1 }
end

-- the chunk holding the cursor's position, and the offset in it
local function current(st)
  local k = floor(st.pos / BASE_LEN)
  if k ~= st.k then
    st.k, st.chunk = k, chunk(st.seed, k)
  end
  return st.chunk, st.pos - k * BASE_LEN
end

-- the next n bytes of the stream (n <= what is left); advances
local function take(st, n)
  local parts = {}
  while n > 0 do
    local c, off = current(st)
    local m = min(n, BASE_LEN - off)
    parts[#parts + 1] = c:sub(off + 1, off + m)
    st.pos, n = st.pos + m, n - m
  end
  return concat(parts)
end

-- the length up to and including the next "\n", or nil when the rest of
-- the stream has none (every chunk holds a "\n": look one chunk ahead)
local function line_length(st)
  local c, off = current(st)
  local i = c:find("\n", off + 1, true)
  local len
  if i then
    len = i - off
  else
    len = BASE_LEN - off + chunk(st.seed, st.k + 1):find("\n", 1, true)
  end
  if len > st.size - st.pos then return nil end
  return len
end

-- the read and send variants used, so a spec can tell they all ran
local used = {}

-- index of the first byte where a and b differ
local function first_diff(a, b)
  local lo, hi = 0, min(#a, #b)
  if a:sub(1, hi) == b:sub(1, hi) then return hi + 1 end
  while hi - lo > 1 do
    local mid = floor((lo + hi) / 2)
    if a:sub(1, mid) == b:sub(1, mid) then lo = mid else hi = mid end
  end
  return hi
end


-------------------------------------------------------------------------------
-- one connection
-------------------------------------------------------------------------------

-- the plan of connection idx, the same on both sides
local function plan_of(idx, opts)
  local g = rng(BASE_SEED * 7 + idx * 1000003)
  local p = { idx = idx, small = g(2) == 1 }
  local mode = g(3)                       -- 1 up, 2 down, 3 both
  -- every `large_every`-th connection may reach max_size, the others
  -- stay under common_size (keeps the heavy run's volume in bounds)
  local max = (opts.large_every and idx % opts.large_every ~= 0) and opts.common_size or opts.max_size
  p.up = mode ~= 2 and logsize(g, max) or 0
  p.down = mode ~= 1 and logsize(g, max) or 0
  p.up_seed, p.down_seed = g(2147483646), g(2147483646)
  p.client_seed, p.server_seed = g(2147483646), g(2147483646)
  if opts.big and idx == 1 then           -- the one large transfer
    p.up, p.down, p.small = 0, opts.big, false
  end
  return p
end

local function describe_plan(p, side, opts)
  return ("seed %d conn %d (%s, up %d B, down %d B, %s buffers) %s side"):format(
    BASE_SEED, p.idx, opts.tls and "TLS" or "plain", p.up, p.down,
    p.small and "small" or "default", side)
end

-- Receives and checks the incoming stream; `read_all`: '*a' may end it.
-- Returns true, verdict_seen | false, message.
local function receive_stream(copas, w, st, g, read_all)
  while st.pos < st.size do
    local left = st.size - st.pos
    local at = st.pos
    local pick = g(100)
    local what, got, want, err, part
    if pick <= 40 then
      local n = logsize(g, min(left, MAXREAD))
      what, used.count = ("receive(%d)"):format(n), true
      got, err, part = w:receive(n)
      want = take(st, n)
    elseif pick <= 55 then
      local prefix = ("<%d>"):format(at)
      local n = logsize(g, min(left, MAXREAD))
      what, used.prefix = ("receive(%d, %q)"):format(#prefix + n, prefix), true
      got, err, part = w:receive(#prefix + n, prefix)   -- the count includes the prefix
      want = prefix .. take(st, n)
    elseif pick <= 70 and line_length(st) then
      local len = line_length(st)
      local prefix = g(2) == 1 and "L" or nil
      what, used.line = "receive('*l'" .. (prefix and ", 'L')" or ")"), true
      got, err, part = w:receive("*l", prefix)
      -- LuaSocket drops the "\n" and every "\r" of the line
      want = (prefix or "") .. (take(st, len):sub(1, -2):gsub("\r", ""))
    elseif pick <= 85 then
      local n = logsize(g, min(left, MAXREAD))
      what, used.partial = ("receivepartial(%d)"):format(n), true
      local data
      data, err, part = w:receivepartial(n)
      got = data or part
      if data == nil and err ~= "timeout" then
        return false, ("%s at byte %d: %s"):format(what, at, tostring(err))
      end
      if not got or #got == 0 or #got > n then
        return false, ("%s at byte %d returned %d bytes"):format(what, at, got and #got or -1)
      end
      err = nil
      want = take(st, #got)
    elseif read_all and pick <= 87 and left <= 8 * MB then
      -- the rest, the peer's verdict and its close. When the close comes in
      -- a wake-up of its own, LuaSocket sees no new bytes in that last call
      -- and copas returns nil, "closed" and everything as the partial data
      -- (as Copas does: API.md section 6); both mean the stream is complete.
      what, used.all = "receive('*a')", true
      got, err, part = w:receive("*a")
      if got == nil and err == "closed" then got = part end
      want = take(st, left) .. "ok\n"
      if got == want then return true, true end
    else
      copas.pause(g(4) == 1 and 0.002 or 0)   -- a slow reader now and then
    end
    if what and got ~= want then
      if got == nil then
        return false, ("%s at byte %d: %s (%d bytes partial)"):format(
          what, at, tostring(err), part and #part or 0)
      end
      return false, ("%s at byte %d: %d bytes, expected %d, first difference at %d"):format(
        what, at, #got, #want, first_diff(got, want))
    end
  end
  return true, false
end

-- Sends the outgoing stream in random pieces. Returns true | false, message.
local function send_stream(copas, w, st, g)
  while st.pos < st.size do
    local at = st.pos
    local n = logsize(g, min(st.size - st.pos, MAXSEND))
    local data = take(st, n)
    local last, err
    if g(3) == 1 then                      -- a slice of a larger string
      used.slice = true
      last, err = w:send("#" .. data .. "##", 2, n + 1)
      if last ~= n + 1 then
        return false, ("send(s, 2, %d) at byte %d: %s, %s"):format(n + 1, at, tostring(last), tostring(err))
      end
    else
      last, err = w:send(data)
      if last ~= n then
        return false, ("send(%d) at byte %d: %s, %s"):format(n, at, tostring(last), tostring(err))
      end
    end
    if g(20) == 1 then copas.pause(0) end
  end
  return true
end

-- Runs one side of a connection on wrapper w (the calling thread receives,
-- a second thread sends). Returns nil | failure message, and the number of
-- incoming bytes checked.
local function run_side(copas, w, p, side, opts)
  local plain = not opts.tls
  local out = stream(side == "client" and p.up_seed or p.down_seed, side == "client" and p.up or p.down)
  local inc = stream(side == "client" and p.down_seed or p.up_seed, side == "client" and p.down or p.up)
  local seed = side == "client" and p.client_seed or p.server_seed
  local failure
  local sent, received = false, false
  -- nil, then "sending" while the verdict's send may wait for room, then
  -- "sent": the connection is closed only once the verdict is out, or a
  -- TLS record still in LuaSec's buffer would be lost with the close
  local verdict
  local waiting
  local function send_verdict()
    verdict = "sending"
    local ok, err = w:send(failure and "bad\n" or "ok\n")
    if not ok and not failure then failure = "sending the verdict: " .. tostring(err) end
    if plain then w.socket:shutdown("send") end
    verdict = "sent"
    if waiting then copas.wakeup(waiting) end
  end
  copas.addthread(function()
    local ok, msg = send_stream(copas, w, out, rng(seed + 1))
    if not ok then failure = failure or msg end
    sent = true
    if received and not verdict then send_verdict() end
  end)
  -- only the client reads with '*a': it waits for the peer's verdict, which
  -- the peer sends once its own receiving is done, so if both sides did
  -- they would wait for each other
  local ok, verdict_seen = receive_stream(copas, w, inc, rng(seed + 2), plain and side == "client")
  if not ok then failure = failure or verdict_seen; verdict_seen = false end
  received = true
  if sent and not verdict then send_verdict() end
  if not failure and not verdict_seen then
    local line, err = w:receive("*l")
    if line ~= "ok" then failure = ("the peer's verdict: %s, %s"):format(tostring(line), tostring(err)) end
    if plain and not failure then
      local rest, err2, part = w:receive(1)
      if rest ~= nil or err2 ~= "closed" or part ~= "" then
        failure = ("after the verdict: %s, %s, %q (expected the close)"):format(
          tostring(rest), tostring(err2), tostring(part))
      end
    end
  end
  if verdict ~= "sent" then
    if failure and not verdict then
      w:close()   -- unblocks a sender stuck on a peer that stopped reading
    else
      waiting = coroutine.running()
      while verdict ~= "sent" do copas.pauseforever() end
    end
  end
  if failure then return describe_plan(p, side, opts) .. ": " .. failure, inc.pos end
  return nil, inc.pos
end


-------------------------------------------------------------------------------
-- the two sides
-------------------------------------------------------------------------------

local function set_small(skt)
  assert(skt:setoption("recv-buffer-size", 16 * 1024))
  assert(skt:setoption("send-buffer-size", 1024))
end

-- starts the client side of connections first..last as copas threads;
-- report(msg|nil, bytes checked) is called once per connection
local function start_clients(copas, socket, ports, opts, first, last, report)
  for idx = first, last do
    copas.addthread(function()
      local p = plan_of(idx, opts)
      local skt = socket.tcp4()
      if p.small then set_small(skt) end
      copas.settimeout(skt, TIMEOUT)
      local w = copas.wrap(skt, opts.tls and opts.client_params or nil)
      local ok, err = w:connect("127.0.0.1", p.small and ports.small or ports.normal)
      if not ok then
        report(describe_plan(p, "client", opts) .. ": connect: " .. tostring(err))
        return
      end
      ok, err = w:send(idx .. "\n")
      if not ok then
        report(describe_plan(p, "client", opts) .. ": header: " .. tostring(err))
        return
      end
      local failure, checked = run_side(copas, w, p, "client", opts)
      w:close()
      report(failure, checked)
    end)
  end
end

-- adds the two servers (default and small buffers); report as above
local function start_servers(copas, socket, opts, report)
  local servers, ports = {}, {}
  for _, kind in ipairs { "normal", "small" } do
    local s = socket.tcp4()
    assert(s:setoption("reuseaddr", true))
    if kind == "small" then set_small(s) end
    assert(s:bind("127.0.0.1", 0))
    assert(s:listen(1024))
    local _, port = s:getsockname()
    servers[#servers + 1], ports[kind] = s, tonumber(port)
    local function serve(w)
      local idx = tonumber((w:receive("*l")))
      if not idx then report("server: no header") return end
      report(run_side(copas, w, plan_of(idx, opts), "server", opts))
    end
    copas.addserver(s, copas.handler(serve, opts.tls and opts.server_params or nil), TIMEOUT)
  end
  return servers, ports
end


-------------------------------------------------------------------------------
-- child: the client side in its own process (heavy configuration)
-------------------------------------------------------------------------------

local function options(tls, c)
  local o = {
    n = tonumber(os.getenv("COPAS_NODATALOSS_N") or "") or (HEAVY and 1000 or (tls and 100 or 200)),
    max_size = HEAVY and 64 * MB or MB,
    large_every = HEAVY and 50 or nil,       -- the others up to common_size
    common_size = 4 * MB,
    big = HEAVY and nil or (tls and 16 * MB or 64 * MB),
    tls = tls,
  }
  if tls then
    local certs = require "spec.certs"
    o.server_params = certs.server_params(c)
    o.client_params = certs.client_params(c)
  end
  return o
end

if role == "clients" and not rawget(_G, "describe") then
  local copas = require "copas"
  local socket = require "socket"
  local tls = arg[3] == "tls"
  local c = tls and { ca_cert = arg[4] } or nil
  local opts = options(tls, c)
  local done, failures, checked = 0, {}, 0
  local function report(msg, n)
    done, checked = done + 1, checked + (n or 0)
    if msg then failures[#failures + 1] = msg end
  end
  local ports = { normal = tonumber(arg[1]), small = tonumber(arg[2]) }
  copas.addthread(function()
    start_clients(copas, socket, ports, opts, 1, opts.n, report)
  end)
  copas.loop()
  for _, f in ipairs(failures) do print("FAIL " .. f) end
  print(("clients done %d failed %d checked %d"):format(done, #failures, checked))
  io.stdout:flush()
  os.exit(0)
end


-------------------------------------------------------------------------------
-- the specs
-------------------------------------------------------------------------------

local helpers = require "spec.helpers"
local certs = require "spec.certs"
local socket = require "socket"
local has_ssl = pcall(require, "ssl")

local this_file = debug.getinfo(1, "S").source:gsub("^@", "")

local function interpreter()
  local env = os.getenv("COPAS_LUA")
  if env and env ~= "" then return env end
  if rawget(_G, "jit") then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function soft_limit()
  local f = io.popen("ulimit -n")
  local out = f:read("*a")
  f:close()
  if out:match("unlimited") then return math.huge end
  return tonumber(out:match("%d+")) or 1024
end

-- the bytes all connections of opts move
local function total_bytes(opts)
  local n = 0
  for idx = 1, opts.n do
    local p = plan_of(idx, opts)
    n = n + p.up + p.down
  end
  return n
end

-- runs every connection of opts; returns the failure messages and the
-- number of bytes received and checked
local function transfer(opts, c)
  local copas, errors = helpers.reload_strict()
  for k in pairs(used) do used[k] = nil end
  local done, failures, checked = 0, {}, 0
  local function report(msg, n)
    done, checked = done + 1, checked + (n or 0)
    if msg then failures[#failures + 1] = msg end
  end
  local servers, ports = start_servers(copas, socket, opts, report)
  local child
  if HEAVY then
    -- the clients in a child process: each process holds n sockets
    local cmd = ("COPAS_NODATALOSS_ROLE=clients COPAS_NODATALOSS_SEED=%d COPAS_HEAVY=1 %s %s %d %d %s %s 2>&1"):format(
      BASE_SEED, interpreter(), shell_quote(this_file), ports.normal, ports.small,
      opts.tls and "tls" or "plain", opts.tls and shell_quote(c.ca_cert) or "")
    child = io.popen(cmd)
  end
  helpers.run(function()
    if not HEAVY then start_clients(copas, socket, ports, opts, 1, opts.n, report) end
    local sides = HEAVY and opts.n or 2 * opts.n
    while done < sides and #errors == 0 do copas.pause(0.05) end
    for _, s in ipairs(servers) do copas.removeserver(s) end
  end, HEAVY and 170 or 60)
  for _, e in ipairs(errors) do failures[#failures + 1] = "thread error: " .. e end
  if child then
    local out = child:read("*a")
    child:close()
    for line in out:gmatch("[^\n]+") do
      if line:match("^FAIL ") then failures[#failures + 1] = line:sub(6) end
    end
    local n = out:match(("clients done %d failed %%d+ checked (%%d+)"):format(opts.n))
    if n then
      checked = checked + tonumber(n)
    else
      failures[#failures + 1] = "the client process did not finish: " .. out:sub(1, 2000)
    end
  end
  return failures, checked
end

local function check(opts, failures, checked)
  if #failures > 0 then
    local shown = {}
    for i = 1, min(#failures, 20) do shown[i] = failures[i] end
    error(("%d failure(s); reproduce with COPAS_NODATALOSS_SEED=%d%s:\n%s"):format(
      #failures, BASE_SEED, HEAVY and " COPAS_HEAVY=1" or "", concat(shown, "\n")), 2)
  end
  -- every variant ran (the client side's '*a' only in this process)
  local variants = { "count", "prefix", "line", "partial", "slice" }
  if not opts.tls and not HEAVY then variants[#variants + 1] = "all" end
  for _, v in ipairs(variants) do
    if not used[v] then error(("read/send variant %q never used (seed %d)"):format(v, BASE_SEED), 2) end
  end
  local want = total_bytes(opts)
  if checked ~= want then
    error(("%d bytes checked, %d moved (seed %d)"):format(checked, want, BASE_SEED), 2)
  end
end


describe("no data lost", function()
  local c

  setup(function()
    if has_ssl and certs.available() then c = certs.generate() end
    if HEAVY then
      local need = 1000 + 100
      local have = soft_limit()
      assert(have >= need, ("COPAS_HEAVY needs ulimit -n >= %d (have %s)"):format(need, tostring(have)))
    end
  end)
  teardown(function() certs.cleanup(c) end)

  it("over plain TCP: " .. (HEAVY and "1000 connections, 1 B .. 64 MB"
      or "200 connections of 1 B .. 1 MB and one of 64 MB"), function()
    local opts = options(false)
    check(opts, transfer(opts))
  end)

  it("over TLS: " .. (HEAVY and "1000 connections, 1 B .. 64 MB"
      or "100 connections of 1 B .. 1 MB and one of 16 MB"), function()
    if not has_ssl then pending("LuaSec not available") return end
    if not c then pending("openssl not available") return end
    local opts = options(true, c)
    check(opts, transfer(opts, c))
  end)
end)
