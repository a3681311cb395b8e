-- copas.timer (API.md section 11)
local helpers = require "spec.helpers"

local copas, timer

-- tolerance between the wall clock (gettime) and the core's monotonic clock
local CLOCK_SLACK = 1e-3

local function noop() end


describe("copas.timer", function()

  before_each(function()
    copas = helpers.reload()
    timer = require "copas.timer"
  end)

  after_each(function()
    copas.removeall()
  end)


  describe("new()", function()

    it("raises 'delay must be greater than or equal to 0' for a missing or negative delay", function()
      for _, delay in ipairs { -1, "1", false } do
        local ok, err = pcall(timer.new, { delay = delay, callback = noop })
        assert.is_false(ok)
        assert.matches("delay must be greater than or equal to 0", err, 1, true)
      end
      local ok, err = pcall(timer.new, { callback = noop })
      assert.is_false(ok)
      assert.matches("delay must be greater than or equal to 0", err, 1, true)
    end)

    it("raises 'expected callback to be a function' without a callback", function()
      local ok, err = pcall(timer.new, { delay = 1 })
      assert.is_false(ok)
      assert.matches("expected callback to be a function", err, 1, true)
      ok, err = pcall(timer.new, { delay = 1, callback = "f" })
      assert.is_false(ok)
      assert.matches("expected callback to be a function", err, 1, true)
    end)

    it("raises for a negative initial_delay", function()
      local ok, err = pcall(timer.new, { delay = 1, initial_delay = -1, callback = noop })
      assert.is_false(ok)
      assert.matches("delay must be greater than or equal to 0", err, 1, true)
    end)

    it("is the module copas.timer loads lazily", function()
      assert.equal(timer, copas.timer)
    end)

    it("returns an armed timer exposing name, delay, recurring and params", function()
      local params = {}
      local t = timer.new { delay = 5, callback = noop, params = params, name = "tick" }
      assert.equal("tick", t.name)
      assert.equal(5, t.delay)
      assert.is_false(t.recurring)
      assert.equal(params, t.params)
      assert.same({ nil, "already armed" }, { t:arm() })
      local r = timer.new { delay = 5, callback = noop, recurring = 1 }
      assert.is_true(r.recurring)
    end)

    it("names timers copas_timer_<n> and their threads after them", function()
      local names = {}
      local function cb(t) names[#names + 1] = { t.name, copas.getthreadname(coroutine.running()) } end
      timer.new { delay = 0, callback = cb }
      timer.new { delay = 0.01, callback = cb }
      timer.new { delay = 0.02, callback = cb, name = "custom" }
      helpers.run(nil, 5)
      assert.same({
        { "copas_timer_1", "copas_timer_1" },
        { "copas_timer_2", "copas_timer_2" },
        { "custom", "custom" },
      }, names)
    end)
  end)


  describe("one-shot", function()

    it("runs the callback once, not before its delay, with (timer, params)", function()
      local calls, start = {}, copas.gettime()
      local params = { "p" }
      local t
      t = timer.new { delay = 0.1, params = params, callback = function(tm, p)
        calls[#calls + 1] = { tm == t, p, copas.gettime() - start }
      end }
      helpers.run(nil, 5)
      assert.equal(1, #calls)
      assert.is_true(calls[1][1])
      assert.equal(params, calls[1][2])
      assert.is_true(calls[1][3] >= 0.1 - CLOCK_SLACK, "fired early: " .. calls[1][3])
    end)

    it("uses initial_delay for the run", function()
      local at, start
      copas.addthread(function()
        start = copas.gettime()
        timer.new { delay = 10, initial_delay = 0.05, callback = function() at = copas.gettime() - start end }
      end)
      helpers.run(nil, 5)
      assert.is_true(at >= 0.05 - CLOCK_SLACK and at < 5, "ran after " .. tostring(at))
    end)

    it("counts as not armed after it ran, so arm() runs it again", function()
      local count = 0
      local t = timer.new { delay = 0, callback = function() count = count + 1 end }
      helpers.run(nil, 5)
      assert.equal(1, count)
      assert.same({ nil, "not armed" }, { t:cancel() })
      assert.equal(t, t:arm(0.01))
      helpers.run(nil, 5)
      assert.equal(2, count)
    end)

    it("can re-arm itself from its callback, honouring the new delay", function()
      local runs, start = {}, copas.gettime()
      timer.new { delay = 0.02, callback = function(t)
        runs[#runs + 1] = copas.gettime() - start
        if #runs == 1 then
          assert.equal(t, t:arm(0.1))       -- not armed while its callback runs
        end
      end }
      helpers.run(nil, 5)
      assert.equal(2, #runs)
      assert.is_true(runs[2] - runs[1] >= 0.1 - CLOCK_SLACK, "re-armed run came early")
    end)

    it("reports 'not armed' when cancelled from its own callback", function()
      local res
      timer.new { delay = 0, callback = function(t) res = { t:cancel() } end }
      helpers.run(nil, 5)
      assert.same({ nil, "not armed" }, res)
    end)
  end)


  describe("recurring", function()

    it("schedules the next run delay after the previous callback returned", function()
      local starts, start = {}, copas.gettime()
      timer.new { delay = 0.05, recurring = true, callback = function(t)
        starts[#starts + 1] = copas.gettime() - start
        copas.pause(0.05)                    -- the callback takes 0.05 s
        if #starts == 4 then t:cancel() end
      end }
      helpers.run(nil, 5)
      assert.equal(4, #starts)
      assert.is_true(starts[1] >= 0.05 - CLOCK_SLACK)
      for i = 2, 4 do
        local gap = starts[i] - starts[i - 1]
        assert.is_true(gap >= 0.1 - 2 * CLOCK_SLACK, "gap " .. i .. " was " .. gap)
      end
    end)

    it("uses initial_delay for the first run and delay after it", function()
      local starts, start = {}, copas.gettime()
      timer.new { delay = 0.1, initial_delay = 0, recurring = true, callback = function(t)
        starts[#starts + 1] = copas.gettime() - start
        if #starts == 2 then t:cancel() end
      end }
      helpers.run(nil, 5)
      assert.equal(2, #starts)
      assert.is_true(starts[1] < 0.1, "first run waited for delay")
      assert.is_true(starts[2] - starts[1] >= 0.1 - CLOCK_SLACK)
    end)

    it("cannot re-arm itself from its callback", function()
      local res
      timer.new { delay = 0, recurring = true, callback = function(t)
        res = { t:arm() }
        t:cancel()
      end }
      helpers.run(nil, 5)
      assert.same({ nil, "already armed" }, res)
    end)

    it("stops when cancelled from its callback; a second cancel says 'already cancelled'", function()
      local count, second = 0, nil
      local t
      t = timer.new { delay = 0.01, recurring = true, callback = function()
        count = count + 1
        if count == 2 then
          assert.equal(t, t:cancel())
          second = { t:cancel() }
        end
      end }
      helpers.run(nil, 5)
      local after = { t:cancel() }
      assert.equal(2, count)
      assert.same({ nil, "already cancelled" }, second)
      assert.same({ nil, "not armed" }, after)
    end)

    it("lets a callback in the middle of I/O finish, then stops (upstream #206)", function()
      local log = {}
      local t = timer.new { delay = 0, recurring = true, callback = function()
        log[#log + 1] = "start"
        copas.pause(0.2)
        log[#log + 1] = "end"
      end }
      copas.addthread(function()
        copas.pause(0.1)
        log[#log + 1] = "cancel"
        assert.equal(t, t:cancel())
        assert.same({ nil, "already cancelled" }, { t:cancel() })
      end)
      helpers.run(nil, 5)
      assert.same({ "start", "cancel", "end" }, log)
      assert.same({ nil, "not armed" }, { t:cancel() })
    end)

    it("leaves exactly one live thread after cancel and arm in its callback (upstream #213)", function()
      local count, timers_after = 0, nil
      local t
      t = timer.new { delay = 0.01, recurring = true, callback = function()
        count = count + 1
        if count == 1 then
          t:cancel()
          assert.equal(t, t:arm(0.05))
        elseif count == 2 then
          copas.pause(0)   -- let an old thread, if any, reach its next sleep
          timers_after = copas.status().timer
          t:cancel()
        end
      end }
      helpers.run(nil, 5)   -- a leftover thread would keep running the timer
      assert.equal(2, count)
      assert.equal(0, timers_after)
      assert.is_true(copas.finished())
    end)

    it("keeps running after a callback error", function()
      local count, errs = 0, {}
      timer.new { delay = 0.01, recurring = true,
        errorhandler = function(err) errs[#errs + 1] = err end,
        callback = function(t)
          count = count + 1
          if count == 3 then t:cancel() return end
          error("fail " .. count, 0)
        end }
      helpers.run(nil, 5)
      assert.equal(3, count)
      assert.same({ "fail 1", "fail 2" }, errs)
    end)
  end)


  describe("arm()", function()

    it("returns nil, 'already armed' for an armed timer", function()
      local t = timer.new { delay = 1, callback = noop }
      assert.same({ nil, "already armed" }, { t:arm() })
      assert.same({ nil, "already armed" }, { t:arm(0) })
    end)

    it("raises for a negative delay", function()
      local t = timer.new { delay = 1, callback = noop }
      t:cancel()
      local ok, err = pcall(t.arm, t, -0.5)
      assert.is_false(ok)
      assert.matches("delay must be greater than or equal to 0", err, 1, true)
    end)

    it("re-arms a cancelled timer", function()
      local count = 0
      local t = timer.new { delay = 5, callback = function() count = count + 1 end }
      assert.equal(t, t:cancel())
      assert.equal(t, t:arm(0.01))
      helpers.run(nil, 5)
      assert.equal(1, count)
    end)
  end)


  describe("cancel()", function()

    it("returns the timer, then 'not armed'; the callback never runs", function()
      local ran = false
      local t = timer.new { delay = 0.05, callback = function() ran = true end }
      assert.equal(t, t:cancel())
      assert.same({ nil, "not armed" }, { t:cancel() })
      helpers.run(nil, 5)
      assert.is_false(ran)
    end)

    it("ends an idle timer's thread at once, so it no longer keeps the loop alive", function()
      local t = timer.new { delay = 3600, recurring = true, callback = noop }
      assert.is_false(copas.finished())
      t:cancel()
      assert.is_true(copas.finished())
      assert.equal(0, copas.status().timer)
      local start = copas.gettime()
      helpers.run(nil, 5)
      assert.is_true(copas.gettime() - start < 5)
    end)

    it("stops an idle recurring timer between runs", function()
      local count = 0
      local t = timer.new { delay = 0.02, recurring = true, callback = function() count = count + 1 end }
      copas.addthread(function()
        while count < 2 do copas.pause(0.005) end
        t:cancel()
      end)
      helpers.run(nil, 5)
      assert.equal(2, count)
    end)
  end)


  describe("errors", function()

    it("passes a callback error to opts.errorhandler as (err, timer thread, nil)", function()
      local got
      timer.new { delay = 0, name = "failing",
        errorhandler = function(err, co, skt)
          got = { err = err, name = copas.getthreadname(co), skt = skt, n = select("#", err, co, skt) }
        end,
        callback = function() error("boom", 0) end }
      helpers.run(nil, 5)
      assert.equal("boom", got.err)
      assert.equal("failing", got.name)
      assert.is_nil(got.skt)
    end)

    it("goes to the default error handler, whose traceback names the timer", function()
      local lines = {}
      local old = _G.print
      _G.print = function(...) lines[#lines + 1] = table.concat({ ... }, "\t") end
      local ok, err = pcall(function()
        timer.new { delay = 0, name = "failing_timer", callback = function() error("kaboom") end }
        helpers.run(nil, 5)
      end)
      _G.print = old
      assert(ok, err)
      assert.equal(1, #lines)
      assert.matches("kaboom (coroutine: failing_timer, socket: nil)", lines[1], 1, true)
      assert.matches("stack traceback:", lines[1], 1, true)
    end)

    it("uses the default handler that is set when the error happens", function()
      local got
      timer.new { delay = 0.01, callback = function() error("late", 0) end }
      copas.seterrorhandler(function(err) got = err end, true)
      helpers.run(nil, 5)
      assert.equal("late", got)
    end)
  end)


  describe("after copas.removeall()", function()

    it("is disarmed: cancel() says 'not armed' and arm() works", function()
      local count = 0
      local a = timer.new { delay = 0.05, callback = function() count = count + 1 end }
      local b = timer.new { delay = 0.05, recurring = true, callback = function() count = count + 1 end }
      copas.step(0)   -- a's and b's threads are sleeping now
      local c = timer.new { delay = 0.05, callback = function() count = count + 1 end }
      copas.removeall()
      assert.is_true(copas.finished())
      assert.equal(a, a:arm(0.01))           -- no cancel() needed first
      for _, t in ipairs { b, c } do
        assert.same({ nil, "not armed" }, { t:cancel() })
      end
      assert.equal(c, c:arm(0.01))
      helpers.run(nil, 5)
      assert.equal(2, count)
    end)
  end)
end)
