-- copas.future (API.md section 15)
local helpers = require "spec.helpers"

local copas, future

local function pack(...)
  return { n = select("#", ...), ... }
end


describe("copas.future", function()

  before_each(function()
    copas = helpers.reload()
    future = require "copas.future"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("module", function()

    it("has the constants SUCCESS, PENDING and ERROR", function()
      assert.is_true(future.SUCCESS)
      assert.is_false(future.PENDING)
      assert.equal("error", future.ERROR)
    end)

    it("raises \"unknown field 'future.<key>'\" for any other field", function()
      local ok, err = pcall(function() return future.SUCESS end)
      assert.is_false(ok)
      assert.matches("unknown field 'future.SUCESS'", err, 1, true)
    end)

    it("is the module copas.future loads lazily", function()
      assert.equal(future, copas.future)
    end)
  end)


  describe("get()", function()

    it("waits for the task and returns true and all its results, nils included", function()
      local res
      local f = future.addthread(function(a, b)
        copas.pause(0.02)
        return a, nil, b, nil
      end, "x", "y")
      copas.addthread(function() res = pack(f:get()) end)
      helpers.run(nil, 5)
      assert.same({ n = 5, true, "x", nil, "y", nil }, res)
    end)

    it("returns false and the raw error; no error handler is called", function()
      local handled = false
      copas.seterrorhandler(function() handled = true end, true)
      local obj = {}
      local res1, res2
      local f1 = future.addthread(function() error("boom", 0) end)
      local f2 = future.addthread(function() copas.pause(0.01) error(obj) end)
      copas.addthread(function()
        res1 = pack(f1:get())
        res2 = pack(f2:get())
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, false, "boom" }, res1)
      assert.equal(false, res2[1])
      assert.equal(obj, res2[2])
      assert.is_false(handled)
    end)

    it("returns the stored outcome at once afterwards, any number of times", function()
      local f = future.addthread(function() return 42 end)
      helpers.run(nil, 5)
      for _ = 1, 3 do
        assert.same({ n = 2, true, 42 }, pack(f:get()))
      end
    end)

    it("is what calling the future does", function()
      local res
      local f = future.addthread(function() copas.pause(0.01) return "called" end)
      copas.addthread(function() res = pack(f()) end)
      helpers.run(nil, 5)
      assert.same({ n = 2, true, "called" }, res)
    end)

    it("releases any number of waiters (no 9 999 cap, upstream #203)", function()
      local N = 10050
      local f = future.addthread(function() copas.pause(0.01) return "done" end)
      local released = 0
      for _ = 1, N do
        copas.addthread(function()
          local ok, v = f:get()
          if ok and v == "done" then released = released + 1 end
        end)
      end
      helpers.run(nil, 20)
      assert.equal(N, released)
    end)

    it("treats a stray copas.wakeup as spurious and keeps waiting", function()
      local log = {}
      local f = future.addthread(function() copas.pause(0.05) return "late" end)
      local waiter = copas.addthread(function()
        local _, v = f:get()
        log[#log + 1] = "got " .. v
      end)
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "wakeup"
        assert.is_true(copas.wakeup(waiter))
      end)
      helpers.run(nil, 5)
      assert.same({ "wakeup", "got late" }, log)
    end)
  end)


  describe("try()", function()

    it("returns PENDING, then SUCCESS and the results", function()
      local f = future.addthread(function() copas.pause(0.01) return 1, nil end)
      assert.same({ n = 1, future.PENDING }, pack(f:try()))
      helpers.run(nil, 5)
      assert.same({ n = 3, future.SUCCESS, 1, nil }, pack(f:try()))
    end)

    it("returns ERROR and the error of a failed task", function()
      local f = future.addthread(function() error("bad", 0) end)
      helpers.run(nil, 5)
      assert.same({ n = 2, future.ERROR, "bad" }, pack(f:try()))
    end)
  end)


  describe("addnamedthread()", function()

    it("names the task's thread", function()
      local name
      local f = future.addnamedthread("worker", function() name = copas.getthreadname() return true end)
      helpers.run(nil, 5)
      assert.equal("worker", name)
      assert.same({ n = 2, true, true }, pack(f:get()))
    end)
  end)


  describe("cancel()", function()

    it("returns true for a pending task, which never continues; waiters get false, 'cancelled'", function()
      local continued = false
      local f = future.addthread(function() copas.pause(0.05) continued = true end)
      local res = {}
      for i = 1, 2 do
        copas.addthread(function() res[i] = pack(f:get()) end)
      end
      local cancelled
      copas.addthread(function()
        copas.pause(0.01)
        cancelled = f:cancel()
      end)
      helpers.run(nil, 5)
      assert.is_true(cancelled)
      assert.is_false(continued)
      for i = 1, 2 do assert.same({ n = 2, false, "cancelled" }, res[i]) end
      assert.same({ n = 2, future.ERROR, "cancelled" }, pack(f:try()))
      assert.is_false(f:cancel())
    end)

    it("returns false for a finished task and keeps its outcome", function()
      local f = future.addthread(function() return "ok" end)
      helpers.run(nil, 5)
      assert.is_false(f:cancel())
      assert.same({ n = 2, true, "ok" }, pack(f:get()))
    end)

    it("works before the task ever ran", function()
      local ran = false
      local f = future.addthread(function() ran = true end)
      assert.is_true(f:cancel())
      helpers.run(nil, 5)
      assert.is_false(ran)
      assert.same({ n = 2, false, "cancelled" }, pack(f:get()))
    end)
  end)


  describe("with copas.removeall()", function()

    it("resolves pending futures as false, 'cancelled'", function()
      local f = future.addthread(function() copas.pause(10) return "never" end)
      copas.step(0)                 -- f's task is sleeping now
      local g = future.addthread(function() return "never" end)
      copas.removeall()
      assert.same({ n = 2, false, "cancelled" }, pack(f:get()))
      assert.same({ n = 2, future.ERROR, "cancelled" }, pack(g:try()))
      assert.is_true(copas.finished())
    end)
  end)

  describe("references", function()

    it("keeps no strong reference to a waiter that copas dropped", function()
      local f = future.addthread(function() copas.pause(5) end)
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = copas.addthread(function() f:get() end)
      copas.step(0)
      copas.removethread(weak[1])
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_true(f:cancel())
    end)
  end)
end)
