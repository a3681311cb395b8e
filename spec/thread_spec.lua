-- addthread / addnamedthread / removethread / removeall / cancelall
-- (API.md sections 1, 3 and 9)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

local socketpair = helpers.pair

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local function weak_count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end


describe("copas.addthread()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("returns a coroutine and never runs fn before returning", function()
    local ran = false
    local co = copas.addthread(function() ran = true end)
    assert.equal("thread", type(co))
    assert.is_false(ran)
    copas.loop()
    assert.is_true(ran)
  end)

  it("does not run fn inside addthread when called from a thread", function()
    local log = {}
    copas.loop(function()
      copas.addthread(function() log[#log + 1] = "child" end)
      log[#log + 1] = "parent after addthread"
    end)
    assert.same({ "parent after addthread", "child" }, log)
  end)

  it("keeps the arguments, including nils", function()
    local n, args
    copas.addthread(function(...)
      n = select("#", ...)
      args = { ... }
    end, 1, nil, "three", nil)
    copas.loop()
    assert.equal(4, n)
    assert.equal(1, args[1])
    assert.is_nil(args[2])
    assert.equal("three", args[3])
    assert.is_nil(args[4])
  end)

  it("passes zero arguments as zero", function()
    local n
    copas.addthread(function(...) n = select("#", ...) end)
    copas.loop()
    assert.equal(0, n)
  end)

  it("starts threads created in one round in creation order", function()
    local order = {}
    for i = 1, 10 do
      copas.addthread(function() order[#order + 1] = i end)
    end
    copas.loop()
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order)
  end)

  it("starts threads created by a thread in creation order, after the creator yields", function()
    local order = {}
    copas.loop(function()
      for i = 1, 3 do
        copas.addthread(function() order[#order + 1] = "child" .. i end)
      end
      order[#order + 1] = "creator"
    end)
    assert.same({ "creator", "child1", "child2", "child3" }, order)
  end)

  it("resumes runnable threads in FIFO order of becoming runnable", function()
    local order = {}
    local cos = {}
    for i = 1, 3 do
      cos[i] = copas.addthread(function()
        copas.pauseforever()
        order[#order + 1] = i
      end)
    end
    copas.addthread(function()
      copas.pause(0)           -- the sleepers are suspended by now
      copas.wakeup(cos[3])
      copas.wakeup(cos[1])
      copas.wakeup(cos[2])
    end)
    copas.loop()
    assert.same({ 3, 1, 2 }, order)
  end)

  it("discards the return value of fn", function()
    copas.addthread(function() return 1, 2, 3 end)
    assert.has_no.errors(function() copas.loop() end)
  end)

  it("gives the thread the default name tostring(co)", function()
    local co = copas.addthread(function() end)
    assert.equal(tostring(co), copas.getthreadname(co))
    copas.loop()
  end)
end)


describe("copas.addnamedthread()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("names the thread and keeps the arguments (name, fn, ...)", function()
    local name, n, a, c
    local co = copas.addnamedthread("worker", function(x, y, z)
      name = copas.getthreadname()
      n = select("#", x, y, z)
      a, c = x, z
    end, "a", nil, "c")
    assert.equal("worker", copas.getthreadname(co))
    copas.loop()
    assert.equal("worker", name)
    assert.equal(3, n)
    assert.equal("a", a)
    assert.equal("c", c)
  end)

  it("accepts the legacy order (fn, name, ...)", function()
    local name, arg1
    local co = copas.addnamedthread(function(x)
      name = copas.getthreadname()
      arg1 = x
    end, "legacy", 42)
    assert.equal("legacy", copas.getthreadname(co))
    copas.loop()
    assert.equal("legacy", name)
    assert.equal(42, arg1)
  end)

  it("accepts a nil name (default name)", function()
    local co = copas.addnamedthread(nil, function() end)
    assert.equal(tostring(co), copas.getthreadname(co))
    copas.loop()
  end)

  it("does not run fn before returning", function()
    local ran = false
    copas.addnamedthread("x", function() ran = true end)
    assert.is_false(ran)
    copas.loop()
    assert.is_true(ran)
  end)
end)


describe("copas.removethread()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("drops a runnable thread before it ever runs", function()
    local ran = false
    local co = copas.addthread(function() ran = true end)
    copas.removethread(co)
    assert.is_true(copas.finished())
    copas.loop()
    assert.is_false(ran)
  end)

  it("drops a sleeping thread at once", function()
    local resumed = false
    local co = copas.addthread(function()
      copas.pause(0.05)
      resumed = true
    end)
    copas.step(0)
    assert.equal(1, copas.status().timer)
    copas.removethread(co)
    assert.equal(0, copas.status().timer)
    assert.is_true(copas.finished())
    copas.loop()
    assert.is_false(resumed)
  end)

  it("drops a thread in pauseforever; wakeup then finds nothing", function()
    local resumed = false
    local co = copas.addthread(function()
      copas.pauseforever()
      resumed = true
    end)
    copas.step(0)
    assert.equal(1, copas.status().inactive)
    copas.removethread(co)
    assert.equal(0, copas.status().inactive)
    local ok, err = copas.wakeup(co)
    assert.is_nil(ok)
    assert.equal("not sleeping", err)
    copas.loop()
    assert.is_false(resumed)
  end)

  it("drops a thread waiting on a socket at once, and the data goes to the next reader", function()
    local a, b = socketpair()
    local first_resumed = false
    local co = copas.addthread(function()
      copas.receive(b, "*l")
      first_resumed = true
    end)
    copas.step(0)
    assert.equal(1, copas.status().read)
    assert.is_false(copas.finished())
    copas.removethread(co)
    assert.equal(0, copas.status().read)
    assert.is_true(copas.finished())
    local got
    copas.addthread(function() got = copas.receive(b, "*l") end)
    copas.step(0)
    assert(a:send("line\n"))
    helpers.run(nil, 5)
    assert.equal("line", got)
    assert.is_false(first_resumed)
    a:close()
    b:close()
  end)

  it("drops the running thread at its next suspension; the call itself returns", function()
    local returned, resumed = false, false
    copas.addthread(function()
      copas.removethread(coroutine.running())
      returned = true
      copas.pause(0)
      resumed = true
    end)
    copas.loop()
    assert.is_true(returned)
    assert.is_false(resumed)
  end)

  it("ignores non-copas coroutines, dead threads and nil", function()
    local foreign = coroutine.create(function() end)
    local dead = copas.addthread(function() end)
    copas.loop()
    assert.equal("dead", coroutine.status(dead))
    assert.has_no.errors(function()
      copas.removethread(foreign)
      copas.removethread(dead)
      copas.removethread(nil)
      copas.removethread()
    end)
    assert.equal("suspended", coroutine.status(foreign))
  end)

  it("does not call the error handler of the removed thread", function()
    local called = false
    copas.seterrorhandler(function() called = true end, true)
    local co = copas.addthread(function()
      copas.seterrorhandler(function() called = true end)
      copas.pause(0.05)
      error("should never run")
    end)
    copas.step(0)
    copas.removethread(co)
    copas.loop()
    assert.is_false(called)
  end)

  describe("leaves the coroutine collectable", function()
    local function check(start)
      local weak = setmetatable({}, { __mode = "k" })
      do
        local co = start()
        weak[co] = true
        copas.step(0)
        copas.removethread(co)
      end
      full_gc()
      assert.equal(0, weak_count(weak))
    end

    it("when it was runnable", function()
      local weak = setmetatable({}, { __mode = "k" })
      do
        local co = copas.addthread(function() end)
        weak[co] = true
        copas.removethread(co)
      end
      full_gc()
      assert.equal(0, weak_count(weak))
    end)

    it("when it was sleeping", function()
      check(function() return copas.addthread(function() copas.pause(10) end) end)
    end)

    it("when it was in pauseforever", function()
      check(function() return copas.addthread(function() copas.pauseforever() end) end)
    end)

    it("when it was waiting on a socket", function()
      local a, b = socketpair()
      check(function() return copas.addthread(function() copas.receive(b) end) end)
      a:close()
      b:close()
    end)

    it("when it had an armed copas.timeout", function()
      check(function()
        return copas.addthread(function()
          copas.timeout(10, function() end)
          copas.pauseforever()
        end)
      end)
    end)
  end)

  it("leaves finished threads and threads abandoned by the loop collectable", function()
    local weak = setmetatable({}, { __mode = "k" })
    do
      weak[copas.addthread(function() end)] = true
      weak[copas.addthread(function() copas.pauseforever() end)] = true
    end
    copas.loop()
    full_gc()
    assert.equal(0, weak_count(weak))
  end)
end)


describe("copas.removeall()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("drops every kind of thread, closes waited-on sockets; a fresh loop works", function()
    local a, b = socketpair()
    local server = assert(socket.bind("127.0.0.1", 0))
    copas.addserver(server, function() end)
    local resumed = {}
    local sleeper = copas.addthread(function() copas.pause(10); resumed.sleeper = true end)
    copas.addthread(function() copas.pauseforever(); resumed.forever = true end)
    copas.addthread(function() copas.receive(b); resumed.reader = true end)
    copas.addthread(function()
      copas.timeout(10, function() resumed.timeout_cb = true end)
      copas.pauseforever()
      resumed.armed = true
    end)
    copas.step(0)
    copas.addthread(function() resumed.ready = true end)
    local st = copas.status()
    assert.equal(2, st.read)              -- the server and the reader
    assert.equal(1, st.timer)
    assert.equal(2, st.inactive)
    assert.equal(1, st.timeout)
    assert.equal(1, st.active)

    assert.is_true(copas.removeall())
    st = copas.status()
    assert.same({ 0, 0, 0, 0, 0, 0 },
      { st.read, st.write, st.active, st.timer, st.inactive, st.timeout })
    assert.is_true(copas.finished())
    assert.is_false(copas.exiting())
    -- the socket a thread waited on was closed, the server too
    assert.equal(-1, b:getfd())           -- LuaSocket's mark of a closed socket
    assert.equal(-1, server:getfd())
    assert.equal("suspended", coroutine.status(sleeper))

    local fresh = false
    copas.loop(function() copas.pause(0.01); fresh = true end)
    assert.is_true(fresh)
    assert.same({}, resumed)
    a:close()
  end)

  it("can be called repeatedly and before any loop", function()
    assert.is_true(copas.removeall())
    assert.is_true(copas.removeall())
    assert.is_true(copas.finished())
  end)

  it("releases the dropped coroutines", function()
    local weak = setmetatable({}, { __mode = "k" })
    do
      weak[copas.addthread(function() copas.pause(10) end)] = true
      weak[copas.addthread(function() copas.pauseforever() end)] = true
      weak[copas.addthread(function() end)] = true
    end
    copas.step(0)
    copas.removeall()
    full_gc()
    assert.equal(0, weak_count(weak))
  end)

  it("inside a thread: drops the others, the caller goes on and may add work", function()
    local log = {}
    copas.addthread(function() copas.pause(10); log[#log + 1] = "sleeper" end)
    copas.addthread(function() copas.pauseforever(); log[#log + 1] = "forever" end)
    copas.addthread(function()
      copas.pause(0.01)
      assert(copas.removeall())
      log[#log + 1] = "caller"
      copas.addthread(function()
        copas.pause(0.01)
        log[#log + 1] = "new work"
      end)
      copas.pause(0.01)
      log[#log + 1] = "caller again"
    end)
    helpers.run(nil, 5)
    assert.same({ "caller", "caller again", "new work" }, log)
  end)

  it("inside a thread: the loop ends at its next check when nothing new was added", function()
    local sleeper_resumed = false
    copas.addthread(function() copas.pause(3600); sleeper_resumed = true end)
    copas.addthread(function()
      copas.pause(0.01)
      copas.removeall()
    end)
    helpers.run(nil, 5)
    assert.is_false(sleeper_resumed)
  end)

  it("inside a copas.timeout callback", function()
    local log = {}
    copas.addthread(function() copas.pause(3600); log[#log + 1] = "sleeper" end)
    copas.addthread(function()
      copas.timeout(0.02, function()
        log[#log + 1] = "callback"
        copas.removeall()
      end)
      copas.pauseforever()
      log[#log + 1] = "armed thread"
    end)
    helpers.run(nil, 5)
    assert.same({ "callback" }, log)
    assert.equal(0, copas.gettimeouts())
  end)

  it("cancels timeouts so no callback runs afterwards", function()
    local fired = false
    copas.addthread(function()
      copas.timeout(0.02, function() fired = true end)
      copas.pause(10)
    end)
    copas.step(0)
    copas.removeall()
    copas.loop(function() copas.pause(0.1) end)
    assert.is_false(fired)
  end)
end)


describe("copas.cancelall()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("ends a running loop promptly; a second loop runs new work", function()
    local a, b = socketpair()
    local server = assert(socket.bind("127.0.0.1", 0))
    copas.addserver(server, function() end)
    local resumed = {}
    copas.addthread(function() copas.pause(3600); resumed.sleeper = true end)
    copas.addthread(function() copas.receive(b); resumed.reader = true end)
    copas.addthread(function()
      copas.pause(0.1)
      copas.cancelall()
      resumed.canceller = true
    end)
    helpers.run(nil, 5)
    assert.same({ canceller = true }, resumed)
    assert.is_true(copas.exiting())

    local done = false
    helpers.run(function()
      copas.pause(0.01)
      done = true
    end, 5)
    assert.is_true(done)
    a:close()
  end)
end)
