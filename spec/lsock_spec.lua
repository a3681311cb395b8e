-- copas.receive and copas.send on LuaSocket TCP clients, which the core
-- (Lua 5.3 and later) serves in place instead of calling the object's
-- methods: every result, the bytes on the wire and the byte counters must
-- be those of the methods themselves. Each case runs the same steps over
-- two connections fed the same bytes: one through copas, one through the
-- LuaSocket methods with a blocking timeout, and compares.
local helpers = require "spec.helpers"

local copas
local errors

local pair = helpers.pair

-- Lua 5.1 and LuaJIT keep the Lua functions, which call the methods
local in_core = _VERSION ~= "Lua 5.1" and _VERSION ~= "Lua 5.2" and rawget(_G, "jit") == nil

local function run(fn, timeout)
  helpers.run_strict(errors, fn, timeout)
end

-- counts the calls of the class's receive and send methods (n.calls)
-- until the end of the test
local function count_calls(sock)
  local index = getmetatable(sock).__index
  local receive, send = index.receive, index.send
  local n = { calls = 0 }
  index.receive = function(...) n.calls = n.calls + 1 return receive(...) end
  index.send = function(...) n.calls = n.calls + 1 return send(...) end
  finally(function() index.receive, index.send = receive, send end)
  return n
end

-- the core learns the class of LuaSocket's TCP clients the first time it
-- waits on one; until then it calls the methods. Run in a copas thread.
local function learn_class()
  local a, b = pair()
  copas.addthread(function() copas.pause(0.01) assert(copas.send(b, "x")) end)
  assert(copas.receive(a, 1) == "x")
  a:close() b:close()
end

-- the three results, numbers tagged with their subtype where Lua has one
local function results(...)
  local r = { n = 3, ... }
  for i = 1, 3 do
    if type(r[i]) == "number" and math.type then
      r[i] = math.type(r[i]) .. ":" .. tostring(r[i])
    end
  end
  return r
end

-- writes all of `data` on a blocking socket
local function feed(sock, data)
  sock:settimeout(5)
  assert(sock:send(data) == #data)
end

-- reads everything up to the peer's close
local function drain(sock)
  sock:settimeout(5)
  local data, err, partial = sock:receive("*a")
  assert(data, err)
  return data .. (partial or "")
end

-- a line longer than LuaSocket's 8 KiB buffer, a '\r' on each side of a
-- buffer boundary
local LONG = ("x"):rep(8190) .. "\r\r" .. ("y"):rep(9000) .. "\r" .. ("z"):rep(100)

-- the bytes the peer sends before it closes, and the receives made of them
local STREAM = "one\r\ntwo\rthree\r\n\n\r\n" .. LONG .. "\n" .. "after\n"
  .. "12345678901234567890" .. ("b"):rep(30000) .. "more\n" .. "tail\r"
local STEPS = {
  { nil }, { nil }, { nil }, { nil },     -- "one", "twothree", "", ""
  { nil }, { nil, "pre-" },               -- the long line; a prefix
  { 5 }, { 5, "ab" }, { 2, "abc" },       -- the count includes the prefix
  { 0 }, { 0, "p" }, { 3.7 }, { 1 },
  { 30000 }, { "*l" },
  { nil },                                -- the peer closed: the partial line
  { nil, "p" }, { 4 }, { 4, "xy" }, { 2, "xyz" }, { 0 }, { 0, "p" },
}

describe("copas.receive() on a LuaSocket TCP client", function()
  before_each(function()
    copas, errors = helpers.reload_strict()
  end)

  it("returns what the receive method returns, step by step, and counts the same bytes", function()
    local a1, b1 = pair()
    local a2, b2 = pair()
    feed(b1, STREAM) b1:close()
    feed(b2, STREAM) b2:close()
    local got, n, calls = {}, count_calls(a1), nil
    run(function()
      learn_class()
      assert(copas.send(a1, ""))                -- copas knows a1 from here on
      local before = n.calls
      for i, step in ipairs(STEPS) do
        got[i] = results(copas.receive(a1, step[1], step[2]))
      end
      calls = n.calls - before
    end)
    if in_core then assert.equal(0, calls) end
    a2:settimeout(5)
    local want = {}
    for i, step in ipairs(STEPS) do
      want[i] = results(a2:receive(step[1], step[2]))
    end
    assert.same(want, got)
    -- a few by hand, so that both cannot be wrong the same way
    assert.same({ n = 3, "twothree" }, got[2])
    assert.equal((LONG:gsub("\r", "")), got[5][1])
    assert.same({ n = 3, "ab678" }, got[8])
    assert.same({ n = 3, "abc" }, got[9])
    assert.same({ n = 3, nil, "closed", "tail" }, got[16])
    assert.same({ n = 3, nil, "closed", "xy" }, got[19])
    local r1, s1 = a1:getstats()
    local r2, s2 = a2:getstats()
    assert.same({ r2, s2 }, { r1, s1 })
    assert.equal(#STREAM, r1)
    a1:close() a2:close()
  end)

  it("returns lines from the buffer without reading the socket, then waits for more", function()
    local a, b = pair()
    local got = {}
    run(function()
      copas.addthread(function()
        copas.send(b, "one\ntwo\nthr")
        copas.pause(0.02)
        copas.send(b, "ee\r\nfour")
        copas.pause(0.02)
        b:close()
      end)
      for i = 1, 4 do got[i] = results(copas.receive(a)) end
    end)
    a:close()
    assert.same({ { n = 3, "one" }, { n = 3, "two" }, { n = 3, "three" }, { n = 3, nil, "closed", "four" } }, got)
  end)

  it("refuses a prefix that is not a string, as the method does", function()
    local a, b = pair()
    local ok, err
    run(function()
      assert(copas.send(b, "x\n"))
      assert(copas.send(a, ""))
      ok, err = pcall(copas.receive, a, nil, {})
    end)
    a:close() b:close()
    assert.is_false(ok)
    assert.matches("bad argument", tostring(err))
  end)
end)

describe("copas.send() on a LuaSocket TCP client", function()
  before_each(function()
    copas, errors = helpers.reload_strict()
  end)

  local DATA = "0123456789abcdef"
  local RANGES = {
    {}, { 3 }, { 3, 5 }, { -3 }, { -5, -2 }, { 0 }, { 1, 100 }, { -100, 4 },
    { 10, 2 }, { 2.5, 7.9 }, { 17 }, { 16, 16 }, { nil, 3 },
  }

  it("returns what the send method returns for every range, and sends the same bytes", function()
    local a1, b1 = pair()
    local a2, b2 = pair()
    local got, n, calls = {}, count_calls(a1), nil
    run(function()
      learn_class()
      assert(copas.send(a1, ""))
      local before = n.calls
      for i, r in ipairs(RANGES) do
        got[i] = results(copas.send(a1, DATA, r[1], r[2]))
      end
      assert(copas.send(a1, ("s"):rep(100000)))   -- more than one 8 KiB step
      calls = n.calls - before
    end)
    if in_core then assert.equal(0, calls) end
    a2:settimeout(5)
    local want = {}
    assert(a2:send(""))
    for i, r in ipairs(RANGES) do
      want[i] = results(a2:send(DATA, r[1], r[2]))
    end
    assert(a2:send(("s"):rep(100000)))
    local r1, s1 = a1:getstats()
    local r2, s2 = a2:getstats()
    a1:close() a2:close()
    assert.same(want, got)
    assert.same({ r2, s2 }, { r1, s1 })
    local sent = drain(b1)
    assert.equal(drain(b2), sent)
    assert.equal(s1, #sent)
    assert.equal("234", sent:sub(1 + 16 + 14, 16 + 14 + 3))    -- the range 3..5
    b1:close() b2:close()
  end)
end)

describe("the core's receive and send on a LuaSocket TCP client", function()
  before_each(function()
    copas, errors = helpers.reload_strict()
  end)

  it("do not call the methods while the socket's LuaSocket timeout is zero", function()
    if not in_core then pending("the Lua functions call the methods") return end
    local a, b = pair()
    local n, calls = count_calls(a), nil
    run(function()
      learn_class()
      assert(copas.send(a, ""))
      assert(copas.send(b, ""))
      local before = n.calls
      assert.equal(5, copas.send(a, "ping\n"))
      assert.equal("ping", copas.receive(b))
      assert.equal(4, copas.send(b, "pong"))
      assert.equal("po", copas.receive(a, 2))
      assert.equal("ng", copas.receive(a, 2))
      calls = n.calls - before
    end)
    a:close() b:close()
    assert.equal(0, calls)
  end)

  it("call the methods once the socket's own timeout was set to something else", function()
    local a, b = pair()
    local n, calls = count_calls(a), nil
    run(function()
      learn_class()
      assert(copas.send(a, ""))
      assert(copas.send(b, "line\n"))
      a:settimeout(1)                             -- LuaSocket's, not copas's
      local before = n.calls
      assert.equal("line", copas.receive(a))
      assert.equal(3, copas.send(a, "abc"))
      calls = n.calls - before
      assert.equal("abc", copas.receive(b, 3))
    end)
    a:close() b:close()
    assert.equal(2, calls)
  end)
end)
