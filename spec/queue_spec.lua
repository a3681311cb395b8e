-- copas.queue (API.md section 14)
local helpers = require "spec.helpers"

local copas, Queue

-- tolerance between the wall clock (gettime) and the core's monotonic clock
local CLOCK_SLACK = 1e-3

local function pack(...)
  return { n = select("#", ...), ... }
end


describe("copas.queue", function()

  before_each(function()
    copas = helpers.reload()
    Queue = require "copas.queue"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("new()", function()

    it("works as Queue.new(opts) and as Queue:new()", function()
      local a = Queue.new { name = "jobs" }
      local b = Queue:new()
      local c = Queue.new()
      assert.equal("jobs", a.name)
      assert.equal("copas_queue_1", b.name)
      assert.equal("copas_queue_2", c.name)
      assert.is_true(b:push("x"))
      assert.equal("x", b:pop(0))
    end)

    it("is the module copas.queue loads lazily", function()
      assert.equal(Queue, copas.queue)
    end)
  end)


  describe("push() and pop()", function()

    it("are FIFO and keep nil items, returned as a single nil", function()
      local q = Queue.new()
      assert.is_true(q:push(1))
      assert.is_true(q:push(nil))
      assert.is_true(q:push(3))
      assert.equal(3, q:get_size())
      assert.same({ n = 1, 1 }, pack(q:pop(0)))
      assert.same({ n = 1 }, pack(q:pop(0)))
      assert.same({ n = 1, 3 }, pack(q:pop(0)))
      assert.equal(0, q:get_size())
    end)

    it("pop waits for a push from another thread", function()
      local q = Queue.new()
      local got, waited
      copas.addthread(function()
        local start = copas.gettime()
        got = pack(q:pop())
        waited = copas.gettime() - start
      end)
      copas.addthread(function()
        copas.pause(0.05)
        q:push("delayed")
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, "delayed" }, got)
      assert.is_true(waited >= 0.05 - CLOCK_SLACK)
    end)

    it("serves waiting pops in FIFO order", function()
      local q = Queue.new()
      local log = {}
      for _, name in ipairs { "A", "B", "C" } do
        copas.addthread(function()
          local item = q:pop(1)
          log[#log + 1] = name .. item
        end)
      end
      copas.addthread(function()
        copas.pause(0.01)
        q:push(1)
        q:push(2)
        q:push(3)
      end)
      helpers.run(nil, 5)
      assert.same({ "A1", "B2", "C3" }, log)
    end)

    it("pop returns nil, 'timeout' at once for 0 and after a finite timeout", function()
      local q = Queue.new()
      assert.same({ n = 2, nil, "timeout" }, pack(q:pop(0)))
      local res, waited
      copas.addthread(function()
        local start = copas.gettime()
        res = pack(q:pop(0.05))
        waited = copas.gettime() - start
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "timeout" }, res)
      assert.is_true(waited >= 0.05 - CLOCK_SLACK, "timed out early")
    end)

    it("pop(math.huge) arms no timeout", function()
      local q = Queue.new()
      local timeouts, res
      copas.addthread(function() res = pack(q:pop(math.huge)) end)
      copas.addthread(function()
        copas.pause(0.01)
        timeouts = copas.gettimeouts()
        q:push("x")
      end)
      helpers.run(nil, 5)
      assert.equal(0, timeouts)
      assert.same({ n = 1, "x" }, res)
    end)

    it("pop treats a stray copas.wakeup as spurious and keeps waiting", function()
      local q = Queue.new()
      local log = {}
      local popper = copas.addthread(function()
        local item = q:pop(1)
        log[#log + 1] = "popped " .. tostring(item)
      end)
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "wakeup"
        assert.is_true(copas.wakeup(popper))
        copas.pause(0.05)
        log[#log + 1] = "push"
        q:push("x")
      end)
      helpers.run(nil, 5)
      assert.same({ "wakeup", "push", "popped x" }, log)
    end)

    it("gives no item to a removed popper", function()
      local q = Queue.new()
      local resumed = false
      local popper = copas.addthread(function() q:pop(1) resumed = true end)
      local res
      copas.addthread(function()
        copas.pause(0.01)
        copas.removethread(popper)
        q:push("x")
        res = pack(q:pop(0))
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, "x" }, res)
      assert.is_false(resumed)
    end)

    it("raises Lua's yield error from the main chunk when pop would have to wait", function()
      local q = Queue.new()
      local ok, err = pcall(q.pop, q, 1)
      assert.is_false(ok)
      assert.matches("attempt to yield", tostring(err), 1, true)
    end)
  end)


  describe("stop()", function()

    it("refuses pushes and destroys the queue when its last item is popped", function()
      local q = Queue.new()
      q:push(1)
      q:push(2)
      assert.is_true(q:stop())
      assert.same({ n = 2, nil, "stopping" }, pack(q:push(3)))
      assert.equal(1, q:pop(0))
      assert.equal(2, q:pop(0))
      assert.same({ n = 2, nil, "destroyed" }, pack(q:push(3)))
      assert.same({ n = 2, nil, "destroyed" }, pack(q:pop(0)))
    end)

    it("destroys an empty queue at once, releasing idle workers", function()
      local q = Queue.new()
      local worker = q:add_worker(function() end)
      copas.addthread(function()
        copas.pause(0.01)
        q:stop()
      end)
      helpers.run(nil, 5)
      assert.equal("dead", coroutine.status(worker))
      assert.same({ n = 2, nil, "destroyed" }, pack(q:get_size()))
    end)
  end)


  describe("finish()", function()

    it("waits for the workers' last items (tests/queue.lua ordering, upstream #168)", function()
      local log = {}
      local function rec(s) log[#log + 1] = s end
      copas.addthread(function()
        local q = Queue.new()
        rec("start queue")
        q:push(1)
        q:push(2)
        q:push(3)
        for _ = 1, 2 do
          q:add_worker(function(item)
            rec("start " .. item)
            copas.pause(0.5)
            rec("end " .. item)
          end)
        end
        copas.pause(0.75)
        rec("start finish")
        local ok = q:finish()
        rec("finished " .. tostring(ok))
      end)
      helpers.run(nil, 10)
      assert.same({ "start queue", "start 1", "start 2", "end 1", "start 3", "end 2",
        "start finish", "end 3", "finished true" }, log)
    end)

    it("returns nil, 'timeout' and destroys the queue on a timeout", function()
      local q = Queue.new()
      q:push(1)
      local res, waited
      copas.addthread(function()
        local start = copas.gettime()
        res = pack(q:finish(0.05))
        waited = copas.gettime() - start
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "timeout" }, res)
      assert.is_true(waited >= 0.05 - CLOCK_SLACK)
      assert.same({ n = 2, nil, "destroyed" }, pack(q:get_size()))
    end)

    it("keeps the queue on a timeout with no_destroy_on_timeout", function()
      local q = Queue.new()
      q:push(1)
      local res
      copas.addthread(function() res = pack(q:finish(0.05, true)) end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "timeout" }, res)
      assert.equal(1, q:get_size())
      assert.same({ n = 2, nil, "stopping" }, pack(q:push(2)))
    end)

    it("releases several waiting callers", function()
      local q = Queue.new()
      q:push("a")
      local res = {}
      for i = 1, 3 do
        copas.addthread(function() res[i] = pack(q:finish(1)) end)
      end
      copas.addthread(function()
        copas.pause(0.01)
        assert.equal("a", q:pop(0))
      end)
      helpers.run(nil, 5)
      for i = 1, 3 do assert.same({ n = 1, true }, res[i]) end
    end)

    it("returns nil, 'destroyed' for a destroyed queue", function()
      local q = Queue.new()
      q:destroy()
      assert.same({ n = 2, nil, "destroyed" }, pack(q:finish(1)))
    end)
  end)


  describe("destroy()", function()

    it("drops items, releases waiting pops and makes every method return nil, 'destroyed'", function()
      local q = Queue.new()
      local res
      copas.addthread(function() res = pack(q:pop(1)) end)
      copas.addthread(function()
        copas.pause(0.01)
        assert.is_true(q:destroy())
      end)
      helpers.run(nil, 5)
      assert.same({ n = 2, nil, "destroyed" }, res)
      for _, m in ipairs { "push", "pop", "get_size", "stop", "finish", "destroy", "add_worker" } do
        assert.same({ n = 2, nil, "destroyed" }, pack(q[m](q, function() end)))
      end
    end)
  end)


  describe("add_worker()", function()

    it("raises 'expected worker to be a function'", function()
      local q = Queue.new()
      local ok, err = pcall(q.add_worker, q, "f")
      assert.is_false(ok)
      assert.matches("expected worker to be a function", err, 1, true)
    end)

    it("names workers <queue>:worker_<n> and lists the live ones", function()
      local q = Queue.new { name = "jobs" }
      local a = q:add_worker(function() end)
      local b = q:add_worker(function() end)
      assert.equal("jobs:worker_1", copas.getthreadname(a))
      assert.equal("jobs:worker_2", copas.getthreadname(b))
      assert.same({ a, b }, q:get_workers())
      copas.removethread(a)
      assert.same({ b }, q:get_workers())
    end)

    it("handles every item, nil included, and exits when the queue is destroyed", function()
      local q = Queue.new()
      local items = {}
      q:push(1)
      q:push(nil)
      q:push(3)
      local worker = q:add_worker(function(item) items[#items + 1] = tostring(item) end)
      copas.addthread(function()
        copas.pause(0.01)
        assert.is_true(q:finish(1))
      end)
      helpers.run(nil, 5)
      assert.same({ "1", "nil", "3" }, items)
      assert.equal("dead", coroutine.status(worker))
    end)

    it("lets an error kill only that worker; the error handler is called", function()
      local q = Queue.new()
      local errs, handled = {}, {}
      copas.seterrorhandler(function(err, co) errs[#errs + 1] = { err, copas.getthreadname(co) } end, true)
      local bad = q:add_worker(function(item)
        if item == "bad" then error("worker failed", 0) end
        handled[#handled + 1] = "w1 " .. item
      end)
      copas.addthread(function()
        copas.pause(0.01)
        q:push("bad")
        copas.pause(0.01)
        q:push("good")
        local res = pack(q:pop(0))
        handled[#handled + 1] = "main " .. tostring(res[1])
      end)
      helpers.run(nil, 5)
      assert.same({ { "worker failed", q.name .. ":worker_1" } }, errs)
      assert.same({ "main good" }, handled)
      assert.equal("dead", coroutine.status(bad))
      assert.same({}, q:get_workers())
    end)

    it("does not wait in finish() for a worker that failed on its item", function()
      local q = Queue.new()
      copas.seterrorhandler(function() end, true)
      q:add_worker(function() copas.pause(0.02) error("late failure") end)
      local res
      copas.addthread(function()
        q:push("x")
        copas.pause(0)
        res = pack(q:finish(1))
      end)
      helpers.run(nil, 5)
      assert.same({ n = 1, true }, res)
    end)

    it("keeps no reference to a worker that exited", function()
      local q = Queue.new()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = q:add_worker(function() end)
      q:push(1)
      q:stop()
      helpers.run(nil, 5)
      assert.equal("dead", coroutine.status(weak[1]))
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("does not keep the loop alive with idle workers", function()
      local q = Queue.new()
      q:add_worker(function() end)
      q:push(1)
      helpers.run(nil, 5)   -- would raise if the idle worker kept the loop alive
      assert.equal(0, q:get_size())
    end)
  end)

  describe("references", function()

    it("keeps no strong reference to a popper that copas dropped", function()
      local q = Queue.new()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = copas.addthread(function() q:pop(5) end)
      copas.step(0)
      copas.removeall()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_true(q:push({}))
      assert.equal("table", type(q:pop(0)))
    end)

    it("keeps a handed item alive until its popper resumes", function()
      local q = Queue.new()
      local got
      copas.addthread(function() got = q:pop(1) end)
      copas.step(0)
      q:push({ "payload" })
      collectgarbage()
      collectgarbage()
      helpers.run(nil, 5)
      assert.same({ "payload" }, got)
    end)
  end)
end)
