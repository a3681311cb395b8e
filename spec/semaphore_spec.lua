-- copas.semaphore (API.md section 13)
local helpers = require "spec.helpers"

local copas, semaphore

-- tolerance between the wall clock (gettime) and the core's monotonic clock
local CLOCK_SLACK = 1e-3

local function pack(...)
  return { n = select("#", ...), ... }
end


describe("copas.semaphore", function()

  before_each(function()
    copas = helpers.reload()
    semaphore = require "copas.semaphore"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("new()", function()

    it("raises for max below 1 or not a number", function()
      for _, v in ipairs { 0, -1, "5" } do
        local ok, err = pcall(semaphore.new, v)
        assert.is_false(ok)
        assert.matches("expected max resources (1st argument) to be a number greater than 0, got: "
          .. tostring(v), err, 1, true)
      end
      local ok, err = pcall(semaphore.new)
      assert.is_false(ok)
      assert.matches("expected max resources (1st argument) to be a number greater than 0, got: nil",
        err, 1, true)
    end)

    it("raises for a negative timeout", function()
      local ok = pcall(semaphore.new, 1, 0, -1)
      assert.is_false(ok)
    end)

    it("starts with `start` resources, default 0", function()
      assert.equal(0, semaphore.new(5):get_count())
      assert.equal(3, semaphore.new(5, 3):get_count())
    end)

    it("uses its timeout as the default wait of take()", function()
      local s = semaphore.new(1, 0, 0.05)
      local res
      copas.addthread(function() res = pack(s:take()) end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "timeout" }, res)
    end)

    it("is the module copas.semaphore loads lazily", function()
      assert.equal(semaphore, copas.semaphore)
    end)
  end)


  describe("take()", function()

    it("succeeds at once while resources are available", function()
      local s = semaphore.new(5, 3)
      assert.is_true(s:take())
      assert.is_true(s:take(2))
      assert.equal(0, s:get_count())
    end)

    it("returns nil, 'too many' for more than max", function()
      local s = semaphore.new(2, 0)
      assert.same({ n = 2, nil, "too many" }, pack(s:take(3)))
    end)

    it("returns nil, 'timeout' at once for timeout 0", function()
      local s = semaphore.new(2, 1)
      assert.same({ n = 2, nil, "timeout" }, pack(s:take(2, 0)))
      assert.equal(1, s:get_count())
    end)

    it("returns nil, 'timeout' when the timeout passes", function()
      local s = semaphore.new(2, 0)
      local res, waited
      copas.addthread(function()
        local start = copas.gettime()
        res = pack(s:take(1, 0.05))
        waited = copas.gettime() - start
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "timeout" }, res)
      assert.is_true(waited >= 0.05 - CLOCK_SLACK, "timed out early")
    end)

    it("serves waiters in FIFO order; a large request at the head blocks smaller ones", function()
      local s = semaphore.new(5, 0)
      local log = {}
      local function taker(name, n)
        copas.addthread(function()
          assert.is_true(s:take(n, math.huge))
          log[#log + 1] = name
        end)
      end
      taker("A3", 3)
      taker("B1", 1)
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "give 1"
        s:give(1)              -- fits B1 but not A3: nobody goes
        copas.pause(0.01)
        log[#log + 1] = "give 2"
        s:give(2)              -- A3 goes
        copas.pause(0.01)
        log[#log + 1] = "give 1"
        s:give(1)              -- B1 goes
      end)
      helpers.run(nil, 5)
      assert.same({ "give 1", "give 2", "A3", "give 1", "B1" }, log)
      assert.equal(0, s:get_count())
    end)

    it("makes later callers queue behind waiters even when resources are available", function()
      local s = semaphore.new(5, 1)
      local log = {}
      copas.addthread(function()
        s:take(3, math.huge)
        log[#log + 1] = "A3"
      end)
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "B1 " .. tostring(pack(s:take(1, 0))[2])
        s:give(2)
      end)
      helpers.run(nil, 5)
      assert.same({ "B1 timeout", "A3" }, log)
    end)

    it("lets no timed-out waiter leave a hole: a fitting take succeeds at once", function()
      local s = semaphore.new(5, 0)
      local res
      copas.addthread(function()
        assert.same({ n = 2, nil, "timeout" }, pack(s:take(2, 0.02)))
        s:give(1)
        res = pack(s:take(1, 0))
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, true }, res)
    end)

    it("releases smaller waiters behind a head that timed out", function()
      local s = semaphore.new(5, 2)
      local log = {}
      copas.addthread(function()
        local err = pack(s:take(3, 0.05))[2]
        log[#log + 1] = "A3 " .. err
      end)
      copas.addthread(function()
        copas.pause(0.01)
        local ok = s:take(1, 1)
        log[#log + 1] = "B1 " .. tostring(ok)
      end)
      helpers.run(nil, 5)
      assert.same({ "A3 timeout", "B1 true" }, log)
      assert.equal(1, s:get_count())
    end)

    it("lets no removed waiter leave a hole; it never resumes", function()
      local s = semaphore.new(5, 0)
      local resumed, res = false, nil
      local a = copas.addthread(function() s:take(2, 1) resumed = true end)
      copas.addthread(function()
        copas.pause(0.01)
        copas.removethread(a)
        s:give(1)
        res = pack(s:take(1, 0))
        copas.pause(0.05)
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, true }, res)
      assert.is_false(resumed)
    end)

    it("treats a stray copas.wakeup as spurious and keeps waiting", function()
      local s = semaphore.new(1, 0)
      local log = {}
      local waiter = copas.addthread(function()
        local ok = s:take(1, 1)
        log[#log + 1] = "took " .. tostring(ok)
      end)
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "wakeup"
        assert.is_true(copas.wakeup(waiter))
        copas.pause(0.05)
        log[#log + 1] = "give"
        s:give()
      end)
      helpers.run(nil, 5)
      assert.same({ "wakeup", "give", "took true" }, log)
    end)

    it("arms a timeout only for a finite wait", function()
      local s = semaphore.new(1, 0)
      local counts = {}
      copas.addthread(function() s:take(1, math.huge) end)
      copas.addthread(function()
        copas.pause(0.01)
        counts[1] = copas.gettimeouts()
        copas.addthread(function() s:take(1, 5) end)
        copas.pause(0.01)
        counts[2] = copas.gettimeouts()
        s:give(1)
        s:give(1)
        copas.pause(0.01)
        counts[3] = copas.gettimeouts()
      end)
      helpers.run(nil, 5)
      assert.same({ 0, 1, 0 }, counts)
    end)
  end)


  describe("give()", function()

    it("returns true and adds resources", function()
      local s = semaphore.new(5, 0)
      assert.is_true(s:give())
      assert.is_true(s:give(2))
      assert.equal(3, s:get_count())
    end)

    it("caps the count at max and reports 'too many'", function()
      local s = semaphore.new(3, 2)
      assert.same({ n = 2, nil, "too many" }, pack(s:give(5)))
      assert.equal(3, s:get_count())
    end)

    it("still releases waiters when it reports 'too many'", function()
      local s = semaphore.new(3, 0)
      local res, gave
      copas.addthread(function() res = pack(s:take(3, 1)) end)
      copas.addthread(function()
        copas.pause(0.01)
        gave = pack(s:give(5))
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "too many" }, gave)
      assert.same({ n = 1, true }, res)
      assert.equal(0, s:get_count())
    end)

    it("raises for a negative amount", function()
      local s = semaphore.new(3, 0)
      local ok, err = pcall(s.give, s, -1)
      assert.is_false(ok)
      assert.matches("expected given resources (1st argument) to be a finite number greater than or equal to 0",
        err, 1, true)
    end)
  end)


  describe("get_wait()", function()

    it("is negative when nobody waits and resources are available", function()
      assert.equal(-2, semaphore.new(5, 2):get_wait())
      assert.equal(0, semaphore.new(5, 0):get_wait())
    end)

    it("is the sum of queued requests minus the count", function()
      local s = semaphore.new(5, 1)
      local w
      copas.addthread(function() s:take(3, 1) end)
      copas.addthread(function() s:take(2, 1) end)
      copas.addthread(function()
        copas.pause(0.01)
        w = s:get_wait()
        s:give(4)
      end)
      helpers.run(nil, 5)
      assert.equal(4, w)
    end)
  end)


  describe("destroy()", function()

    it("releases every waiter with nil, 'destroyed' and cancels their timeouts", function()
      local s = semaphore.new(5, 0)
      local res = {}
      local timeouts
      for i = 1, 3 do
        copas.addthread(function() res[i] = pack(s:take(i, i == 3 and math.huge or 5)) end)
      end
      copas.addthread(function()
        copas.pause(0.01)
        assert.is_true(s:destroy())
        copas.pause(0)
        timeouts = copas.gettimeouts()
      end)
      helpers.run(nil, 5)
      for i = 1, 3 do
        assert.same({ n = 2, nil, "destroyed" }, res[i])
      end
      assert.equal(0, timeouts)
    end)

    it("makes every method return nil, 'destroyed' afterwards", function()
      local s = semaphore.new(5, 1)
      assert.is_true(s:destroy())
      for _, m in ipairs { "take", "give", "get_count", "get_wait", "destroy" } do
        assert.same({ n = 2, nil, "destroyed" }, pack(s[m](s)))
      end
    end)
  end)


  describe("with copas.removeall()", function()

    it("never resumes dropped waiters nor fires their timeouts", function()
      local s = semaphore.new(5, 0)
      local resumed = false
      copas.addthread(function() s:take(1, 0.05) resumed = true end)
      copas.addthread(function() s:take(1, math.huge) resumed = true end)
      copas.step(0)
      copas.removeall()
      assert.equal(0, copas.gettimeouts())
      assert.is_true(copas.finished())
      s:give(2)
      local start = copas.gettime()
      helpers.step_until(function() return copas.gettime() - start > 0.1 end, 2)
      assert.is_false(resumed)
      assert.is_true(s:take(2, 0))
    end)
  end)

  describe("references", function()

    it("keeps no strong reference to a waiter that copas dropped", function()
      local s = semaphore.new(1, 0)
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = copas.addthread(function() s:take(1, 5) end)
      copas.step(0)
      copas.removeall()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_true(s:give())
    end)
  end)
end)
