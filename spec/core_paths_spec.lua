-- Paths of the C core that the other specs do not reach: re-entering the
-- step, a step timeout past the poller's range, removeall and the sockets
-- of sleeping handlers, the worker pool's cancel/close/size, and each
-- poller with more descriptors than its first allocation, dropped out of
-- order, or closed behind the loop's back.
local socket = require "socket"
local helpers = require "spec.helpers"
local run_lua = helpers.run_lua

local pack = table.pack or function(...) return { n = select("#", ...), ... } end

local BACKENDS = { "epoll", "poll", "select" }

-- waits (at most `seconds`) until the pool's descriptor is readable: a
-- finished job is waiting to be taken
local function wait_finished(pool, seconds)
  local fd = { getfd = function() return pool:getfd() end }
  local readable = socket.select({ fd }, nil, seconds)
  return #readable > 0
end

-- a pool of one thread whose workers find LuaSocket
local function new_pool()
  return require("copas.core").pool_new(1, { path = package.path, cpath = package.cpath })
end

-- a job (no upvalues) that blocks until the gate at `port` releases it
local function blocking_job(port)
  local s = assert(require("socket").connect("127.0.0.1", port))
  local line = s:receive("*l")
  s:close()
  return line
end

-- a plain listening socket that holds blocking_job until release()
local function new_gate()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local clients = {}
  server:settimeout(5)
  return {
    port = tonumber(port),
    accept = function()
      clients[#clients + 1] = assert(server:accept(), "no job connected within 5 s")
    end,
    release = function()
      for _, c in ipairs(clients) do c:send("go\n") c:close() end
      clients = {}
    end,
    close = function() server:close() end,
  }
end

-- takes results (packed) until the one of job `id`, at most 5 s
local function take_until(pool, id)
  local got = {}
  local deadline = socket.gettime() + 5
  while #got == 0 or got[#got][1] ~= id do
    assert(socket.gettime() < deadline, "job " .. id .. " did not finish within 5 s")
    wait_finished(pool, 0.1)
    local res = pack(pool:take())
    if res.n > 0 then got[#got + 1] = res end
  end
  return got
end

describe("the C core", function()
  local copas

  before_each(function()
    copas = helpers.reload()
  end)

  after_each(function()
    copas.removeall()
  end)

  describe("copas.step()", function()
    it("raises when called from inside a copas thread", function()
      local ok, err
      helpers.run(function()
        ok, err = pcall(copas.step, 0)
      end)
      assert.is_false(ok)
      assert.matches("copas.step: the loop is already stepping (called from inside a thread?)",
                     err, 1, true)
    end)

    it("returns on I/O with a timeout past the poller's range (about 24 days)", function()
      local server = helpers.listen()
      local _, port = server:getsockname()
      local client = assert(socket.connect("127.0.0.1", port))
      local peer = assert(server:accept())
      local got, err
      copas.addthread(function()
        got, err = copas.wrap(peer):receive("*l")
      end)
      copas.step(0)                      -- the thread now waits for data
      assert.is_nil(got)
      client:send("ready\n")
      local t0 = socket.gettime()
      copas.step(3e6)                    -- 3e9 ms: more than an int holds
      assert.is_true(socket.gettime() - t0 < 30)
      assert.same({ "ready", nil }, { got, err })
      client:close()
      peer:close()
      server:close()
    end)
  end)

  describe("copas.removeall()", function()
    it("closes the socket of a handler that sleeps", function()
      local server = helpers.listen()
      local _, port = server:getsockname()
      local sleeping = false
      copas.addserver(server, function()
        sleeping = true
        copas.sleep(60)
      end)
      local client = assert(socket.connect("127.0.0.1", port))
      helpers.step_until(function() return sleeping end, 5, "the handler did not start")
      copas.removeall()
      client:settimeout(5)
      local data, err = client:receive("*l")
      assert.same({ nil, "closed" }, { data, err })
      assert.is_true(copas.finished())
      client:close()
    end)
  end)

  describe("the worker pool", function()
    local core = require "copas.core"

    it("reports its number of threads", function()
      local pool = require("copas.worker").new({ threads = 3 })
      assert.equal(3, pool:size())
      pool:shutdown()
    end)

    it("cancel() drops the result of a job that finished but was not taken", function()
      local pool = core.pool_new(1)
      local id = pool:run(function() return "first" end)
      assert.is_true(wait_finished(pool, 5), "the job did not finish within 5 s")
      assert.is_true(pool:cancel(id))
      assert.equal(0, pack(pool:take()).n)
      assert.is_false(pool:cancel(id))
      local id2 = pool:run(function() return "second" end)
      assert.is_true(wait_finished(pool, 5), "the job did not finish within 5 s")
      local res = pack(pool:take())
      assert.same({ n = 3, id2, true, "second" }, res)
      pool:shutdown()
    end)

    it("cancel() unlinks a job queued behind others", function()
      local pool = new_pool()
      local gate = new_gate()
      local a = pool:run(blocking_job, gate.port)
      gate.accept()                      -- a runs (and blocks): the rest queue
      local b = pool:run(function() return "b" end)
      local c = pool:run(function() return "c" end)
      local d = pool:run(function() return "d" end)
      assert.is_true(pool:cancel(c))
      gate.release()
      local got = take_until(pool, d)
      assert.same({ { n = 3, a, true, "go" }, { n = 3, b, true, "b" }, { n = 3, d, true, "d" } }, got)
      gate.close()
      pool:shutdown()
    end)

    it("close() forgets finished, running and queued jobs and stays usable", function()
      local pool = new_pool()
      local gate = new_gate()
      pool:run(function() return "finished" end)
      assert.is_true(wait_finished(pool, 5), "the job did not finish within 5 s")
      pool:run(blocking_job, gate.port)
      gate.accept()                      -- running now
      pool:run(function() return "queued" end)
      assert.is_true(pool:close())
      gate.release()
      local id = pool:run(function() return "after" end)
      -- one thread runs the jobs in order: whatever close() left would be
      -- taken before "after"
      assert.same({ { n = 3, id, true, "after" } }, take_until(pool, id))
      gate.close()
      pool:shutdown()
    end)

    it("refuses options of the wrong type", function()
      local ok, err = pcall(core.pool_new, 1, { path = 1 })
      assert.is_false(ok)
      assert.matches("bad option 'path' (string expected, got number)", err, 1, true)
      ok, err = pcall(core.pool_new, 1, { cpath = true })
      assert.is_false(ok)
      assert.matches("bad option 'cpath' (string expected, got boolean)", err, 1, true)
      ok, err = pcall(core.pool_new, 1, { init = {} })
      assert.is_false(ok)
      assert.matches("bad option 'init' (string or function expected, got table)", err, 1, true)
    end)

    it("runs jobs with no options at all", function()
      local pool = core.pool_new(1, {})
      local id = pool:run(function(x) return x * 2 end, 21)
      assert.same({ { n = 3, id, true, 42 } }, take_until(pool, id))
      pool:shutdown()
    end)
  end)

  -- 80 connections: past the first allocation (64 slots) of every table
  -- the pollers keep, then each server side closed in an order unrelated
  -- to the order of the descriptors
  local MANY = [[
    local copas = require "copas"
    local socket = require "socket"
    local N = 80
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local held, handler_closed, client_closed = {}, 0, 0
    copas.addserver(server, copas.handler(function(c)
      c:receive("*l")
      held[#held + 1] = c
      local data, err = c:receive("*l")
      if data == nil and err == "closed" then handler_closed = handler_closed + 1 end
    end))
    for _ = 1, N do
      copas.addthread(function()
        local c = copas.wrap(socket.tcp())
        assert(c:connect("127.0.0.1", port))
        c:send("hello\n")
        local data, err = c:receive("*l")
        if data == nil and err == "closed" then client_closed = client_closed + 1 end
        c:close()
      end)
    end
    copas.addthread(function()
      local deadline = socket.gettime() + 20
      while #held < N and socket.gettime() < deadline do copas.pause(0.01) end
      for k = 1, #held do
        local i = (k * 37) % #held + 1           -- 37 and 80 are coprime
        held[i]:close()
        if k % 10 == 0 then copas.pause(0) end
      end
      local t = socket.gettime() + 20
      while (client_closed < N or handler_closed < N) and socket.gettime() < t do
        copas.pause(0.01)
      end
      copas.removeserver(server)
    end)
    copas.loop()
    print(("held %d, clients closed %d, handlers closed %d")
      :format(#held, client_closed, handler_closed))
  ]]

  -- a thread waits on a socket whose descriptor is then closed directly,
  -- not through copas: the poller reports the descriptor, the waiter
  -- retries and meets "closed"
  local CLOSED_BEHIND = [[
    local copas = require "copas"
    local socket = require "socket"
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local client = assert(socket.connect("127.0.0.1", port))
    local peer = assert(server:accept())
    local result
    copas.addthread(function()
      local data, err = copas.wrap(peer):receive("*l")
      result = tostring(data) .. ", " .. tostring(err)
    end)
    copas.addthread(function()
      copas.pause(0)
      peer:close()
    end)
    local deadline = socket.gettime() + 10
    while result == nil and socket.gettime() < deadline do copas.step(0.05) end
    print("receive: " .. tostring(result))
    client:close()
    server:close()
  ]]

  for _, backend in ipairs(BACKENDS) do
    describe("with COPAS_BACKEND=" .. backend, function()
      it("serves 80 connections and drops them out of order", function()
        local out = run_lua(MANY, "COPAS_BACKEND=" .. backend)
        assert.equal("held 80, clients closed 80, handlers closed 80\n", out)
      end)
    end)
  end

  for _, backend in ipairs({ "poll", "select" }) do
    describe("with COPAS_BACKEND=" .. backend, function()
      it("wakes a waiter whose descriptor was closed behind the loop's back", function()
        local out = run_lua(CLOSED_BEHIND, "COPAS_BACKEND=" .. backend)
        assert.equal("receive: nil, closed\n", out)
      end)
    end)
  end
end)
