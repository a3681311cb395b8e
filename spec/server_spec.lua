-- TCP servers (API.md section 5): addserver, accepted clients, names,
-- removeserver, autoclose, copas.handler, failing handlers, and the line
-- echo example.
local helpers = require "spec.helpers"
local socket = require "socket"

local copas
local errors

local function fresh_copas()
  copas, errors = helpers.reload_strict()
end

local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

local listen = helpers.listen

-- a blocking client connected from the main chunk (connect completes in
-- the kernel against a listening socket); LuaSocket timeout 0 afterwards
local function client_of(port, host)
  local c = assert(socket.connect(host or "127.0.0.1", port))
  c:settimeout(0)
  return c
end

local function pack(...) return { ... } end


describe("copas.addserver() with a TCP socket", function()
  before_each(fresh_copas)

  it("calls the handler with the raw accepted client", function()
    local server, port = listen()
    local got
    copas.addserver(server, function(c)
      got = { type = type(c), class = c.class, wrapped = getmetatable(c) ~= getmetatable(socket.tcp()) and
        tostring(c):find("copas wrapped", 1, true) ~= nil, line = copas.receive(c) }
    end)
    local c = client_of(port)
    c:send("hi\n")
    helpers.step_until(function() return got end, 5, "handler not called")
    c:close()
    copas.removeserver(server)
    assert.same({ type = "userdata", class = "tcp{client}", wrapped = false, line = "hi" }, got)
  end)

  it("runs the handler in the round that accepted, before other runnable threads", function()
    local server, port = listen()
    local order = {}
    copas.addserver(server, function() order[#order + 1] = "handler" end)
    local c = client_of(port)                        -- already in the accept queue
    copas.addthread(function() order[#order + 1] = "thread" end)
    copas.step(1)
    c:close()
    copas.removeserver(server)
    assert.same({ "handler", "thread" }, order)
  end)

  it("names clients '<server>:client_N' and handlers '<server>:handler_N'", function()
    local server, port = listen()
    local names = {}
    copas.addserver(server, function(c)
      names[#names + 1] = { copas.getsocketname(c), copas.getthreadname() }
    end, nil, "srv")
    local c1, c2 = client_of(port), client_of(port)
    helpers.step_until(function() return #names == 2 end, 5, "not accepted")
    c1:close() c2:close()
    copas.removeserver(server)
    assert.same({ { "srv:client_1", "srv:handler_1" }, { "srv:client_2", "srv:handler_2" } }, names)
  end)

  it("uses tostring(server) in the names when the server has no name", function()
    local server, port = listen()
    local prefix = tostring(server)
    local names
    copas.addserver(server, function(c)
      names = { copas.getsocketname(c), copas.getthreadname() }
    end)
    local c = client_of(port)
    helpers.step_until(function() return names end, 5, "not accepted")
    c:close()
    copas.removeserver(server)
    assert.same({ prefix .. ":client_1", prefix .. ":handler_1" }, names)
  end)

  it("gives clients the server's timeouts", function()
    local server, port = listen()
    local r, elapsed
    copas.addserver(server, function(c)
      local t0 = copas.gettime()
      r = pack(copas.receive(c, "*l"))
      elapsed = copas.gettime() - t0
    end, 0.2)
    local c = client_of(port)
    c:send("no line end")
    helpers.step_until(function() return r end, 5, "receive did not time out")
    c:close()
    copas.removeserver(server)
    assert.same({ nil, "timeout", "no line end" }, r)
    assert.is_true(elapsed >= 0.2)
  end)

  it("puts a bound but not listening socket into listening state", function()
    local server = socket.tcp()
    assert(server:bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local line
    copas.addserver(server, function(c) line = copas.receive(c) end)
    local c = client_of(tonumber(port))
    c:send("accepted\n")
    helpers.step_until(function() return line end, 5, "not accepted")
    c:close()
    copas.removeserver(server)
    assert.equal("accepted", line)
  end)

  it("counts as work for finished() until removed", function()
    local server = listen()
    assert.is_true(copas.finished())
    copas.addserver(server, function() end)
    assert.is_false(copas.finished())
    copas.removeserver(server)
    assert.is_true(copas.finished())
  end)

  it("accepts IPv6 clients on ::1", function()
    local ok6, server, port = pcall(listen, "::1")
    if not ok6 then pending("no IPv6 loopback") return end
    local got
    copas.addserver(server, copas.handler(function(c)
      got = { c:receive(), c:getpeername() }
    end))
    local c = client_of(port, "::1")
    c:send("six\n")
    helpers.step_until(function() return got end, 5, "not accepted")
    c:close()
    copas.removeserver(server)
    assert.same({ "six", "::1" }, { got[1], got[2] })
  end)
end)


describe("copas.removeserver()", function()
  before_each(fresh_copas)

  it("with keep_open returns true and the socket can be added again, three times", function()
    local server, port = listen()
    local served = 0
    local function handler(c)
      local line = copas.receive(c)
      if line then served = served + 1 end
    end
    for cycle = 1, 3 do
      copas.addserver(server, handler)
      local c = client_of(port)
      c:send("cycle " .. cycle .. "\n")
      helpers.step_until(function() return served == cycle end, 5, "cycle " .. cycle .. " not served")
      c:close()
      assert.is_true(copas.removeserver(server, true))
      assert.is_true(copas.finished())
    end
    -- still open: a pending connection is served once the server is back
    local late = client_of(port)
    late:send("late\n")
    copas.addserver(server, handler)
    helpers.step_until(function() return served == 4 end, 5, "not served after re-adding")
    late:close()
    assert.equal(1, copas.removeserver(server))
    assert.equal(-1, server:getfd())
  end)

  it("stops accepting until the server is added again", function()
    local server, port = listen()
    local accepted = 0
    copas.addserver(server, function() accepted = accepted + 1 end)
    assert.is_true(copas.removeserver(server, true))
    local c = client_of(port)
    for _ = 1, 10 do copas.step(0.01) end
    assert.equal(0, accepted)
    copas.addserver(server, function() accepted = accepted + 1 end)
    helpers.step_until(function() return accepted == 1 end, 5, "not accepted")
    c:close()
    copas.removeserver(server)
  end)

  it("accepts a wrapped server socket", function()
    local server = listen()
    copas.addserver(copas.wrap(server), function() end)
    assert.is_false(copas.finished())
    assert.equal(1, copas.removeserver(copas.wrap(server)))
    assert.is_true(copas.finished())
  end)
end)


describe("copas.autoclose", function()
  before_each(fresh_copas)

  it("defaults to true: the client is closed when its handler ends", function()
    assert.is_true(copas.autoclose)
    local server, port = listen()
    local client_skt
    copas.addserver(server, function(c) client_skt = c end)
    local c = client_of(port)
    local r
    run(function()
      r = pack(copas.receive(c, "*l"))
      copas.removeserver(server)
    end)
    c:close()
    assert.same({ nil, "closed", "" }, r)
    assert.equal(-1, client_skt:getfd())
  end)

  it("set to false leaves the client open after the handler ends", function()
    copas.autoclose = false
    local server, port = listen()
    local kept
    copas.addserver(server, function(c) kept = c end)
    local c = client_of(port)
    local r1, r2
    run(function()
      copas.settimeout(c, 0.2)
      r1 = pack(copas.receive(c, "*l"))         -- times out: still open
      copas.send(kept, "later\n")
      r2 = pack(copas.receive(c, "*l"))
      kept:close()
      copas.removeserver(server)
    end)
    c:close()
    assert.same({ nil, "timeout", "" }, r1)
    assert.same({ "later" }, r2)
  end)

  it("closes the client of a handler that fails, and the server keeps accepting", function()
    local server, port = listen()
    local handled = 0
    copas.addserver(server, function(c)
      handled = handled + 1
      if handled == 1 then error("handler failure", 0) end
      copas.send(c, "second served\n")
    end)
    local c1 = client_of(port)
    local r1, r2
    helpers.run(function()                     -- run() would fail on the expected error
      r1 = pack(copas.receive(c1, "*l"))
      local c2 = socket.tcp()
      assert(copas.connect(c2, "127.0.0.1", port))
      r2 = pack(copas.receive(c2, "*l"))
      c2:close()
      copas.removeserver(server)
    end)
    c1:close()
    assert.same({ nil, "closed", "" }, r1)
    assert.same({ "second served" }, r2)
    assert.equal(1, #errors)
    assert.matches("^handler failure", errors[1])
    errors = {}
  end)
end)


describe("copas.handler()", function()
  before_each(fresh_copas)

  it("wraps the client and passes the handler's results through", function()
    local server, port = listen()
    local got
    local h = copas.handler(function(w, extra)
      got = { tostring(w), extra, w:receive() }
      return "result", 2
    end)
    assert.is_function(h)
    -- called directly it returns the handler's results
    local direct
    copas.addserver(server, function(c) direct = pack(h(c, "extra")) end)
    local c = client_of(port)
    c:send("line\n")
    helpers.step_until(function() return direct end, 5, "handler not called")
    c:close()
    copas.removeserver(server)
    assert.matches(" %(copas wrapped%)$", got[1])
    assert.same({ "extra", "line" }, { got[2], got[3] })
    assert.same({ "result", 2 }, direct)
  end)

  it("refuses a non-function", function()
    local ok, err = pcall(copas.handler, "nope")
    assert.is_false(ok)
    assert.matches("handler", tostring(err), 1, true)
  end)
end)


describe("examples/echo.lua", function()
  it("echoes lines until 'quit' and stops by itself after the given seconds", function()
    local lua = (rawget(_G, "jit") and "luajit") or ("lua" .. _VERSION:match("%d+%.%d+"))
    local script = "examples/echo.lua"
    local f = io.open(script)
    if not f then pending("run the specs from the repository root") return end
    f:close()
    local proc = assert(io.popen(lua .. " " .. script .. " 0 2"))
    local first = proc:read("*l")
    local port = tonumber(first and first:match("^listening on 127%.0%.0%.1:(%d+)$"))
    assert(port, "unexpected first line: " .. tostring(first))
    local c = assert(socket.connect("127.0.0.1", port))
    c:settimeout(5)
    assert(c:send("hello\nworld\n"))
    local l1, l2 = c:receive(), c:receive()
    assert(c:send("quit\n"))
    local after = pack(c:receive())
    c:close()
    local rest = proc:read("*a")
    proc:close()
    assert.equal("hello", l1)
    assert.equal("world", l2)
    assert.same({ nil, "closed" }, { after[1], after[2] })
    assert.matches("stopping after 2 s", rest, 1, true)
  end)
end)
