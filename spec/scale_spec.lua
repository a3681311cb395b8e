-- Scale (DESIGN: the epoll backend handles thousands of sockets; select is
-- limited to FD_SETSIZE descriptors).
--
-- The work runs in child processes started from this file with a raised
-- soft descriptor limit (`ulimit -n` in bash), because a Lua process cannot
-- raise its own limit. A child is this same file run as a plain script with
-- COPAS_SCALE_ROLE set:
--   server  an echo server (epoll) that reports the peak number of
--           connections it held at once;
--   client  opens N connections to it and keeps every one of them open
--           until all have done an echo round trip;
--   select  with COPAS_BACKEND=select, uses descriptors >= FD_SETSIZE and
--           reports the errors it got;
--   emfile  runs out of descriptors while connections wait to be accepted.
-- Server and client are separate processes so that each holds N
-- descriptors, not 2 N: the server process is the one holding N concurrent
-- connections. Every loop is bounded in count and in time (each child
-- has a deadline and runs under `timeout` when coreutils has it).

local N = tonumber(os.getenv("COPAS_SCALE_N") or "") or 10000
local DEADLINE = 90             -- seconds, per child
local BATCH = 500               -- connects in flight at once (client)

local role = os.getenv("COPAS_SCALE_ROLE")

-- pcall that lets `fn` yield to copas (PUC Lua 5.1 cannot yield across
-- pcall: there `fn` runs in a coroutine whose yields are passed on)
local unpack = table.unpack or unpack  -- luacheck: ignore 143
local ypcall = pcall
if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then
  ypcall = function(fn, ...)
    local co = coroutine.create(fn)
    local res = { coroutine.resume(co, ...) }
    while true do
      if not res[1] then return false, res[2] end
      if coroutine.status(co) == "dead" then return true, unpack(res, 2) end
      res = { coroutine.resume(co, coroutine.yield(unpack(res, 2))) }
    end
  end
end


-------------------------------------------------------------------------------
-- children
-------------------------------------------------------------------------------

local function child_server()
  local copas = require "copas"
  local socket = require "socket"
  local server = socket.tcp4()
  assert(server:setoption("reuseaddr", true))
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(4096))
  local _, port = server:getsockname()
  print("port " .. port)
  io.stdout:flush()
  local live, peak, served, failed = 0, 0, 0, 0
  copas.addserver(server, function(c)
    live = live + 1
    if live > peak then peak = live end
    local line = copas.receive(c, "*l")
    if line and copas.send(c, line .. "\n") then served = served + 1 else failed = failed + 1 end
    copas.receive(c, "*l")                    -- until the client closes
    live = live - 1
  end)
  copas.addthread(function()
    local t0 = copas.gettime()
    while served + failed < N or live > 0 do
      if copas.gettime() - t0 > DEADLINE then
        print(("deadline served %d failed %d live %d peak %d"):format(served, failed, live, peak))
        os.exit(3)
      end
      copas.pause(0.05)
    end
    copas.removeserver(server)
    print(("served %d failed %d peak %d"):format(served, failed, peak))
    io.stdout:flush()
    os.exit(0)
  end)
  copas.loop()
end


local function child_client(port)
  local copas = require "copas"
  local socket = require "socket"
  local open, ok, failed = {}, 0, 0
  local first_err
  local function one(i)
    local skt = socket.tcp4()
    copas.settimeout(skt, 30)
    local res, err = copas.connect(skt, "127.0.0.1", port)
    if res then
      open[#open + 1] = skt
      res, err = copas.send(skt, "ping " .. i .. "\n")
      if res then
        local line
        line, err = copas.receive(skt, "*l")
        if line == "ping " .. i then ok = ok + 1 return end
      end
    end
    failed = failed + 1
    first_err = first_err or tostring(err)
  end
  copas.addthread(function()
    local t0 = copas.gettime()
    local started = 0
    while ok + failed < N do
      if copas.gettime() - t0 > DEADLINE then
        print(("deadline ok %d failed %d"):format(ok, failed))
        os.exit(3)
      end
      -- keep at most BATCH connects in flight
      while started < N and started - (ok + failed) < BATCH do
        started = started + 1
        copas.addthread(one, started)
      end
      copas.pause(0.01)
    end
    -- every connection is still open here
    local still_open = 0
    for _, skt in ipairs(open) do
      if skt:getfd() >= 0 then still_open = still_open + 1 end
    end
    print(("roundtrips %d failed %d open %d first_error %s"):format(ok, failed, still_open, tostring(first_err)))
    for _, skt in ipairs(open) do copas.close(skt) end
    io.stdout:flush()
    os.exit(0)
  end)
  copas.loop()
end


local function child_select()
  local copas = require "copas"
  local socket = require "socket"
  local report = {}
  local function say(s) report[#report + 1] = s end
  copas.seterrorhandler(function(err) say("handler-error " .. tostring(err)) end, true)
  local t0 = socket.gettime()
  -- steps the loop until pred() holds (bounded by the deadline)
  local function drive(pred)
    while not pred() and socket.gettime() - t0 < DEADLINE do
      local ok, err = copas.step(0.1)
      if ok == nil then say("step-error " .. tostring(err)) return end
    end
  end

  local server = socket.tcp4()
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(64))
  local _, port = server:getsockname()
  copas.addserver(server, function(c)       -- line echo until closed
    while true do
      local line = copas.receive(c, "*l")   -- a high descriptor fails here
      if not line then return end
      copas.send(c, line .. "\n")
    end
  end)

  -- 1. a low-descriptor connection (both ends) works
  local low = socket.tcp4()
  local got
  copas.addthread(function()
    assert(copas.connect(low, "127.0.0.1", port))
    copas.send(low, "low\n")
    got = copas.receive(low, "*l")
  end)
  drive(function() return got end)
  say("low-before " .. tostring(got))

  -- push the next descriptors past FD_SETSIZE (1024 on Linux)
  local fillers = {}
  for _ = 1, 1100 do
    local t = socket.tcp4()
    fillers[#fillers + 1] = t
    if t:getfd() >= 1030 then break end
  end
  say("highest-filler " .. fillers[#fillers]:getfd())

  -- 2. connect on a high descriptor: a Lua error in the calling thread;
  --    the server accepts that connection on a high descriptor too, and its
  --    handler fails (reported through the error handler)
  local high = socket.tcp4()
  say("high-fd " .. high:getfd())
  local done = false
  copas.addthread(function()
    local ok, err = ypcall(copas.connect, high, "127.0.0.1", port)
    say("connect-ok " .. tostring(ok))
    if not ok then say("connect-error " .. tostring(err)) end
    done = true
  end)
  drive(function()
    if not done then return false end
    for _, l in ipairs(report) do if l:find("^handler%-error") then return true end end
  end)
  high:close()

  -- 3. a server socket on a high descriptor is refused by addserver
  local hs = socket.tcp4()
  assert(hs:bind("127.0.0.1", 0))
  local ok, err = pcall(copas.addserver, hs, function() end)
  say("addserver-ok " .. tostring(ok))
  if not ok then say("addserver-error " .. tostring(err)) end
  hs:close()

  -- 4. the low connection still works while the high descriptors exist
  got = nil
  copas.addthread(function()
    copas.send(low, "again\n")
    got = copas.receive(low, "*l")
  end)
  drive(function() return got end)
  say("low-after " .. tostring(got))
  low:close()
  for _, t in ipairs(fillers) do t:close() end
  copas.removeserver(server)
  drive(function() return copas.finished() end)
  for _, l in ipairs(report) do print((l:gsub("\n", " | "))) end
  print("alive")
  io.stdout:flush()
  os.exit(0)
end


local function child_emfile()
  local copas = require "copas"
  local socket = require "socket"
  local server = socket.tcp4()
  assert(server:bind("127.0.0.1", 0))
  assert(server:listen(16))
  local _, port = server:getsockname()
  local handled = 0
  copas.addserver(server, function(c)
    handled = handled + 1
    copas.send(c, "served\n")
  end)
  -- three connections wait in the accept queue
  local clients = {}
  for i = 1, 3 do clients[i] = assert(socket.connect("127.0.0.1", port)) end
  -- use up every descriptor
  local fillers = {}
  for _ = 1, 10000 do
    local t = socket.tcp4()
    if not t or t:getfd() < 0 then break end
    fillers[#fillers + 1] = t
  end
  print("fillers " .. #fillers)
  local errs = 0
  for _ = 1, 20 do
    local ok, res, err = pcall(copas.step, 0.01)
    if not ok or res == nil then errs = errs + 1 print("step-error " .. tostring(res) .. " " .. tostring(err)) end
  end
  print("handled-while-full " .. handled)
  for _, t in ipairs(fillers) do t:close() end
  local t0 = socket.gettime()
  while handled < 3 and socket.gettime() - t0 < 5 do
    local ok, res, err = pcall(copas.step, 0.05)
    if not ok or res == nil then errs = errs + 1 print("step-error " .. tostring(res) .. " " .. tostring(err)) end
  end
  print("handled-after " .. handled)
  local got = 0
  for _, c in ipairs(clients) do
    c:settimeout(2)
    if c:receive() == "served" then got = got + 1 end
    c:close()
  end
  print("clients-served " .. got)
  print("step-errors " .. errs)
  copas.removeserver(server)
  print("alive")
  io.stdout:flush()
  os.exit(0)
end


if role and not rawget(_G, "describe") then
  if role == "server" then
    child_server()
  elseif role == "client" then
    child_client(tonumber(arg[1]))
  elseif role == "select" then
    child_select()
  elseif role == "emfile" then
    child_emfile()
  else
    io.stderr:write("unknown COPAS_SCALE_ROLE " .. role .. "\n")
    os.exit(2)
  end
  return
end


-------------------------------------------------------------------------------
-- the specs
-------------------------------------------------------------------------------

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

local function sh_read(cmd)
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  return out
end

local function hard_limit()
  local out = sh_read("bash -c 'ulimit -Hn' 2>/dev/null")
  if out:match("unlimited") then return math.huge end
  return tonumber(out:match("%d+"))
end

local has_timeout = sh_read("command -v timeout 2>/dev/null") ~= ""

-- the command that runs this file as child `role`
local function child_cmd(role_name, backend, nofile, extra)
  local prefix = has_timeout and ("timeout " .. (DEADLINE + 30) .. " ") or ""
  local inner = ("ulimit -n %d || exit 77; "
    .. "COPAS_SCALE_ROLE=%s COPAS_BACKEND=%s COPAS_SCALE_N=%d exec %s%s %s %s"):format(
    nofile, role_name, backend, N, prefix, interpreter(), shell_quote(this_file), extra or "")
  return "bash -c " .. shell_quote(inner) .. " 2>&1"
end


describe("the epoll backend", function()
  it(("serves %d concurrent connections in one process"):format(N), function()
    local need = N + 200
    local hard = hard_limit()
    if not hard or hard < need then
      pending(("hard descriptor limit %s is below %d"):format(tostring(hard), need))
      return
    end
    local srv = assert(io.popen(child_cmd("server", "epoll", need)))
    local first = srv:read("*l")
    local port = first and tonumber(first:match("^port (%d+)$"))
    if not port then
      local rest = srv:read("*a")
      srv:close()
      error("server child did not start: " .. tostring(first) .. "\n" .. tostring(rest))
    end
    local cli_out = sh_read(child_cmd("client", "epoll", need, tostring(port)))
    local srv_out = srv:read("*a")
    srv:close()
    local ok, failed, open = cli_out:match("roundtrips (%d+) failed (%d+) open (%d+)")
    assert(ok, "client child: " .. cli_out)
    assert.equal(N, tonumber(ok), cli_out)
    assert.equal(0, tonumber(failed), cli_out)
    assert.equal(N, tonumber(open), cli_out)
    local served, sfailed, peak = srv_out:match("served (%d+) failed (%d+) peak (%d+)")
    assert(served, "server child: " .. srv_out)
    assert.equal(N, tonumber(served), srv_out)
    assert.equal(0, tonumber(sfailed), srv_out)
    assert.equal(N, tonumber(peak), srv_out)      -- all held at once
  end)
end)


describe("the select backend", function()
  it("gives a descriptor >= FD_SETSIZE a clear Lua error and does not crash", function()
    local need = 1300
    local hard = hard_limit()
    if not hard or hard < need then
      pending(("hard descriptor limit %s is below %d"):format(tostring(hard), need))
      return
    end
    local out = sh_read(child_cmd("select", "select", need))
    assert.matches("\nalive\n?$", "\n" .. out, nil, false)
    assert.not_matches("step%-error ", out)
    local high = tonumber(out:match("high%-fd (%d+)"))
    assert(high and high >= 1024, "no high descriptor: " .. out)
    assert.matches("low-before low", out, 1, true)
    assert.matches("low-after again", out, 1, true)
    -- connect on the high descriptor
    assert.matches("connect-ok false", out, 1, true)
    local cerr = out:match("connect%-error ([^\n]*)")
    assert.matches("select", cerr, 1, true)
    assert.matches("FD_SETSIZE", cerr, 1, true)
    -- the handler of the connection accepted on a high descriptor
    local herr = out:match("handler%-error ([^\n]*)")
    assert(herr, "handler did not fail: " .. out)
    assert.matches("select", herr, 1, true)
    assert.matches("FD_SETSIZE", herr, 1, true)
    -- addserver with a server socket on a high descriptor
    assert.matches("addserver-ok false", out, 1, true)
    local aerr = out:match("addserver%-error ([^\n]*)")
    assert.matches("addserver", aerr, 1, true)
    assert.matches("FD_SETSIZE", aerr, 1, true)
  end)
end)


describe("a server that runs out of descriptors", function()
  for _, backend in ipairs { "epoll", "poll", "select" } do
    it("keeps stepping without errors and accepts once descriptors are free (" .. backend .. ")", function()
      local out = sh_read(child_cmd("emfile", backend, 64))
      assert.matches("\nalive\n?$", "\n" .. out, nil, false)
      assert.not_matches("step%-error ", out)
      assert.matches("handled-while-full 0", out, 1, true)
      assert.matches("handled-after 3", out, 1, true)
      assert.matches("clients-served 3", out, 1, true)
      assert.matches("step-errors 0", out, 1, true)
    end)
  end
end)
