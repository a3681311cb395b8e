-- copas.lock (API.md section 12)
local helpers = require "spec.helpers"

local copas, lock

-- tolerance between the wall clock (gettime) and the core's monotonic clock
local CLOCK_SLACK = 1e-3

local function pack(...)
  return { n = select("#", ...), ... }
end


describe("copas.lock", function()

  before_each(function()
    copas = helpers.reload()
    lock = require "copas.lock"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("new()", function()

    it("raises for a negative or non-numeric timeout", function()
      for _, v in ipairs { -1, "10", true } do
        local ok, err = pcall(lock.new, v)
        assert.is_false(ok)
        assert.matches("expected timeout (1st argument) to be a number greater than or equal to 0, got: "
          .. tostring(v), err, 1, true)
      end
    end)

    it("is the module copas.lock loads lazily", function()
      assert.equal(lock, copas.lock)
    end)

    it("uses its timeout as the default wait of get()", function()
      local l = lock.new(0.05)
      local res
      copas.addthread(function() l:get() copas.pauseforever() end)
      copas.addthread(function() res = pack(l:get()) end)
      helpers.run(nil, 5)
      assert.equal("timeout", res[2])
      assert.is_true(res[3] >= 0.05 - CLOCK_SLACK)
    end)
  end)


  describe("get()", function()

    it("returns 0 for a free lock and takes it", function()
      local l = lock.new()
      local res, other
      copas.addthread(function()
        res = pack(l:get())
        copas.addthread(function() other = pack(l:get(0)) end)
        copas.pause(0.01)
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, 0 }, res)
      assert.same({ n = 3, nil, "timeout", 0 }, other)
    end)

    it("nests for the owner of a re-entrant lock; each get needs a release", function()
      local l = lock.new()
      local log = {}
      copas.addthread(function()
        log[#log + 1] = l:get()
        log[#log + 1] = l:get()
        assert.is_true(l:release())
        copas.addthread(function()
          log[#log + 1] = pack(l:get(0))[2]       -- still held once
          copas.pause(0.02)
          log[#log + 1] = pack(l:get(0))[1]       -- free now
        end)
        copas.pause(0.01)
        assert.is_true(l:release())
      end)
      helpers.run(nil, 5)
      assert.same({ 0, 0, "timeout", 0 }, log)
    end)

    it("returns nil, 'lock is not re-entrant', 0 to the owner of a non-re-entrant lock", function()
      -- Copas 4.11 behaviour, required by its tests/lock.lua
      local l = lock.new(10, true)
      local res
      copas.addthread(function()
        assert.equal(0, l:get())
        res = pack(l:get())
        assert.is_true(l:release())
        assert.same({ nil, "cannot release a lock not owned" }, { l:release() })
      end)
      helpers.run(nil, 5)
      assert.same({ n = 3, nil, "lock is not re-entrant", 0 }, res)
    end)

    it("hands the lock over in FIFO order, returning the time waited", function()
      local l = lock.new()
      local order, waits = {}, {}
      copas.addthread(function()
        l:get()
        for _, name in ipairs { "A", "B", "C" } do
          copas.addthread(function()
            local w = l:get(math.huge)
            order[#order + 1] = name
            waits[name] = w
            copas.pause(0.01)
            l:release()
          end)
        end
        copas.pause(0.05)
        l:release()
      end)
      helpers.run(nil, 5)
      assert.same({ "A", "B", "C" }, order)
      assert.is_true(waits.A >= 0.05 - CLOCK_SLACK)
      assert.is_true(waits.C > waits.A)
    end)

    it("with timeout 0 fails at once with nil, 'timeout', 0 and does not queue (upstream #201)", function()
      local l = lock.new()
      local res, later, slept
      copas.addthread(function()
        l:get()
        copas.addthread(function()
          res = pack(l:get(0))
          slept = copas.pause(0.05)                   -- sleeping, not waiting for the lock
        end)
        copas.pause(0.01)
        l:release()                                   -- nobody may be handed the lock
        copas.addthread(function() later = pack(l:get(0)) end)
      end)
      helpers.run(nil, 5)
      assert.same({ n = 3, nil, "timeout", 0 }, res)
      assert.same({ n = 1, 0 }, later)
      assert.is_true(slept >= 0.05 - CLOCK_SLACK, "the failed get() was handed the lock")
    end)

    it("returns nil, 'timeout', waited when the timeout passes", function()
      local l = lock.new()
      local res
      copas.addthread(function() l:get() copas.pause(0.3) l:release() end)
      copas.addthread(function() res = pack(l:get(0.05)) end)
      helpers.run(nil, 5)
      assert.equal(3, res.n)
      assert.is_nil(res[1])
      assert.equal("timeout", res[2])
      assert.is_true(res[3] >= 0.05 - CLOCK_SLACK and res[3] < 0.3, "waited " .. res[3])
    end)

    it("keeps the loop alive while waiting with a finite timeout", function()
      local l = lock.new()
      local res
      copas.addthread(function() l:get() copas.pauseforever() end)
      copas.addthread(function() res = pack(l:get(0.05)) end)
      helpers.run(nil, 5)   -- ends only after the waiter timed out
      assert.equal("timeout", res[2])
    end)

    it("arms no timeout for math.huge: the loop may end and abandon the waiter", function()
      local l = lock.new()
      local res, timeouts
      copas.addthread(function() l:get() copas.pauseforever() end)
      copas.addthread(function() res = pack(l:get(math.huge)) end)
      copas.addthread(function() copas.pause(0.01) timeouts = copas.gettimeouts() end)
      helpers.run(nil, 5)
      assert.equal(0, timeouts)
      assert.is_nil(res)
    end)

    it("treats a stray copas.wakeup as spurious and keeps waiting", function()
      local l = lock.new()
      local log = {}
      local waiter
      copas.addthread(function()
        l:get()
        waiter = copas.addthread(function()
          local w = l:get(1)
          log[#log + 1] = "got " .. type(w)
        end)
        copas.pause(0.01)
        log[#log + 1] = "wakeup"
        assert.is_true(copas.wakeup(waiter))
        copas.pause(0.05)
        log[#log + 1] = "release"
        l:release()
      end)
      helpers.run(nil, 5)
      assert.same({ "wakeup", "release", "got number" }, log)
    end)

    it("raises Lua's yield error from the main chunk when it would have to wait", function()
      local l = lock.new()
      copas.addthread(function() l:get() end)
      copas.step(0)
      assert.same({ n = 3, nil, "timeout", 0 }, pack(l:get(0)))
      local ok, err = pcall(l.get, l, 1)
      assert.is_false(ok)
      assert.matches("attempt to yield", tostring(err), 1, true)
    end)

    it("raises for a negative timeout", function()
      local l = lock.new()
      local ok, err = pcall(l.get, l, -1)
      assert.is_false(ok)
      assert.matches("expected timeout (1st argument) to be a number greater than or equal to 0", err, 1, true)
    end)
  end)


  describe("release()", function()

    it("returns nil, 'cannot release a lock not owned' for a free lock or another owner", function()
      local l = lock.new()
      local res = {}
      copas.addthread(function()
        res[1] = pack(l:release())
        l:get()
        copas.addthread(function() res[2] = pack(l:release()) end)
        copas.pause(0.01)
        res[3] = pack(l:release())
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "cannot release a lock not owned" }, res[1])
      assert.same({ n = 2, nil, "cannot release a lock not owned" }, res[2])
      assert.same({ n = 1, true }, res[3])
    end)

    it("skips waiters that timed out (upstream #199)", function()
      local l = lock.new()
      local log = {}
      copas.addthread(function()
        l:get()
        copas.addthread(function()
          local err = pack(l:get(0.02))[2]
          log[#log + 1] = "A " .. tostring(err)
        end)
        copas.addthread(function()
          local w = l:get(math.huge)
          log[#log + 1] = "B " .. type(w)
          l:release()
        end)
        copas.pause(0.1)
        log[#log + 1] = "release"
        l:release()
      end)
      helpers.run(nil, 5)
      assert.same({ "A timeout", "release", "B number" }, log)
    end)

    it("skips waiters that were removed; they never resume", function()
      local l = lock.new()
      local log = {}
      copas.addthread(function()
        l:get()
        local a = copas.addthread(function() l:get(1) log[#log + 1] = "A resumed" end)
        copas.addthread(function() l:get(1) log[#log + 1] = "B got it" l:release() end)
        copas.pause(0.01)
        copas.removethread(a)
        l:release()
        copas.pause(0.05)
        log[#log + 1] = "done"
      end)
      helpers.run(nil, 5)
      assert.same({ "B got it", "done" }, log)
    end)
  end)


  describe("destroy()", function()

    it("releases every waiter with nil, 'destroyed', waited", function()
      local l = lock.new()
      local res = {}
      copas.addthread(function()
        l:get()
        for i = 1, 2 do
          copas.addthread(function() res[i] = pack(l:get(i == 1 and 1 or math.huge)) end)
        end
        copas.pause(0.05)
        assert.is_true(l:destroy())
      end)
      helpers.run(nil, 5)
      for i = 1, 2 do
        assert.equal(3, res[i].n)
        assert.is_nil(res[i][1])
        assert.equal("destroyed", res[i][2])
        assert.is_true(res[i][3] >= 0.05 - CLOCK_SLACK)
      end
      assert.equal(0, copas.gettimeouts())
    end)

    it("reaches a waiter that was just handed the lock but has not resumed", function()
      local l = lock.new()
      local res
      copas.addthread(function()
        l:get()
        copas.addthread(function() res = pack(l:get()) end)
        copas.pause(0.01)
        l:release()        -- hands the lock to the waiter...
        l:destroy()        -- ...which has not run yet
      end)
      helpers.run(nil, 5)
      assert.is_nil(res[1])
      assert.equal("destroyed", res[2])
    end)

    it("makes every method return nil, 'destroyed' afterwards", function()
      local l = lock.new()
      assert.is_true(l:destroy())
      assert.same({ n = 2, nil, "destroyed" }, pack(l:get()))
      assert.same({ n = 2, nil, "destroyed" }, pack(l:release()))
      assert.same({ n = 2, nil, "destroyed" }, pack(l:destroy()))
    end)
  end)


  describe("with copas.removeall()", function()

    it("never resumes dropped waiters nor fires their timeouts", function()
      local l = lock.new()
      local resumed = false
      copas.addthread(function() l:get() copas.pauseforever() end)
      copas.addthread(function() l:get(0.05) resumed = true end)
      copas.addthread(function() l:get(math.huge) resumed = true end)
      copas.step(0)
      copas.step(0)
      assert.equal(1, copas.gettimeouts())
      copas.removeall()
      assert.equal(0, copas.gettimeouts())
      assert.is_true(copas.finished())
      local start = copas.gettime()
      helpers.step_until(function() return copas.gettime() - start > 0.1 end, 2)
      assert.is_false(resumed)
    end)
  end)

  describe("references", function()

    it("keeps no strong reference to a waiter that copas dropped", function()
      local l = lock.new()
      copas.addthread(function() l:get() copas.pauseforever() end)
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = copas.addthread(function() l:get(5) end)
      copas.step(0)
      copas.removeall()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_not_nil(l)
    end)
  end)
end)
