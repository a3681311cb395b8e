-- copas.worker: Lua functions on pool threads (issue #6).
-- luacheck: globals COUNT CACHE JOBS INITS GREETING (globals of the worker states)

local copas = require "copas"
local worker = require "copas.worker"
local socket = require "socket"
local helpers = require "spec.helpers"

local unpack = table.unpack or unpack  -- luacheck: ignore 143 (unpack is 5.1's)

-- runs fn in a copas thread, returns what it returned (packed)
local function in_copas(fn, timeout)
  local res
  helpers.run(function()
    res = { n = 0 }
    local function keep(...) res = { n = select("#", ...), ... } end
    keep(fn())
  end, timeout)
  return res
end

-- a plain (non-copas) server: a job connecting to it blocks in receive
-- until `release()` sends each accepted client a line
local function gate()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local clients = {}
  server:settimeout(5)
  return {
    port = tonumber(port),
    -- waits (at most 5 s) until the next job has connected
    accept = function()
      local c = assert(server:accept(), "no job connected within 5 s")
      clients[#clients + 1] = c
    end,
    release = function()
      for _, c in ipairs(clients) do c:send("go\n") c:close() end
      clients = {}
    end,
    close = function() server:close() end,
  }
end

local function blocking_job(port)
  local s = assert(require("socket").connect("127.0.0.1", port))
  local line = s:receive("*l")
  s:close()
  return line
end

describe("copas.worker", function()

  describe("run()", function()
    it("returns the job's results, copied, with every supported type", function()
      local res = in_copas(function()
        return worker.run(function(...)
          return nil, true, false, 42, 1.5, "a\0b", { 1, "two", { deep = { er = true } },
            [2.5] = "float key", [true] = "bool key" }, ...
        end, "arg", { n = 7 }, nil)
      end)
      assert.equal(10, res.n)
      assert.same({ nil, true, false, 42, 1.5, "a\0b",
        { 1, "two", { deep = { er = true } }, [2.5] = "float key", [true] = "bool key" },
        "arg", { n = 7 }, nil }, { unpack(res, 1, res.n) })
      if math.type then
        assert.equal("integer", math.type(res[4]))
        assert.equal("float", math.type(res[5]))
      end
    end)

    it("runs 10000 jobs across the pool, every result checked", function()
      local pool = worker.new { threads = 4 }
      local bad, done = {}, 0
      helpers.run(function()
        for t = 1, 100 do
          copas.addthread(function()
            for j = 1, 100 do
              local i = (t - 1) * 100 + j
              local sq, s, tab = pool:run(function(n)
                return n * n, ("x"):rep(n % 7), { n = n, half = n / 2 }
              end, i)
              if sq ~= i * i or s ~= ("x"):rep(i % 7) or tab.n ~= i or tab.half ~= i / 2 then
                bad[#bad + 1] = i
              end
              done = done + 1
            end
          end)
        end
      end, 60)
      assert.equal(10000, done)
      assert.same({}, bad)
      assert.equal(0, pool:pending())
      pool:shutdown()
    end)

    it("returns nil and the error with the worker's traceback", function()
      local res = in_copas(function()
        return worker.run(function() error("boom") end)
      end)
      assert.is_nil(res[1])
      assert.matches("boom", res[2])
      assert.matches("stack traceback:", res[2])
    end)

    it("reports a non-string error object", function()
      local res = in_copas(function()
        return worker.run(function() error({}) end)
      end)
      assert.is_nil(res[1])
      assert.matches("^%(error object is a table value%)", res[2])
    end)

    it("returns nil, message for results that cannot be copied", function()
      local res = in_copas(function()
        local a, b = worker.run(function() return 1, print end)
        local c, d = worker.run(function() return io.stdout end)
        local e, f = worker.run(function() return coroutine.create(function() end) end)
        local g, h = worker.run(function() local t = {} t[1] = t return t end)
        return a, b, c, d, e, f, g, h
      end)
      assert.same({ nil, "cannot copy result #2 (a function)",
                    nil, "cannot copy result #1 (a userdata)",
                    nil, "cannot copy result #1 (a thread (coroutine))",
                    nil, "cannot copy result #1 (a cyclic table)" },
                  { unpack(res, 1, 8) })
    end)

    it("keeps the loop running while a job works", function()
      local g = gate()
      local ticks, result = 0, nil
      helpers.run(function()
        copas.addthread(function()
          g.accept()
          while result == nil do
            ticks = ticks + 1
            if ticks == 5 then g.release() end
            copas.pause(0.001)
          end
        end)
        result = worker.run(blocking_job, g.port)
      end, 10)
      g.close()
      assert.equal("go", result)
      assert.is_true(ticks >= 5)
    end)
  end)

  describe("bad input", function()
    local function err_of(fn)
      local msg
      helpers.run(function()
        local ok, e = pcall(fn)
        assert(not ok, "no error raised")
        msg = e
      end)
      return msg
    end

    it("refuses a non-function job", function()
      assert.equal("bad argument #1 to 'run' (function expected, got number)",
        err_of(function() worker.run(42) end):gsub("^[^:]*:%d+: ", ""))
    end)

    it("refuses a function with upvalues", function()
      local up = 1
      local msg = err_of(function() worker.run(function() return up end) end)
      assert.matches("worker_spec.lua:%d+: bad argument #1 to 'run' %(function has upvalue 'up'; "
        .. "a worker function may only use globals and its arguments%)$", msg)
    end)

    it("refuses a C function", function()
      assert.matches("bad argument #1 to 'run' %(a C function cannot run in a worker%)$",
        err_of(function() worker.run(print) end))
    end)

    it("refuses arguments that cannot be copied, naming them", function()
      local t = {}
      t.self = t
      local deep = {}
      local cur = deep
      for _ = 1, 150 do cur.next = {} cur = cur.next end
      local f = function(...) return ... end
      assert.matches("bad argument #2 to 'run' %(cannot copy a function%)$",
        err_of(function() worker.run(f, print) end))
      assert.matches("bad argument #3 to 'run' %(cannot copy a userdata%)$",
        err_of(function() worker.run(f, 1, io.stdout) end))
      assert.matches("bad argument #2 to 'run' %(cannot copy a thread %(coroutine%)%)$",
        err_of(function() worker.run(f, coroutine.create(f)) end))
      assert.matches("bad argument #2 to 'run' %(cannot copy a cyclic table%)$",
        err_of(function() worker.run(f, t) end))
      assert.matches("bad argument #2 to 'run' %(cannot copy a table nested more than 100 levels deep%)$",
        err_of(function() worker.run(f, deep) end))
      assert.matches("bad argument #3 to 'call' %(cannot copy a function%)$",
        err_of(function() worker.call(1, f, print) end))
    end)

    it("refuses a pool size of 0, a string or a fraction", function()
      for _, n in ipairs { 0, "4", 1.5, 2000 } do
        local ok, msg = pcall(worker.new, { threads = n })
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'new' %(threads must be an integer from 1 to 1024, got "
          .. (type(n) == "number" and tostring(n):gsub("%.", "%%.") or "string") .. "%)$", msg)
      end
      local ok, msg = pcall(worker.new, "many")
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'new' %(table expected, got string%)$", msg)
    end)

    it("refuses an init function with upvalues", function()
      local up = 1
      local ok, msg = pcall(function()
        local p = worker.new { threads = 1, init = function() return up end }
        return p
      end)
      assert.is_false(ok)
      assert.matches("worker_spec.lua:%d+: bad option 'init' %(function has upvalue 'up'; "
        .. "a worker function may only use globals and its arguments%)$", msg)
    end)

    it("refuses a bad timeout", function()
      assert.matches("bad argument #1 to 'call' %(positive number of seconds expected, got 0%)$",
        err_of(function() worker.call(0, function() end) end))
      assert.matches("bad argument #1 to 'call' %(positive number of seconds expected, got string%)$",
        err_of(function() worker.call("1", function() end) end))
    end)

    it("must be called from a copas thread", function()
      local ok, msg = pcall(worker.run, function() end)
      assert.is_false(ok)
      assert.matches("copas.worker: 'run' must be called from inside a copas thread$", msg)
    end)
  end)

  describe("call() with a timeout", function()
    it("returns nil, 'timeout' while the job finishes in the background", function()
      local pool = worker.new { threads = 1 }
      local g = gate()
      local a, b, t_out, after
      helpers.run(function()
        local t0 = copas.gettime()
        a, b = pool:call(0.1, blocking_job, g.port)
        t_out = copas.gettime() - t0
        g.accept()
        g.release()
        -- the pool's only thread is free again once the old job ends
        after = { pool:run(function() return "next" end) }
      end, 10)
      g.close()
      assert.same({ nil, "timeout" }, { a, b })
      assert.is_true(t_out >= 0.1 and t_out < 2, "timed out after " .. t_out)
      assert.same({ "next" }, after)
      assert.equal(0, pool:pending())
      pool:shutdown()
    end)

    it("never starts a job that timed out while queued", function()
      local pool = worker.new { threads = 1 }
      local g = gate()
      local first, second, count
      helpers.run(function()
        copas.addthread(function() first = pool:run(blocking_job, g.port) end)
        copas.pause(0)
        g.accept()
        second = { pool:call(0.05, function() COUNT = (COUNT or 0) + 1 end) }
        g.release()
        count = pool:run(function() return COUNT or 0 end)
      end, 10)
      g.close()
      assert.equal("go", first)
      assert.same({ nil, "timeout" }, second)
      assert.equal(0, count)
      pool:shutdown()
    end)
  end)

  describe("worker states", function()
    it("persist between jobs", function()
      local pool = worker.new { threads = 1 }
      local res = in_copas(function()
        pool:run(function() CACHE = { hits = 0 } end)
        for _ = 1, 5 do pool:run(function() CACHE.hits = CACHE.hits + 1 end) end
        return pool:run(function() return CACHE.hits end)
      end)
      assert.equal(5, res[1])
      pool:shutdown()
    end)

    it("run the init chunk once per worker", function()
      local pool = worker.new { threads = 2, init = "INITS = (INITS or 0) + 1; JOBS = 0" }
      local seen = {}
      helpers.run(function()
        for _ = 1, 40 do
          copas.addthread(function()
            local id, inits = pool:run(function()
              JOBS = JOBS + 1
              return tostring(_G), INITS
            end)
            seen[id] = inits
          end)
        end
      end)
      local n = 0
      for _, inits in pairs(seen) do
        n = n + 1
        assert.equal(1, inits)
      end
      assert.is_true(n >= 1 and n <= 2)
      pool:shutdown()
    end)

    it("accept a function as init chunk and report its failure", function()
      local good = worker.new { threads = 1, init = function() GREETING = "hi" end }
      local bad = worker.new { threads = 1, init = "error('no db')" }
      local res = in_copas(function()
        local g = good:run(function() return GREETING end)
        local a, b = bad:run(function() return 1 end)
        return g, a, b
      end)
      assert.equal("hi", res[1])
      assert.is_nil(res[2])
      assert.matches("^worker init failed: init:1: no db", res[3])
      good:shutdown()
      bad:shutdown()
    end)

    it("find modules on the parent's package.path", function()
      local res = in_copas(function()
        return worker.run(function() return require("spec.helpers") ~= nil, package.path end)
      end)
      assert.is_true(res[1])
      assert.equal(package.path, res[2])
    end)
  end)

  describe("the scheduler", function()
    it("counts an awaited job as work and an idle pool as none", function()
      local pool = worker.new { threads = 1 }
      local g = gate()
      local result
      assert.is_true(copas.finished())
      copas.addthread(function() result = pool:run(blocking_job, g.port) end)
      copas.step(0)
      g.accept()
      copas.step(0)
      -- only the caller (pauseforever: no work) and the awaited job remain
      assert.is_false(copas.finished())
      g.release()
      helpers.step_until(function() return result ~= nil end, 5, "job did not end")
      g.close()
      assert.equal("go", result)
      assert.is_true(copas.finished())
      local read, write = copas.status().read, copas.status().write
      assert.same({ 0, 0 }, { read, write })
      pool:shutdown()
    end)

    it("forgets awaited jobs on removeall and serves the next job", function()
      local pool = worker.new { threads = 1 }
      local g = gate()
      local resumed, after = false, nil
      copas.addthread(function()
        pool:run(blocking_job, g.port)
        resumed = true
      end)
      copas.step(0)
      g.accept()
      copas.removeall()
      assert.is_true(copas.finished())
      g.release()
      g.close()
      helpers.run(function()
        after = pool:run(function() return "fresh" end)
      end)
      assert.is_false(resumed)
      assert.equal("fresh", after)
      pool:shutdown()
    end)
  end)

  describe("shutdown()", function()
    it("drops queued jobs, lets running ones end and wakes the callers", function()
      local pool = worker.new { threads = 2 }
      local g = gate()
      local results, took = {}, nil
      helpers.run(function()
        for i = 1, 2 do
          copas.addthread(function()
            results[i] = { pool:run(function(port)
              local s = assert(require("socket").connect("127.0.0.1", port))
              s:settimeout(0.2)   -- nobody releases it: it ends by itself
              local _, err = s:receive("*l")
              s:close()
              return err
            end, g.port) }
          end)
        end
        for i = 3, 7 do
          copas.addthread(function() results[i] = { pool:run(function() return "ran" end) } end)
        end
        copas.pause(0)
        g.accept()
        g.accept()          -- both threads are busy: jobs 3 to 7 are queued
        local t0 = copas.gettime()
        pool:shutdown()
        took = copas.gettime() - t0
      end)
      g.close()
      for i = 1, 7 do assert.same({ nil, "shut down" }, results[i]) end
      assert.is_true(took < 2, "shutdown took " .. took .. " s")
      assert.has_error(function() pool:size() end, "copas worker pool is shut down")
    end)

    -- /bin/sh (dash) crashes with the ThreadSanitizer runtime preloaded,
    -- so `make tsan` cannot start the child process
    local tsan = (os.getenv("LD_PRELOAD") or ""):find("tsan") ~= nil
    local it_child = tsan and pending or it
    it_child("ends a process with jobs in flight without hanging", function()
      -- the interpreter running this spec: COPAS_LUA when set (a tool such
      -- as valgrind runs it), else from /proc (Linux), else "lua"
      local lua = os.getenv("COPAS_LUA")
      if not lua or lua == "" then
        local p = io.popen("readlink /proc/$PPID/exe 2>/dev/null")
        lua = p and p:read("*l") or "lua"
        if p then p:close() end
      end
      local script = [[
        local copas = require "copas"
        local worker = require "copas.worker"
        local pool = worker.new { threads = 2 }
        for i = 1, 50 do
          copas.addthread(function()
            pool:run(function() local x = 0 for k = 1, 1e6 do x = x + k end return x end)
          end)
        end
        copas.step(0) copas.step(0)
        io.write("started\n")
        os.exit(0, true)
      ]]
      local f = assert(io.popen(("%s -e %q 2>&1"):format(lua, script)))
      local out = f:read("*a")
      local ok = f:close()
      assert.equal("started\n", out)
      assert.truthy(ok)
    end)
  end)
end)
