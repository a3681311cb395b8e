-- copas.loop / step / finished / exit / exiting / waitforexit (API.md section 2)
local helpers = require "spec.helpers"
local run_lua = helpers.run_lua
local socket = require "socket"

local copas

local socketpair = helpers.pair

describe("copas.loop()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("runs an init function as a thread named 'copas_initializer'", function()
    local name, co
    copas.loop(function()
      name = copas.getthreadname()
      co = coroutine.running()
    end)
    assert.equal("copas_initializer", name)
    assert.equal("thread", type(co))
    assert.equal("copas_initializer", copas.getthreadname(co))
  end)

  it("is also reached by calling the module table", function()
    local ran = false
    copas(function() ran = copas.running end)
    assert.is_true(ran)
    assert.is_false(copas.running)
  end)

  it("returns nothing", function()
    assert.equal(0, select("#", copas.loop(function() end)))
  end)

  it("sets copas.running only while it runs", function()
    local inside
    assert.is_false(copas.running)
    copas.addthread(function() inside = copas.running end)
    copas.loop()
    assert.is_true(inside)
    assert.is_false(copas.running)
  end)

  it("takes a timeout as the first argument when no function is given", function()
    local done = false
    copas.addthread(function()
      copas.pause(0.2)
      done = true
    end)
    copas.status(true)
    copas.loop(0.01)
    local st = copas.status()
    copas.status(false)
    assert.is_true(done)
    -- each wait was capped at 0.01 s, so 0.2 s of sleeping took several rounds
    assert.is_true(st.steps >= 3, "only " .. tostring(st.steps) .. " steps")
  end)

  it("passes the timeout after an init function to every step", function()
    local done = false
    copas.status(true)
    copas.loop(function()
      copas.pause(0.2)
      done = true
    end, 0.01)
    local st = copas.status()
    copas.status(false)
    assert.is_true(done)
    assert.is_true(st.steps >= 3, "only " .. tostring(st.steps) .. " steps")
  end)

  it("does not limit the total run time by its timeout", function()
    local elapsed
    copas.loop(function()
      local t0 = copas.gettime()
      copas.pause(0.1)
      elapsed = copas.gettime() - t0
    end, 0.01)
    assert.is_true(elapsed >= 0.1 - 1e-3, "loop ended before the pause: " .. tostring(elapsed))
  end)

  it("can be called again after it returned", function()
    local count = 0
    for i = 1, 5 do
      copas.loop(function()
        copas.pause(0)
        count = count + 1
      end)
      assert.equal(i, count)
      assert.is_false(copas.running)
    end
  end)

  it("raises when called inside a running loop, and the outer loop goes on", function()
    local ok, err
    local after = false
    copas.loop(function()
      ok, err = pcall(copas.loop)
      copas.pause(0)
      after = true
    end)
    assert.is_false(ok)
    assert.is_not_nil(err)
    assert.matches("loop", tostring(err))
    assert.is_true(after)
    assert.is_false(copas.running)
  end)

  it("keeps running after a thread raised an error", function()
    copas.seterrorhandler(function() end, true)
    local done = false
    copas.addthread(function() error("boom") end)
    copas.addthread(function()
      copas.pause(0.05)
      done = true
    end)
    copas.loop()
    assert.is_true(done)
  end)
end)


describe("copas.step()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("returns false at once when there is nothing to do", function()
    local t0 = copas.gettime()
    assert.is_false(copas.step(10))
    assert.is_true(copas.gettime() - t0 < 5, "step(10) waited for its timeout")
  end)

  it("returns false at once without a timeout when nothing can wake it", function()
    local out = run_lua([[
      local copas = require "copas"
      local r = copas.step()
      print("result:" .. tostring(r))
    ]])
    assert.matches("result:false", out, 1, true)
  end)

  it("returns false when only threads and timers were serviced", function()
    local done = false
    copas.addthread(function()
      copas.pause(0.02)
      done = true
    end)
    local results = {}
    helpers.step_until(function()
      return done
    end, 5, "sleeper never finished")
    -- step_until stepped at least once; now check return values explicitly
    copas.addthread(function() copas.pause(0.02) end)
    while not copas.finished() do
      results[#results + 1] = copas.step(1)
    end
    assert.is_true(#results >= 2)
    for i, r in ipairs(results) do
      assert.equal(false, r, "round " .. i)
    end
  end)

  it("returns true when socket readiness was processed", function()
    local a, b = socketpair()
    local got
    copas.addthread(function() got = copas.receive(b, "*l") end)
    copas.step(0)          -- the thread starts and blocks in receive
    assert.equal(1, copas.status().read)
    assert(a:send("hello\n"))
    local r = copas.step(5)
    assert.is_true(r)
    helpers.step_until(function() return got end, 5, "receive never returned")
    assert.equal("hello", got)
    a:close()
    b:close()
  end)

  it("caps its wait by the timeout", function()
    local co = copas.addthread(function() copas.pause(3600) end)
    copas.step(0)          -- the thread starts sleeping
    local t0 = copas.gettime()
    assert.is_false(copas.step(0.02))
    assert.is_true(copas.gettime() - t0 < 5, "step ignored its timeout")
    copas.removethread(co)
  end)

  it("does not touch copas.running", function()
    local seen
    copas.addthread(function() seen = copas.running end)
    helpers.step_until(function() return seen ~= nil end)
    assert.is_false(seen)
  end)

  it("does not call exit()", function()
    copas.addthread(function() end)
    helpers.step_until(function() return copas.finished() end)
    copas.step(0)
    assert.is_false(copas.exiting())
  end)
end)


describe("copas.finished()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("is true on a fresh instance", function()
    assert.is_true(copas.finished())
  end)

  it("is false while a thread is runnable", function()
    copas.addthread(function() end)
    assert.is_false(copas.finished())
    copas.step(0)
    assert.is_true(copas.finished())
  end)

  it("is false while only a sleeping thread exists", function()
    local done = false
    copas.addthread(function()
      copas.pause(0.05)
      done = true
    end)
    copas.step(0)
    assert.is_false(done)
    assert.is_false(copas.finished())
    helpers.step_until(function() return done end)
    assert.is_true(copas.finished())
  end)

  it("is true with only threads in pauseforever, which the loop abandons", function()
    local resumed = false
    local co = copas.addthread(function()
      copas.pauseforever()
      resumed = true
    end)
    copas.step(0)
    assert.is_true(copas.finished())
    copas.loop()
    assert.is_false(resumed)
    assert.equal("suspended", coroutine.status(co))
  end)

  it("is false for a pauseforever thread with an armed copas.timeout", function()
    local woken, fired = false, false
    copas.addthread(function()
      copas.timeout(0.1, function(co)
        fired = true
        copas.wakeup(co)
      end)
      copas.pauseforever()
      woken = true
    end)
    copas.step(0)
    assert.is_false(copas.finished())
    helpers.run(nil, 5)
    assert.is_true(fired)
    assert.is_true(woken)
  end)

  it("is false while a thread waits on a socket", function()
    local a, b = socketpair()
    local co = copas.addthread(function() copas.receive(b) end)
    copas.step(0)
    assert.is_false(copas.finished())
    copas.removethread(co)
    assert.is_true(copas.finished())
    a:close()
    b:close()
  end)

  it("is false while a server is registered", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    copas.addserver(server, function() end)
    assert.is_false(copas.finished())
    copas.removeserver(server)
    assert.is_true(copas.finished())
  end)

  it("does not count a thread blocked in waitforexit", function()
    copas.addthread(function() copas.waitforexit() end)
    copas.step(0)
    assert.is_true(copas.finished())
  end)
end)


describe("copas.exit(), exiting() and waitforexit()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("exiting() is false before any loop", function()
    assert.equal(false, copas.exiting())
  end)

  it("exit() before loop is allowed and cleared when loop starts", function()
    assert.has_no.errors(function() copas.exit() end)
    assert.is_true(copas.exiting())
    local seen
    copas.loop(function() seen = copas.exiting() end)
    assert.equal(false, seen)
  end)

  it("exiting() is true after loop returned until the next loop starts", function()
    copas.loop(function() end)
    assert.is_true(copas.exiting())
    local seen
    copas.loop(function() seen = copas.exiting() end)
    assert.equal(false, seen)
    assert.is_true(copas.exiting())
  end)

  it("exit() is idempotent", function()
    copas.loop(function()
      copas.exit()
      copas.exit()
      assert(copas.exiting())
    end)
    assert.is_true(copas.exiting())
  end)

  it("waitforexit() returns nothing, at once when already exiting", function()
    local n, passed
    copas.loop(function()
      copas.exit()
      n = select("#", copas.waitforexit())
      passed = true
    end)
    assert.is_true(passed)
    assert.equal(0, n)
  end)

  it("releases waitforexit threads on exit() inside the loop", function()
    local order = {}
    copas.addthread(function()
      copas.waitforexit()
      order[#order + 1] = "released:" .. tostring(copas.exiting())
    end)
    copas.addthread(function()
      copas.pause(0.01)
      order[#order + 1] = "exit"
      copas.exit()
      copas.pause(0.05)
      order[#order + 1] = "worker done"
    end)
    copas.loop()
    assert.same({ "exit", "released:true", "worker done" }, order)
  end)

  it("runs waitforexit threads after the automatic exit, and they may add work", function()
    local order = {}
    copas.addthread(function()
      copas.waitforexit()
      order[#order + 1] = "released"
      copas.addthread(function()
        copas.pause(0.05)
        order[#order + 1] = "late work done"
      end)
    end)
    copas.addthread(function()
      copas.pause(0.02)
      order[#order + 1] = "work done"
    end)
    copas.loop()
    assert.same({ "work done", "released", "late work done" }, order)
    assert.is_true(copas.exiting())
  end)

  it("releases several waitforexit threads in the order they waited", function()
    local order = {}
    for i = 1, 3 do
      copas.addthread(function()
        copas.waitforexit()
        order[#order + 1] = i
      end)
    end
    copas.loop()
    assert.same({ 1, 2, 3 }, order)
  end)
end)
