-- Regression: threads blocked in a sync primitive without a timeout were
-- held only weakly (by the scheduler, as plain pauseforever threads are, and
-- by the primitive), so a garbage collection while they waited could drop
-- them: a future with 10 050 waiters released only about half of them.
-- The scheduler now holds such waiters strongly until they are woken or
-- removed; a plain pauseforever thread nobody refers to stays collectable.
local helpers = require "spec.helpers"

local copas

describe("threads waiting in a sync primitive", function()

  before_each(function()
    copas = helpers.reload()
  end)

  after_each(function()
    copas.removeall()
  end)

  local function collect()
    collectgarbage()
    collectgarbage()
  end

  it("survive a garbage collection while blocked in future:get()", function()
    local future = require "copas.future"
    local N = 200
    local f = future.addthread(function()
      copas.pause(0.02)
      collect()
      return "done"
    end)
    local released = 0
    for _ = 1, N do
      copas.addthread(function()
        local ok, v = f:get()
        if ok and v == "done" then released = released + 1 end
      end)
    end
    helpers.run(nil, 10)
    assert.equal(N, released)
  end)

  it("survive a garbage collection while blocked in lock:get(math.huge)", function()
    local lock = require "copas.lock"
    local l = lock.new(math.huge)
    local got = 0
    copas.addthread(function()
      l:get()
      copas.pause(0.02)
      collect()
      l:release()
    end)
    for _ = 1, 10 do
      copas.addthread(function()
        if l:get() then got = got + 1; l:release() end
      end)
    end
    helpers.run(nil, 10)
    assert.equal(10, got)
  end)

  it("survive a garbage collection while blocked in queue:pop(math.huge)", function()
    local queue = require "copas.queue"
    local q = queue.new()
    local popped = 0
    for _ = 1, 10 do
      copas.addthread(function()
        if q:pop(math.huge) == "item" then popped = popped + 1 end
      end)
    end
    copas.addthread(function()
      copas.pause(0.02)
      collect()
      for _ = 1, 10 do q:push("item") end
    end)
    helpers.run(nil, 10)
    assert.equal(10, popped)
  end)

  it("leave a plain pauseforever thread that nobody refers to collectable", function()
    local weak = setmetatable({}, { __mode = "k" })
    weak[copas.addthread(function() copas.pauseforever() end)] = true
    helpers.run(nil, 5)
    collect()
    assert.is_nil(next(weak))
  end)
end)
