-- error handlers, gettraceback, plain yields (API.md section 4)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

local YIELD_MSG = "coroutine.yield was called without a resume first, user-code cannot yield to Copas"

local socketpair = helpers.pair

-- replaces _G.print for the duration of fn; returns the printed lines
-- (arguments joined by tabs, as print does)
local function capture_print(fn)
  local out = {}
  local old = _G.print
  _G.print = function(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(t, "\t")
  end
  local ok, err = pcall(fn)
  _G.print = old
  assert(ok, err)
  return out
end

local function first_line(s)
  return (s:match("^[^\n]*"))
end


describe("the default error handler", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("prints through the global print looked up at call time", function()
    -- print is replaced after copas was loaded
    local out = capture_print(function()
      copas.addnamedthread("failing", function() error("boom", 0) end)
      copas.loop()
    end)
    assert.equal(1, #out)
    assert.equal("boom (coroutine: failing, socket: nil)", first_line(out[1]))
    assert.matches("\nstack traceback:\n", out[1], 1, true)
  end)

  it("includes the error position and the thread's frames", function()
    local line
    local function failing_function()
      line = debug.getinfo(1, "l").currentline + 1
      error("positioned")
    end
    local out = capture_print(function()
      copas.addnamedthread("pos", function() failing_function() end)
      copas.loop()
    end)
    assert.equal(1, #out)
    assert.matches("errors_spec.lua:" .. line .. ": positioned (coroutine: pos, socket: nil)",
      first_line(out[1]), 1, true)
    assert.matches("failing_function", out[1], 1, true)
  end)

  it("uses tostring on a non-string error value", function()
    local obj = setmetatable({}, { __tostring = function() return "custom error object" end })
    local out = capture_print(function()
      copas.addnamedthread("obj", function() error(obj) end)
      copas.loop()
    end)
    assert.equal("custom error object (coroutine: obj, socket: nil)", first_line(out[1]))
  end)

  it("names the socket whose readiness resumed the thread", function()
    local a, b = socketpair()
    copas.setsocketname("the_socket", b)
    local out = capture_print(function()
      copas.addnamedthread("reader", function()
        copas.receive(b, "*l")
        error("after read", 0)
      end)
      copas.step(0)
      assert(a:send("x\n"))
      helpers.run(nil, 5)
    end)
    assert.equal(1, #out)
    assert.equal("after read (coroutine: reader, socket: the_socket)", first_line(out[1]))
    a:close()
    b:close()
  end)

  it("never stops the loop", function()
    local done = 0
    local out = capture_print(function()
      for i = 1, 3 do
        copas.addthread(function()
          copas.pause(0.01 * i)
          error("failure " .. i)
        end)
        copas.addthread(function()
          copas.pause(0.02 * i)
          done = done + 1
        end)
      end
      copas.loop()
    end)
    assert.equal(3, #out)
    assert.equal(3, done)
  end)
end)


describe("copas.seterrorhandler()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("sets the handler of the calling thread; it gets the raw error, the thread and the socket", function()
    local errobj = { code = 42 }
    local got, co
    local out = capture_print(function()
      co = copas.addthread(function()
        copas.seterrorhandler(function(...)
          got = { n = select("#", ...), ... }
        end)
        copas.pause(0)
        error(errobj)
      end)
      copas.loop()
    end)
    assert.same({}, out)                  -- the default handler did not run
    assert.equal(3, got.n)
    assert.equal(errobj, got[1])
    assert.equal(co, got[2])
    assert.is_nil(got[3])
    assert.equal("dead", coroutine.status(co))
    -- the dead coroutine's stack is still there for a traceback
    assert.matches("stack traceback:", debug.traceback(co), 1, true)
  end)

  it("passes the socket whose readiness resumed the thread", function()
    local a, b = socketpair()
    local got
    copas.addthread(function()
      copas.seterrorhandler(function(_, _, skt) got = skt end)
      copas.receive(b, "*l")
      error("x")
    end)
    copas.step(0)
    assert(a:send("line\n"))
    helpers.run(nil, 5)
    assert.equal(b, got)
    a:close()
    b:close()
  end)

  it("affects only the calling thread", function()
    local mine = 0
    local out = capture_print(function()
      copas.addthread(function()
        copas.seterrorhandler(function() mine = mine + 1 end)
        error("handled")
      end)
      copas.addnamedthread("other", function() error("printed", 0) end)
      copas.loop()
    end)
    assert.equal(1, mine)
    assert.equal(1, #out)
    assert.equal("printed (coroutine: other, socket: nil)", first_line(out[1]))
  end)

  it("with nil clears the thread's handler", function()
    local mine = 0
    local out = capture_print(function()
      copas.addnamedthread("cleared", function()
        copas.seterrorhandler(function() mine = mine + 1 end)
        copas.seterrorhandler(nil)
        error("to default", 0)
      end)
      copas.loop()
    end)
    assert.equal(0, mine)
    assert.equal(1, #out)
    assert.equal("to default (coroutine: cleared, socket: nil)", first_line(out[1]))
  end)

  it("with default = true replaces the default handler", function()
    local got = {}
    local out = capture_print(function()
      copas.seterrorhandler(function(err, co) got[#got + 1] = { err, co } end, true)
      local co = copas.addthread(function() error("e1", 0) end)
      copas.loop()
      assert.same({ { "e1", co } }, got)
    end)
    assert.same({}, out)
  end)

  it("a thread's own handler wins over a replaced default", function()
    local default_calls, own_calls = 0, 0
    copas.seterrorhandler(function() default_calls = default_calls + 1 end, true)
    copas.addthread(function()
      copas.seterrorhandler(function() own_calls = own_calls + 1 end)
      error("x")
    end)
    copas.loop()
    assert.equal(0, default_calls)
    assert.equal(1, own_calls)
  end)

  it("setErrorHandler is an alias", function()
    local calls = 0
    copas.setErrorHandler(function() calls = calls + 1 end, true)
    copas.addthread(function() error("x") end)
    copas.addthread(function()
      copas.setErrorHandler(function() calls = calls + 10 end)
      error("y")
    end)
    copas.loop()
    assert.equal(11, calls)
  end)

  it("raises for a handler that is not a function or nil", function()
    local ok, err = pcall(copas.seterrorhandler, 42)
    assert.is_false(ok)
    assert.matches("Expected the handler to be a function, or nil", err, 1, true)
    ok, err = pcall(copas.seterrorhandler, "x", true)
    assert.is_false(ok)
    assert.matches("Expected the handler to be a function, or nil", err, 1, true)
  end)

  it("raises for a nil default handler", function()
    local ok, err = pcall(copas.seterrorhandler, nil, true)
    assert.is_false(ok)
    assert.matches("Expected the handler to be a function when setting the default", err, 1, true)
  end)

  it("reports a failing handler with 'Failed executing error handler: ' and goes on", function()
    local done = false
    local out = capture_print(function()
      copas.addthread(function()
        copas.seterrorhandler(function() error("handler broke", 0) end)
        error("original")
      end)
      copas.addthread(function()
        copas.pause(0.02)
        done = true
      end)
      copas.loop()
    end)
    assert.same({ "Failed executing error handler: handler broke" }, out)
    assert.is_true(done)
  end)

  it("reports a failing default handler the same way", function()
    local out = capture_print(function()
      copas.seterrorhandler(function() error("default broke", 0) end, true)
      copas.addthread(function() error("original") end)
      copas.loop()
    end)
    assert.same({ "Failed executing error handler: default broke" }, out)
  end)
end)


describe("copas.geterrorhandler()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("returns the default handler when none is set", function()
    local h = copas.geterrorhandler()
    assert.equal("function", type(h))
    local out = capture_print(function() h("msg", nil, nil) end)
    assert.equal(1, #out)
    assert.equal("msg (coroutine: nil, socket: nil)", first_line(out[1]))
  end)

  it("returns the replaced default", function()
    local function handler() end
    copas.seterrorhandler(handler, true)
    assert.equal(handler, copas.geterrorhandler())
  end)

  it("returns the calling thread's handler, or another thread's by argument", function()
    local function own() end
    local function default() end
    local seen_inside, co
    copas.seterrorhandler(default, true)
    co = copas.addthread(function()
      copas.seterrorhandler(own)
      seen_inside = copas.geterrorhandler()
      copas.pauseforever()
    end)
    local other = copas.addthread(function() copas.pauseforever() end)
    copas.step(0)
    assert.equal(own, seen_inside)
    assert.equal(own, copas.geterrorhandler(co))
    assert.equal(default, copas.geterrorhandler(other))
    copas.removeall()
  end)
end)


describe("copas.gettraceback()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  it("formats '<msg> (coroutine: <name>, socket: <name>)' plus the thread's traceback", function()
    local a, b = socketpair()
    copas.setsocketname("sock", a)
    local co = coroutine.create(function() coroutine.yield() end)
    coroutine.resume(co)
    copas.setthreadname("worker", co)
    local tb = copas.gettraceback("oops", co, a)
    local lines = {}
    for l in tb:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("oops (coroutine: worker, socket: sock)", lines[1])
    assert.equal("stack traceback:", lines[2])
    assert.equal(debug.traceback(co, "x"):gsub("^x\n", ""), (tb:gsub("^[^\n]*\n", "")))
    a:close()
    b:close()
  end)

  it("uses the default names and the literal nil", function()
    local co = coroutine.create(function() end)
    assert.equal(("m (coroutine: %s, socket: nil)"):format(tostring(co)),
      first_line(copas.gettraceback("m", co)))
    assert.equal("m (coroutine: nil, socket: nil)", first_line(copas.gettraceback("m")))
    local s = socket.tcp()
    assert.equal(("m (coroutine: nil, socket: %s)"):format(tostring(s)),
      first_line(copas.gettraceback("m", nil, s)))
    s:close()
  end)

  it("passes msg through tostring", function()
    assert.equal("42 (coroutine: nil, socket: nil)", first_line(copas.gettraceback(42)))
  end)

  it("drops an empty or nil message without shifting the arguments", function()
    local co = coroutine.create(function() end)
    copas.setthreadname("named", co)
    assert.equal("(coroutine: named, socket: nil)", first_line(copas.gettraceback(nil, co)))
    assert.equal("(coroutine: named, socket: nil)", first_line(copas.gettraceback("", co)))
    assert.equal("(coroutine: nil, socket: nil)", first_line(copas.gettraceback()))
  end)

  it("shows the caller's stack when co is not a coroutine", function()
    local function some_caller_function()
      local tb = copas.gettraceback("here")   -- not a tail call: keep the frame
      return tb
    end
    local tb = some_caller_function()
    assert.matches("\nstack traceback:\n", tb, 1, true)
    assert.matches("some_caller_function", tb, 1, true)
  end)
end)


describe("a thread doing a plain coroutine.yield()", function()

  before_each(function()
    copas = helpers.reload()
  end)

  for _, values in ipairs { {}, { "some", "values" } } do
    it("is reported as failed and abandoned; the loop goes on (" .. #values .. " values)", function()
      local got, after, other_done = nil, false, false
      local co = copas.addthread(function()
        copas.seterrorhandler(function(err, c, skt) got = { err = err, co = c, skt = skt } end)
        coroutine.yield((table.unpack or unpack)(values))
        after = true
      end)
      copas.addthread(function()
        copas.pause(0.02)
        other_done = true
      end)
      helpers.run(nil, 5)
      assert.is_not_nil(got)
      assert.equal(YIELD_MSG, got.err)
      assert.equal(co, got.co)
      assert.is_false(after)
      assert.is_true(other_done)
    end)
  end

  it("is printed by the default handler with the exact message", function()
    local out = capture_print(function()
      copas.addnamedthread("yielder", function() coroutine.yield() end)
      helpers.run(nil, 5)
    end)
    assert.equal(1, #out)
    assert.equal(YIELD_MSG .. " (coroutine: yielder, socket: nil)", first_line(out[1]))
  end)
end)
