-- copas.limit, the Copas 3.x task-set API (API.md section 16)
local helpers = require "spec.helpers"

local copas, limit


describe("copas.limit", function()

  before_each(function()
    copas = helpers.reload()
    limit = require "copas.limit"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("new()", function()

    it("defaults maxt to 99999 with nothing running", function()
      local set = limit.new()
      assert.equal(99999, set.maxt)
      assert.equal(0, set.count)
      assert.equal(3, limit.new(3).maxt)
    end)

    it("raises for anything but a positive integer", function()
      for _, v in ipairs { 0, -1, 1.5, "3", true, math.huge } do
        assert.is_false(pcall(limit.new, v), "accepted " .. tostring(v))
      end
    end)

    it("is the module copas.limit loads lazily", function()
      assert.equal(limit, copas.limit)
    end)
  end)


  describe("addthread()", function()

    it("returns a normal copas thread, counted as running before it ran", function()
      local set = limit.new(2)
      local ran = false
      local co = set:addthread(function() ran = true end)
      assert.equal("thread", type(co))
      assert.equal(1, set.count)
      assert.is_false(ran)
      copas.setthreadname("limited", co)
      assert.equal("limited", copas.getthreadname(co))
      helpers.run(nil, 5)
      assert.is_true(ran)
      assert.equal(0, set.count)
    end)

    it("passes the arguments, nils included", function()
      local set = limit.new()
      local got
      set:addthread(function(...) got = { n = select("#", ...), ... } end, 1, nil, 3, nil)
      helpers.run(nil, 5)
      assert.same({ n = 4, 1, nil, 3, nil }, got)
    end)

    it("never runs more than maxt tasks at once and starts queued ones in FIFO order", function()
      local set = limit.new(2)
      local running, peak, started, finished = 0, 0, {}, 0
      for i = 1, 6 do
        set:addthread(function()
          started[#started + 1] = i
          running = running + 1
          if running > peak then peak = running end
          copas.pause(0.01)
          running = running - 1
          finished = finished + 1
        end)
      end
      assert.equal(2, set.count)
      helpers.run(nil, 5)
      assert.equal(2, peak)
      assert.equal(6, finished)
      assert.same({ 1, 2, 3, 4, 5, 6 }, started)
      assert.equal(0, set.count)
    end)

    it("can be called from inside a task", function()
      local set = limit.new(1)
      local log = {}
      set:addthread(function()
        log[#log + 1] = "outer start"
        set:addthread(function() log[#log + 1] = "inner" end)
        copas.pause(0.01)
        log[#log + 1] = "outer end"
      end)
      helpers.run(nil, 5)
      assert.same({ "outer start", "outer end", "inner" }, log)
    end)

    it("frees the slot of a task that fails; its error handler is called", function()
      local set = limit.new(1)
      local errs, log = {}, {}
      copas.seterrorhandler(function(err) errs[#errs + 1] = err end, true)
      set:addthread(function() copas.pause(0.01) error("task failed", 0) end)
      set:addthread(function() log[#log + 1] = "second ran" end)
      helpers.run(nil, 5)
      assert.same({ "task failed" }, errs)
      assert.same({ "second ran" }, log)
      assert.equal(0, set.count)
    end)

    it("frees the slot of a task removed with copas.removethread", function()
      local set = limit.new(1)
      local log = {}
      local first = set:addthread(function()
        copas.pause(0.05)
        log[#log + 1] = "first resumed"
      end)
      set:addthread(function() log[#log + 1] = "second ran" end)
      copas.addthread(function()
        copas.pause(0.01)
        copas.removethread(first)
      end)
      helpers.run(nil, 5)
      assert.same({ "second ran" }, log)
      assert.equal(0, set.count)
    end)
  end)


  describe("removethread()", function()

    it("drops a queued task, which never runs", function()
      local set = limit.new(1)
      local log = {}
      set:addthread(function() copas.pause(0.01) log[#log + 1] = "A" end)
      local b = set:addthread(function() log[#log + 1] = "B" end)
      set:addthread(function() log[#log + 1] = "C" end)
      set:removethread(b)
      helpers.run(nil, 5)
      assert.same({ "A", "C" }, log)
    end)

    it("stops counting a running task, which keeps running while its slot is refilled", function()
      local set = limit.new(1)
      local log = {}
      local a = set:addthread(function()
        log[#log + 1] = "A start"
        copas.pause(0.05)
        log[#log + 1] = "A end"
      end)
      set:addthread(function() log[#log + 1] = "B" end)
      copas.addthread(function()
        copas.pause(0.01)
        set:removethread(a)
      end)
      helpers.run(nil, 5)
      assert.same({ "A start", "B", "A end" }, log)
      assert.equal(0, set.count)
    end)

    it("ignores a thread that is not in the set", function()
      local set = limit.new(1)
      local other = copas.addthread(function() end)
      set:addthread(function() end)
      set:removethread(other)
      assert.equal(1, set.count)
      helpers.run(nil, 5)
      assert.equal(0, set.count)
    end)
  end)


  describe("wait()", function()

    it("returns at once for an empty set", function()
      local set = limit.new(2)
      local done = false
      copas.addthread(function()
        set:wait()
        done = true
      end)
      copas.step(0)
      assert.is_true(done)
    end)

    it("waits for tasks added just before it, which have not run yet", function()
      local set = limit.new(2)
      local log = {}
      copas.addthread(function()
        for i = 1, 3 do
          set:addthread(function()
            copas.pause(0.01 * i)
            log[#log + 1] = "task " .. i
          end)
        end
        set:wait()
        log[#log + 1] = "waited"
      end)
      helpers.run(nil, 5)
      assert.same({ "task 1", "task 2", "task 3", "waited" }, log)
    end)

    it("releases several waiters", function()
      local set = limit.new(1)
      local released = 0
      set:addthread(function() copas.pause(0.01) end)
      for _ = 1, 3 do
        copas.addthread(function()
          set:wait()
          released = released + 1
        end)
      end
      helpers.run(nil, 5)
      assert.equal(3, released)
    end)

    it("must be called from a thread when it has to wait", function()
      local set = limit.new(1)
      set:addthread(function() end)
      assert.is_false(pcall(set.wait, set))
    end)
  end)


  describe("with copas.removeall()", function()

    it("empties the set", function()
      local set = limit.new(1)
      local ran = {}
      for i = 1, 3 do
        set:addthread(function() ran[#ran + 1] = i copas.pause(1) end)
      end
      copas.step(0)
      copas.removeall()
      assert.equal(0, set.count)
      local waited = false
      copas.addthread(function() set:wait() waited = true end)
      helpers.run(nil, 5)
      assert.is_true(waited)
      assert.same({ 1 }, ran)
    end)
  end)
end)
