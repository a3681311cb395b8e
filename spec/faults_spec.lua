-- Faults: peers that reset (plain and TLS) or never read, writes to closed
-- peers (SIGPIPE), failing handlers and threads, os.exit from inside the
-- loop, and copas.removeall() in the middle of transfers. Each spec checks
-- that the copas side gets the documented result and that the loop goes on
-- (or ends) leaving nothing behind.
--
-- Already covered elsewhere and not repeated here: a reset on an idle
-- connection (tcp_spec), close() waking blocked readers and writers
-- (close_spec), send timeouts on one connection (sockettimeout_spec), a
-- failing handler's client being closed (server_spec), the loop surviving a
-- thread error (errors_spec), removeall of idle threads (thread_spec).
--
-- The cases that end the process run in a child: this file started as a
-- plain script with COPAS_FAULTS_ROLE set (see the bottom of the children
-- section).

local role = os.getenv("COPAS_FAULTS_ROLE")


-------------------------------------------------------------------------------
-- children
-------------------------------------------------------------------------------

-- writes to a connection whose peer has closed, until the write fails
local function child_sigpipe()
  local copas = require "copas"
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local first_read, send_err, sends = nil, nil, 0
  copas.addserver(server, function(c)
    local _, err = copas.receive(c, "*l")   -- the peer closes without a word
    first_read = err
    for _ = 1, 1000 do                      -- the first write may still succeed
      sends = sends + 1
      local last, e = copas.send(c, "written after the peer closed\n")
      if not last then send_err = e break end
      copas.pause(0.005)
    end
    copas.removeserver(server)
  end)
  copas.addthread(function()
    local skt = socket.tcp()
    assert(copas.connect(skt, "127.0.0.1", port))
    skt:close()
  end)
  copas.loop()
  print("read " .. tostring(first_read))
  print("send " .. tostring(send_err) .. " after " .. sends .. " sends")
  io.stdout:flush()
  os.exit(0)
end


-- calls os.exit from a thread while other work is pending
local function child_exit(how)
  local copas = require "copas"
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  copas.addserver(server, function() end)
  copas.addthread(function() copas.pause(3600) end)
  copas.addthread(function()
    local skt = socket.tcp()
    local _, port = server:getsockname()
    assert(copas.connect(skt, "127.0.0.1", port))
    copas.receive(skt, "*l")              -- waits forever
  end)
  copas.addthread(function()
    copas.pause(0.01)
    print("exiting")
    io.stdout:flush()
    if how == "true" then os.exit(true)
    elseif how == "false" then os.exit(false)
    elseif how == "close" then os.exit(3, true)
    else os.exit(tonumber(how)) end
  end)
  copas.loop()
  print("loop returned")
  io.stdout:flush()
  os.exit(0)
end


if role and not rawget(_G, "describe") then
  if role == "sigpipe" then
    child_sigpipe()
  elseif role == "exit" then
    child_exit(arg[1])
  else
    io.stderr:write("unknown COPAS_FAULTS_ROLE " .. role .. "\n")
    os.exit(2)
  end
  return
end


-------------------------------------------------------------------------------
-- the specs
-------------------------------------------------------------------------------

local helpers = require "spec.helpers"
local socket = require "socket"

local copas
local errors

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

local listen = helpers.listen

local function pack(...) return { ... } end

local function full_gc()
  -- LuaJIT's compiled traces keep the objects they were recorded on alive;
  -- dropping them first lets a collection free what nothing else refers to
  if jit then jit.flush() end
  collectgarbage("collect")
  collectgarbage("collect")
end

-- coroutines held in the registry (the core keeps each thread it owns there)
local function registry_threads()
  local n = 0
  for _, v in pairs(debug.getregistry()) do
    if type(v) == "thread" then n = n + 1 end
  end
  return n
end

local function idle_status()
  local st = copas.status()
  return { st.read, st.write, st.active, st.timer, st.inactive, st.timeout }
end

-- the number of open descriptors of this process, or nil without /proc
local function open_fds()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  local p = io.popen("ls /proc/" .. pid .. "/fd")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

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

-- `env --default-signal` (coreutils >= 8.31) starts the child with the
-- default action for SIGPIPE even if this process ignores it
local default_sigpipe = sh_read("env --default-signal=PIPE true 2>/dev/null && echo yes"):match("yes")
  and "env --default-signal=PIPE " or ""

-- runs this file as child `role_name`; returns its output and exit status
local function run_child(role_name, extra)
  local cmd = ("COPAS_FAULTS_ROLE=%s %stimeout 60 %s %s %s 2>&1; echo \"exit:$?\""):format(
    role_name, default_sigpipe, interpreter(), shell_quote(this_file), extra or "")
  local out = sh_read(cmd)
  local code = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), code
end


describe("a peer that resets the connection (SO_LINGER 0)", function()
  before_each(fresh_copas)

  it("in the middle of a large send: the sender gets nil, 'closed', bytes sent; the loop goes on", function()
    local server, port = listen()
    local BIG = ("x"):rep(32 * 1024 * 1024)
    local sent, echoed
    copas.addserver(server, function(c)
      local what = copas.receive(c, "*l")
      if what == "big" then
        sent = pack(copas.send(c, BIG))
      else
        copas.send(c, what .. "\n")
      end
    end)
    helpers.run_strict(errors, function()
      local skt = socket.tcp()
      assert(copas.connect(skt, "127.0.0.1", port))
      copas.send(skt, "big\n")
      assert(copas.receive(skt, 256 * 1024))   -- the transfer is under way
      assert(skt:setoption("linger", { on = true, timeout = 0 }))
      skt:close()                              -- sends RST
      while not sent do copas.pause(0.01) end
      -- the same server goes on serving
      local other = socket.tcp()
      assert(copas.connect(other, "127.0.0.1", port))
      copas.send(other, "still serving\n")
      echoed = copas.receive(other, "*l")
      other:close()
      copas.removeserver(server)
    end, 20)
    assert.equal(nil, sent[1])
    assert.equal("closed", sent[2])
    assert.is_true(sent[3] >= 256 * 1024 and sent[3] < #BIG, "bytes sent: " .. tostring(sent[3]))
    assert.equal("still serving", echoed)
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
    assert.is_true(copas.finished())
  end)

  -- Linux keeps the bytes that arrived before the reset readable, then
  -- recv fails with ECONNRESET, which LuaSocket 3.1 reports as "closed" (for
  -- '*a' too: unlike an orderly close, a reset is an error there). What the
  -- receiver gets is a prefix of what the peer sent.
  for _, case in ipairs {
    { pattern = 1024 * 1024, name = "receive(n)" },
    { pattern = "*l", name = "receive('*l')" },
    { pattern = "*a", name = "receive('*a')" },
  } do
    it("in the middle of a " .. case.name .. ": nil, 'closed' and the bytes that arrived", function()
      local server, port = listen()
      local DATA = ("0123456789abcdef"):rep(100 * 1024 / 16)   -- no newline
      local got, echoed
      copas.addserver(server, function(c)
        local hello = copas.receive(c, "*l")
        if hello == "hello" then
          copas.send(c, "ready\n")
          got = pack(copas.receive(c, case.pattern))
        else
          copas.send(c, hello .. "\n")
        end
      end)
      helpers.run_strict(errors, function()
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        assert(copas.send(skt, "hello\n" .. DATA))
        assert.equal("ready", copas.receive(skt, "*l"))
        assert(skt:setoption("linger", { on = true, timeout = 0 }))
        skt:close()
        while not got do copas.pause(0.01) end
        local other = socket.tcp()
        assert(copas.connect(other, "127.0.0.1", port))
        copas.send(other, "still serving\n")
        echoed = copas.receive(other, "*l")
        other:close()
        copas.removeserver(server)
      end, 20)
      assert.equal(nil, got[1])
      assert.equal("closed", got[2])
      assert.equal("string", type(got[3]))
      assert.is_true(#got[3] > 0, "nothing arrived before the reset")
      assert.is_true(got[3] == DATA:sub(1, #got[3]), "the partial data is not what was sent")
      assert.equal("still serving", echoed)
      assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
    end)
  end
end)


describe("a TLS peer that resets the connection", function()
  local certs = require "spec.certs"
  local has_ssl = pcall(require, "ssl")
  local c

  setup(function()
    if has_ssl and certs.available() then c = certs.generate() end
  end)
  teardown(function() certs.cleanup(c) end)
  before_each(fresh_copas)

  -- SO_LINGER 0 is set on the plain socket before the TLS wrapping (LuaSec
  -- sockets have no setoption); the TLS close then resets the connection
  local function resetting_client(port, first)
    local skt = socket.tcp4()
    assert(skt:setoption("linger", { on = true, timeout = 0 }))
    local w = copas.wrap(skt, certs.client_params(c))
    assert(w:connect("127.0.0.1", port))
    assert(w:send(first))
    return w
  end

  it("in the middle of a send: nil, 'closed' and the bytes sent, as over plain TCP", function()
    if not (has_ssl and c) then pending("LuaSec or openssl not available") return end
    local server, port = listen()
    local BIG = ("x"):rep(32 * 1024 * 1024)
    local sent
    copas.addserver(server, copas.handler(function(w)
      w:receive("*l")
      sent = pack(w:send(BIG))
    end, certs.server_params(c)))
    helpers.run_strict(errors, function()
      local w = resetting_client(port, "big\n")
      assert(w:receive(256 * 1024))
      w:close()
      while not sent do copas.pause(0.01) end
      copas.removeserver(server)
    end, 20)
    assert.equal(nil, sent[1])
    assert.equal("closed", sent[2])
    assert.is_true(sent[3] >= 256 * 1024 and sent[3] < #BIG, "bytes sent: " .. tostring(sent[3]))
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
  end)

  it("in the middle of a receive: nil, 'closed' and the bytes that arrived", function()
    if not (has_ssl and c) then pending("LuaSec or openssl not available") return end
    local server, port = listen()
    local DATA = ("0123456789abcdef"):rep(100 * 1024 / 16)
    local got
    copas.addserver(server, copas.handler(function(w)
      w:receive("*l")
      w:send("ready\n")
      got = pack(w:receive(1024 * 1024))
    end, certs.server_params(c)))
    helpers.run_strict(errors, function()
      local w = resetting_client(port, "hello\n" .. DATA)
      assert.equal("ready", w:receive("*l"))
      w:close()
      while not got do copas.pause(0.01) end
      copas.removeserver(server)
    end, 20)
    assert.equal(nil, got[1])
    assert.equal("closed", got[2])
    assert.is_true(#got[3] > 0 and got[3] == DATA:sub(1, #got[3]), "the partial data is not what was sent")
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
  end)
end)


describe("a peer that never reads", function()
  before_each(fresh_copas)

  it("gives a sender with a send timeout nil, 'timeout' and the exact count; other clients are served", function()
    local server, port = listen()
    local BIG = ("y"):rep(32 * 1024 * 1024)
    local hog_result
    local echoes_before_timeout = 0
    copas.addserver(server, function(c)
      local what = copas.receive(c, "*l")
      if what == "hog" then
        copas.settimeouts(c, nil, 1, nil)
        hog_result = pack(copas.send(c, BIG))
        return                                   -- autoclose: the rest is delivered
      end
      while what do
        copas.send(c, what .. "\n")
        what = copas.receive(c, "*l")
      end
    end)
    local hog_received
    helpers.run_strict(errors, function()
      local hog = socket.tcp()
      assert(copas.connect(hog, "127.0.0.1", port))
      copas.send(hog, "hog\n")
      local other = socket.tcp()
      assert(copas.connect(other, "127.0.0.1", port))
      for i = 1, 50 do
        copas.send(other, "ping " .. i .. "\n")
        assert.equal("ping " .. i, copas.receive(other, "*l"))
        if not hog_result then echoes_before_timeout = echoes_before_timeout + 1 end
      end
      other:close()
      while not hog_result do copas.pause(0.01) end
      -- now read what the server managed to send before its timeout
      hog_received = copas.receive(hog, "*a")
      hog:close()
      copas.removeserver(server)
    end, 20)
    assert.equal(nil, hog_result[1])
    assert.equal("timeout", hog_result[2])
    assert.is_true(hog_result[3] > 0 and hog_result[3] < #BIG)
    assert.equal(50, echoes_before_timeout)     -- all served while the hog was stuck
    assert.equal(hog_result[3], #hog_received)  -- the count is exact: nothing lost, nothing extra
  end)
end)


describe("writing to a socket whose peer closed", function()
  it("does not kill the process (SIGPIPE) and returns nil, 'closed'", function()
    local out, code = run_child("sigpipe")
    assert.equal(0, code, out)
    assert.matches("read closed\n", out, 1, true)
    assert.matches("send closed after %d+ sends\n", out)
  end)
end)


describe("failing handlers and threads", function()
  before_each(fresh_copas)

  it("a handler failing mid-transfer: reported with its message, the other transfers stay intact", function()
    local server, port = listen()
    local SIZE = 1024 * 1024
    local DATA = ("abcdefghijklmnopqrstuvwxyz012345"):rep(SIZE / 32)
    local reported = {}
    copas.seterrorhandler(function(err, _, skt)
      reported[#reported + 1] = { err = err, skt = skt }
    end, true)
    copas.addserver(server, function(c)
      local kind = copas.receive(c, "*l")
      if kind:match("^bad") then
        copas.receive(c, 64 * 1024)
        error("handler failure " .. kind, 0)
      end
      local got = copas.receive(c, SIZE)
      copas.send(c, got == DATA and "intact\n" or "differs\n")
    end)
    local good, bad = {}, {}
    helpers.run(function()
      local threads = {}
      for i = 1, 30 do
        local kind = (i % 3 == 0) and ("bad " .. i) or ("good " .. i)
        threads[#threads + 1] = copas.addthread(function()
          local skt = socket.tcp()
          assert(copas.connect(skt, "127.0.0.1", port))
          copas.send(skt, kind .. "\n")
          local _, send_err = copas.send(skt, DATA)
          local reply, err = copas.receive(skt, "*l")
          if kind:match("^bad") then bad[#bad + 1] = send_err or err else good[#good + 1] = reply end
          skt:close()
        end)
      end
      while #good + #bad < 30 do copas.pause(0.01) end
      copas.removeserver(server)
    end, 30)
    assert.equal(10, #reported)
    for _, r in ipairs(reported) do
      assert.matches("^handler failure bad %d+$", r.err)
      assert.equal("userdata", type(r.skt))
    end
    assert.equal(20, #good)
    for _, g in ipairs(good) do assert.equal("intact", g) end
    assert.equal(10, #bad)
    for _, b in ipairs(bad) do assert.equal("closed", b) end
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
  end)

  it("1000 threads failing one after another: each reported, none kept", function()
    local reported = {}
    copas.seterrorhandler(function(err) reported[#reported + 1] = err end, true)
    full_gc()
    local threads_before = registry_threads()
    local weak = setmetatable({}, { __mode = "k" })
    local most_held = 0
    helpers.run(function()
      for i = 1, 1000 do
        weak[copas.addthread(function()
          copas.pause(0)
          error("failure " .. i, 0)
        end)] = true
        while #reported < i do copas.pause(0) end
        local st = copas.status()
        local held = st.active + st.timer + st.inactive + st.read + st.write
        if held > most_held then most_held = held end
      end
    end, 30)
    assert.equal(1000, #reported)
    for i = 1, 1000 do
      if reported[i] ~= "failure " .. i then
        assert.equal("failure " .. i, reported[i])
      end
    end
    assert.is_true(most_held <= 1, "threads held at once: " .. most_held)   -- the supervisor
    full_gc()
    assert.is_nil(next(weak), "a failed thread is still referenced")
    assert.equal(threads_before, registry_threads())
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
  end)
end)


describe("os.exit() from inside the loop", function()
  local cases = {
    { arg = "3", code = 3 },
    { arg = "0", code = 0 },
  }
  if _VERSION ~= "Lua 5.1" or rawget(_G, "jit") then
    -- PUC Lua 5.1's os.exit takes a number only
    cases[#cases + 1] = { arg = "true", code = 0 }
    cases[#cases + 1] = { arg = "false", code = 1 }
  end
  if _VERSION ~= "Lua 5.1" then
    -- closes the state (finalizers run) while the core is resuming a thread
    cases[#cases + 1] = { arg = "close", code = 3, name = "os.exit(3, true)" }
  end
  for _, case in ipairs(cases) do
    local name = case.name or ("os.exit(%s)"):format(case.arg)
    it(name .. " ends the process with status " .. case.code .. " at once", function()
      local out, code = run_child("exit", case.arg)
      assert.equal(case.code, code, out)
      assert.equal("exiting\n", out)      -- the loop did not return
    end)
  end
end)


describe("copas.removeall() in the middle of transfers", function()
  before_each(fresh_copas)

  it("closes every descriptor of 50 busy connections, ends the loop; a new loop serves", function()
    full_gc()                                   -- earlier tests' copas instances
    local before = open_fds()
    if not before then pending("no /proc/self/fd") return end
    local N = 50
    local server, port = listen()
    local CHUNK = ("z"):rep(1024 * 1024)
    local accepted, received, after_removeall = {}, {}, nil
    local started = 0
    copas.addserver(server, function(c)
      accepted[#accepted + 1] = c
      for _ = 1, 1000 do                         -- far more than gets read
        if not copas.send(c, CHUNK) then return end
      end
    end)
    helpers.run(function()
      for i = 1, N do
        copas.addthread(function()
          local skt = socket.tcp()
          assert(copas.connect(skt, "127.0.0.1", port))
          started = started + 1
          received[i] = 0
          for _ = 1, 100000 do
            local data, _, part = copas.receive(skt, 64 * 1024)
            data = data or part
            received[i] = received[i] + #data
            copas.pause(0.001)                   -- a slow reader
          end
        end)
      end
      local t0 = copas.gettime()
      local function all_busy()
        if #accepted < N or started < N then return false end
        for i = 1, N do if (received[i] or 0) < 64 * 1024 then return false end end
        return true
      end
      while not all_busy() and copas.gettime() - t0 < 10 do copas.pause(0.01) end
      assert(all_busy(), "the transfers did not all start")
      copas.removeall()
      after_removeall = {}
      for i = 1, N do after_removeall[i] = received[i] end
    end, 30)
    assert.same({}, errors)
    -- the server and every accepted client were closed by removeall
    assert.equal(-1, server:getfd())
    assert.equal(N, #accepted)
    for _, c in ipairs(accepted) do assert.equal(-1, c:getfd()) end
    -- no dropped thread ran again
    assert.same(after_removeall, received)
    assert.same({ 0, 0, 0, 0, 0, 0 }, idle_status())
    assert.is_true(copas.finished())
    -- client sockets of threads that were not waiting at that moment are
    -- released with their threads
    accepted = nil
    full_gc()
    assert.equal(before, open_fds())

    -- a new loop starts clean and serves
    local server2, port2 = listen()
    copas.addserver(server2, function(c) copas.send(c, copas.receive(c, "*l") .. "\n") end)
    local echoed
    helpers.run_strict(errors, function()
      local skt = socket.tcp()
      assert(copas.connect(skt, "127.0.0.1", port2))
      copas.send(skt, "fresh\n")
      echoed = copas.receive(skt, "*l")
      skt:close()
      copas.removeserver(server2)
    end, 10)
    assert.equal("fresh", echoed)
    full_gc()
    assert.equal(before, open_fds())
  end)
end)


describe("a copas nobody refers to any more", function()
  it("is collected with its loop: reloading it 30 times keeps no descriptor or registry entry", function()
    local before = open_fds()
    if not before then pending("no /proc/self/fd") return end
    -- registry entries that hold something (a freed reference holds a number)
    local function held()
      local n = 0
      for _, v in pairs(debug.getregistry()) do
        if type(v) ~= "number" then n = n + 1 end
      end
      return n
    end
    -- (in a function of its own: its locals are gone when it returns)
    local function churn(n)
      for _ = 1, n do
        local c = helpers.reload()
        helpers.run(function() c.pause(0) end)   -- each one has run its loop
      end
      helpers.reload()                           -- the one that stays loaded
    end
    churn(1)                                     -- what a first run sets up once
    full_gc()
    before = open_fds()
    local held_before = held()
    churn(30)
    full_gc()
    -- one loaded copas before and after: its poller and its tables
    assert.equal(before, open_fds())
    assert.equal(held_before, held())
  end)
end)
