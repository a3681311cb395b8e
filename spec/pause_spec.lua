-- pause / pauseforever / sleep / wakeup and argument errors (API.md sections 1, 3)
local helpers = require "spec.helpers"

local copas

-- tolerance between the wall clock (gettime) and the core's monotonic clock
local CLOCK_SLACK = 1e-3
-- tolerance for floating point rounding of (start + s) - start
local EPS = 1e-9

local socketpair = helpers.pair


describe("copas.pause()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("pause(0) alternates fairly between threads: A1 B1 A2 B2 A3 B3", function()
    local log = {}
    for _, name in ipairs { "A", "B" } do
      copas.addthread(function()
        for i = 1, 3 do
          log[#log + 1] = name .. i
          copas.pause(0)
        end
      end)
    end
    copas.loop()
    assert.same({ "A1", "B1", "A2", "B2", "A3", "B3" }, log)
  end)

  it("never runs a pause(0) thread twice in one round", function()
    local counts = { 0, 0, 0 }
    for i = 1, 3 do
      copas.addthread(function()
        while true do
          counts[i] = counts[i] + 1
          copas.pause(0)
        end
      end)
    end
    for round = 1, 5 do
      copas.step(0)
      assert.same({ round, round, round }, counts)
    end
    copas.removeall()
  end)

  it("nil and negative values yield for one round", function()
    local log = {}
    copas.addthread(function()
      log[#log + 1] = "A1"
      copas.pause()
      log[#log + 1] = "A2"
      copas.pause(-5)
      log[#log + 1] = "A3"
    end)
    copas.addthread(function()
      log[#log + 1] = "B1"
      copas.pause(0)
      log[#log + 1] = "B2"
      copas.pause(0)
      log[#log + 1] = "B3"
    end)
    copas.loop()
    assert.same({ "A1", "B1", "A2", "B2", "A3", "B3" }, log)
  end)

  it("returns the elapsed time, never less than requested", function()
    local results = {}
    copas.loop(function()
      for _, s in ipairs { 0.01, 0.05, 0.1 } do
        local t0 = copas.gettime()
        local elapsed = copas.pause(s)
        local wall = copas.gettime() - t0
        results[#results + 1] = { s = s, elapsed = elapsed, wall = wall }
      end
    end)
    assert.equal(3, #results)
    for _, r in ipairs(results) do
      assert.equal("number", type(r.elapsed))
      assert.is_true(r.elapsed >= r.s - EPS, ("pause(%s) returned %s"):format(r.s, r.elapsed))
      assert.is_true(r.wall >= r.s - CLOCK_SLACK, ("pause(%s) woke after %s s"):format(r.s, r.wall))
    end
  end)

  it("returns a number >= 0 for a one-round pause", function()
    local e
    copas.loop(function() e = copas.pause(0) end)
    assert.equal("number", type(e))
    assert.is_true(e >= 0)
  end)

  it("returns early with the elapsed time when woken", function()
    local elapsed
    local sleeper = copas.addthread(function() elapsed = copas.pause(3600) end)
    copas.addthread(function()
      copas.pause(0.05)
      assert(copas.wakeup(sleeper))
    end)
    helpers.run(nil, 10)
    assert.is_true(elapsed >= 0.05 - CLOCK_SLACK, "woke too early: " .. tostring(elapsed))
    assert.is_true(elapsed < 3600)
  end)

  it("wakes 100000 sleepers with random pauses, none early", function()
    local N = 100000
    local woken, early, first_early = 0, 0, nil
    math.randomseed(12345)
    for _ = 1, N do
      local d = math.random() * 0.5
      copas.addthread(function()
        local t0 = copas.gettime()
        local elapsed = copas.pause(d)
        local wall = copas.gettime() - t0
        if elapsed < d - EPS or wall < d - CLOCK_SLACK then
          early = early + 1
          first_early = first_early or ("pause(%s): elapsed %s, wall %s"):format(d, elapsed, wall)
        end
        woken = woken + 1
      end)
    end
    helpers.run(nil, 120)
    assert.equal(N, woken)
    assert.equal(0, early, first_early)
  end)
end)


describe("copas.pauseforever() and copas.wakeup()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("pauseforever returns the time slept once woken", function()
    local elapsed, woke_ret
    local sleeper = copas.addthread(function() elapsed = copas.pauseforever() end)
    copas.addthread(function()
      copas.pause(0.05)
      woke_ret = { copas.wakeup(sleeper) }
    end)
    helpers.run(nil, 5)
    assert.same({ true }, woke_ret)
    assert.equal("number", type(elapsed))
    assert.is_true(elapsed >= 0.05 - CLOCK_SLACK, "elapsed " .. tostring(elapsed))
  end)

  it("wakeup returns true for a thread in pause", function()
    local r
    local sleeper = copas.addthread(function() copas.pause(10) end)
    copas.addthread(function()
      copas.pause(0)
      r = { copas.wakeup(sleeper) }
    end)
    helpers.run(nil, 5)
    assert.same({ true }, r)
  end)

  it("wakeup returns nil, 'not sleeping' for a runnable thread", function()
    local co = copas.addthread(function() end)
    assert.same({ nil, "not sleeping" }, { copas.wakeup(co) })
    copas.loop()
  end)

  it("wakeup returns nil, 'not sleeping' for a dead thread", function()
    local co = copas.addthread(function() end)
    copas.loop()
    assert.same({ nil, "not sleeping" }, { copas.wakeup(co) })
  end)

  it("wakeup returns nil, 'not sleeping' for a coroutine copas does not own", function()
    local co = coroutine.create(function() end)
    assert.same({ nil, "not sleeping" }, { copas.wakeup(co) })
  end)

  it("wakeup returns nil, 'not sleeping' for a thread waiting on a socket, which stays waiting", function()
    local a, b = socketpair()
    local got
    local reader = copas.addthread(function() got = { copas.receive(b, "*l") } end)
    copas.step(0)
    assert.same({ nil, "not sleeping" }, { copas.wakeup(reader) })
    copas.step(0)
    assert.is_nil(got)
    assert.equal(1, copas.status().read)
    assert(a:send("x\n"))
    helpers.run(nil, 5)
    assert.same({ "x" }, got)
    a:close()
    b:close()
  end)

  it("a thread woken twice resumes once", function()
    local count = 0
    local sleeper = copas.addthread(function()
      copas.pauseforever()
      count = count + 1
      copas.pauseforever()
      count = count + 1
    end)
    copas.step(0)
    assert.is_true(copas.wakeup(sleeper))
    assert.same({ nil, "not sleeping" }, { copas.wakeup(sleeper) })
    copas.step(0)
    assert.equal(1, count)
    copas.removethread(sleeper)
  end)
end)


describe("copas.sleep()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("nil and 0 yield for one round and return nothing", function()
    local log, n1, n2 = {}, nil, nil
    copas.addthread(function()
      log[#log + 1] = "A1"
      n1 = select("#", copas.sleep())
      log[#log + 1] = "A2"
      n2 = select("#", copas.sleep(0))
      log[#log + 1] = "A3"
    end)
    copas.addthread(function()
      for i = 1, 3 do
        log[#log + 1] = "B" .. i
        copas.pause(0)
      end
    end)
    copas.loop()
    assert.same({ "A1", "B1", "A2", "B2", "A3", "B3" }, log)
    assert.equal(0, n1)
    assert.equal(0, n2)
  end)

  it("a positive value sleeps at least that long", function()
    local wall, n
    copas.loop(function()
      local t0 = copas.gettime()
      n = select("#", copas.sleep(0.05))
      wall = copas.gettime() - t0
    end)
    assert.equal(0, n)
    assert.is_true(wall >= 0.05 - CLOCK_SLACK, "slept only " .. wall)
  end)

  it("a negative value sleeps until woken", function()
    local resumed = false
    local sleeper = copas.addthread(function()
      copas.sleep(-1)
      resumed = true
    end)
    copas.step(0)
    assert.equal(1, copas.status().inactive)
    assert.is_true(copas.finished())
    assert.is_true(copas.wakeup(sleeper))
    helpers.run(nil, 5)
    assert.is_true(resumed)
  end)
end)


describe("argument errors", function()

  before_each(function()
    copas = helpers.reload()
  end)

  -- runs fn inside a copas thread; returns pcall's results
  local function in_thread(fn)
    local res
    copas.addthread(function() res = { pcall(fn) } end)
    helpers.run(nil, 5)
    return res[1], res[2]
  end

  it("pause('x') raises naming pause and argument #1", function()
    local ok, err = in_thread(function() copas.pause("x") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'pause'", err, 1, true)
  end)

  it("pause({}) raises", function()
    local ok, err = in_thread(function() copas.pause({}) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'pause'", err, 1, true)
  end)

  it("addthread(42) raises naming addthread", function()
    local ok, err = pcall(copas.addthread, 42)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'addthread'", err, 1, true)
  end)

  it("wakeup('not a thread') raises naming wakeup", function()
    local ok, err = pcall(copas.wakeup, "not a thread")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wakeup'", err, 1, true)
  end)

  it("timeout(-1) raises naming timeout", function()
    local ok, err = in_thread(function() copas.timeout(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'timeout'", err, 1, true)
  end)

  it("timeout(0/0) raises naming timeout", function()
    local ok, err = in_thread(function() copas.timeout(0 / 0) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'timeout'", err, 1, true)
  end)

  it("timeout('x') raises naming timeout", function()
    local ok, err = in_thread(function() copas.timeout("x") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'timeout'", err, 1, true)
  end)

  it("the errors point at the caller's line", function()
    local line
    local ok, err = in_thread(function()
      line = debug.getinfo(1, "l").currentline + 1
      copas.pause("x")
    end)
    assert.is_false(ok)
    assert.matches("pause_spec.lua:" .. line .. ":", err, 1, true)
  end)
end)
