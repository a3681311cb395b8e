-- copas.timeout and copas.gettimeouts (API.md section 3)
local helpers = require "spec.helpers"

local copas

local CLOCK_SLACK = 1e-3

describe("copas.timeout()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("returns true, and calls the callback once with the thread after the delay", function()
    local ret, calls, cb_co, thread_co, elapsed = nil, 0, nil, nil, nil
    copas.addthread(function()
      thread_co = coroutine.running()
      local t0 = copas.gettime()
      ret = copas.timeout(0.05, function(co)
        calls = calls + 1
        cb_co = co
        elapsed = copas.gettime() - t0
        copas.wakeup(co)
      end)
      copas.pauseforever()
      copas.pause(0.1)     -- a chance for a second (wrong) call
    end)
    helpers.run(nil, 5)
    assert.is_true(ret)
    assert.equal(1, calls)
    assert.equal(thread_co, cb_co)
    assert.is_true(elapsed >= 0.05 - CLOCK_SLACK, "fired early: " .. tostring(elapsed))
  end)

  it("runs the callback outside the thread, in a thread named 'copas_core_timer'", function()
    local name, running, owner
    copas.addthread(function()
      owner = coroutine.running()
      copas.timeout(0.01, function(co)
        running = coroutine.running()
        name = copas.getthreadname()
        copas.wakeup(co)
      end)
      copas.pauseforever()
    end)
    helpers.run(nil, 5)
    assert.equal("copas_core_timer", name)
    assert.is_not_nil(running)
    assert.are_not.equal(owner, running)
  end)

  it("re-arming replaces the previous delay and callback", function()
    local log = {}
    local elapsed
    copas.addthread(function()
      local t0 = copas.gettime()
      copas.timeout(0.02, function() log[#log + 1] = "first" end)
      copas.timeout(0.1, function(co)
        log[#log + 1] = "second"
        elapsed = copas.gettime() - t0
        copas.wakeup(co)
      end)
      copas.pauseforever()
      copas.pause(0.05)
    end)
    helpers.run(nil, 5)
    assert.same({ "second" }, log)
    assert.is_true(elapsed >= 0.1 - CLOCK_SLACK, "fired early: " .. tostring(elapsed))
  end)

  it("re-arming can shorten the delay", function()
    local log = {}
    copas.addthread(function()
      copas.timeout(10, function() log[#log + 1] = "long" end)
      copas.timeout(0.02, function(co)
        log[#log + 1] = "short"
        copas.wakeup(co)
      end)
      copas.pauseforever()
    end)
    helpers.run(nil, 5)
    assert.same({ "short" }, log)
    assert.equal(0, copas.gettimeouts())
  end)

  for _, cancel in ipairs { 0, math.huge } do
    it("timeout(" .. tostring(cancel) .. ") cancels", function()
      local fired = false
      local ret
      copas.addthread(function()
        copas.timeout(0.02, function() fired = true end)
        assert.equal(1, copas.gettimeouts())
        ret = copas.timeout(cancel)
        assert.equal(0, copas.gettimeouts())
        copas.pause(0.1)   -- past the cancelled deadline
      end)
      helpers.run(nil, 5)
      assert.is_true(ret)
      assert.is_false(fired)
    end)
  end

  it("cancelling when nothing is armed is harmless", function()
    local ret
    copas.addthread(function() ret = copas.timeout(0) end)
    helpers.run(nil, 5)
    assert.is_true(ret)
  end)

  it("does not wake the thread by itself", function()
    local woken = false
    copas.addthread(function()
      copas.timeout(0.02, function() end)
      copas.pauseforever()
      woken = true
    end)
    helpers.run(nil, 5)
    assert.is_false(woken)
  end)

  it("keeps the loop alive for a pauseforever thread until it fires", function()
    local fired = false
    copas.addthread(function()
      copas.timeout(0.05, function() fired = true end)
      copas.pauseforever()
    end)
    helpers.run(nil, 5)
    assert.is_true(fired)
  end)

  it("sends callback errors to the default handler with the timer thread", function()
    local got = {}
    copas.seterrorhandler(function(err, co, skt)
      got[#got + 1] = {
        err = err,
        co_type = type(co),
        co_name = co and copas.getthreadname(co),
        skt = skt,
      }
    end, true)
    local per_thread_called = false
    copas.addthread(function()
      copas.seterrorhandler(function() per_thread_called = true end)
      copas.timeout(0.01, function() error("callback failed", 0) end)
      copas.pause(0.05)
    end)
    helpers.run(nil, 5)
    assert.is_false(per_thread_called)
    assert.equal(1, #got)
    assert.equal("callback failed", got[1].err)
    assert.equal("thread", got[1].co_type)
    assert.equal("copas_core_timer", got[1].co_name)
    assert.is_nil(got[1].skt)
  end)

  it("prints callback errors with the timer thread's name and the callback's frames", function()
    local out = {}
    local old_print = _G.print
    _G.print = function(...)
      local t = {}
      for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
      out[#out + 1] = table.concat(t, "\t")
    end
    local function failing_timeout_callback()
      error("boom in callback", 0)
    end
    local ok, err = pcall(function()
      copas.addthread(function()
        copas.timeout(0.01, function() failing_timeout_callback() end)
        copas.pause(0.05)
      end)
      helpers.run(nil, 5)
    end)
    _G.print = old_print
    assert(ok, err)
    assert.equal(1, #out)
    local first = out[1]:match("^[^\n]*")
    assert.equal("boom in callback (coroutine: copas_core_timer, socket: nil)", first)
    assert.matches("stack traceback:", out[1], 1, true)
    assert.matches("failing_timeout_callback", out[1], 1, true)
  end)

  it("keeps the loop and other timeouts going after a callback error", function()
    copas.seterrorhandler(function() end, true)
    local fired, finished = false, false
    copas.addthread(function()
      copas.timeout(0.01, function() error("first fails") end)
      copas.pause(0.03)
    end)
    copas.addthread(function()
      copas.timeout(0.05, function(co)
        fired = true
        copas.wakeup(co)
      end)
      copas.pauseforever()
      finished = true
    end)
    helpers.run(nil, 5)
    assert.is_true(fired)
    assert.is_true(finished)
  end)

  it("raises for a negative, NaN or non-number delay", function()
    local errs = {}
    copas.addthread(function()
      for _, v in ipairs { -1, 0 / 0, "1", {} } do
        local ok, err = pcall(copas.timeout, v)
        errs[#errs + 1] = ok and "no error" or tostring(err)
      end
    end)
    helpers.run(nil, 5)
    assert.equal(4, #errs)
    for _, e in ipairs(errs) do
      assert.matches("bad argument #1 to 'timeout'", e, 1, true)
    end
  end)
end)


describe("copas.gettimeouts()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("counts armed timeouts, as status().timeout", function()
    assert.equal(0, copas.gettimeouts())
    local t1 = copas.addthread(function()
      copas.timeout(10, function() end)
      copas.pauseforever()
    end)
    local t2 = copas.addthread(function()
      copas.timeout(10, function() end)
      copas.timeout(20, function() end)   -- re-arm: still one
      copas.pauseforever()
    end)
    copas.step(0)
    assert.equal(2, copas.gettimeouts())
    assert.equal(2, copas.status().timeout)
    copas.removethread(t1)
    assert.equal(1, copas.gettimeouts())
    assert.equal(1, copas.status().timeout)
    copas.removethread(t2)
    assert.equal(0, copas.gettimeouts())
  end)

  it("drops to zero once a timeout fired", function()
    copas.addthread(function()
      copas.timeout(0.01, function() end)
      copas.pause(0.05)
    end)
    copas.step(0)
    assert.equal(1, copas.gettimeouts())
    helpers.run(nil, 5)
    assert.equal(0, copas.gettimeouts())
  end)
end)
