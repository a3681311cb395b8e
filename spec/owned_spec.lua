-- Sockets the core marks as its own (csrc/loop.c, Lua 5.3 and later): a
-- LuaSocket TCP client the core waited on is recognised later by its user
-- value and its address, without a table lookup. A client collected while
-- the core still knows it and a new one that gets its descriptor (and
-- perhaps its memory) must never be taken one for the other.
local helpers = require "spec.helpers"
local socket = require "socket"

local copas
local errors

local ROUNDS = 200

before_each(function()
  copas, errors = helpers.reload_strict()
end)

-- an echo server on 127.0.0.1; its handler ends at the peer's close
local function echo_server()
  local server, port = helpers.listen()
  copas.addserver(server, function(skt)
    while true do
      local line = copas.receive(skt, "*l")
      if not line then return end
      copas.send(skt, line .. "\n")
    end
  end)
  return server, port
end

describe("a TCP client the core waited on", function()
  it("is dropped and collected in its thread; each new client on its descriptor is served", function()
    local server, port = echo_server()
    local served, reused = 0, 0
    helpers.run_strict(errors, function()
      local last
      for i = 1, ROUNDS do
        -- connected before copas sees it: its first wait is the receive's,
        -- in the same run of this thread as the collection of the last one
        local skt = assert(socket.connect("127.0.0.1", port))
        if skt:getfd() == last then reused = reused + 1 end
        last = skt:getfd()
        assert(copas.send(skt, "round " .. i .. "\n"))
        if copas.receive(skt, "*l") == "round " .. i then served = served + 1 end
        skt = nil                         -- luacheck: ignore (dropped, not closed)
        collectgarbage("collect")         -- closes it: its descriptor is free
      end
      copas.removeserver(server)
    end, 30)
    assert.equal(ROUNDS, served)
    -- what this is about happened: the collected client's descriptor went
    -- to the next one (whether its memory did too is the allocator's say)
    assert.is_true(reused >= ROUNDS / 2, "descriptor reused " .. reused .. " times")
  end)

  it("keeps to a receive timeout set after it was served", function()
    local a, b = helpers.pair()
    local got = {}
    helpers.run_strict(errors, function()
      copas.addthread(function()
        for _, line in ipairs({ "one", "two" }) do
          copas.pause(0.01)
          assert(copas.send(b, line .. "\n"))
        end
      end)
      got[1] = copas.receive(a, "*l")           -- waits: the core claims a
      got[2] = copas.receive(a, "*l")           -- waits on it as its own
      copas.settimeout(a, 0.05)
      got[3], got[4] = copas.receive(a, "*l")   -- nothing comes
    end, 10)
    a:close()
    b:close()
    assert.same({ "one", "two", nil, "timeout" }, got)
  end)

  it("is closed by copas and its descriptor goes to a new client, which is served", function()
    local server, port = echo_server()
    local served = 0
    helpers.run_strict(errors, function()
      for i = 1, ROUNDS do
        local skt = socket.tcp()
        assert(copas.connect(skt, "127.0.0.1", port))
        assert(copas.send(skt, "round " .. i .. "\n"))
        if copas.receive(skt, "*l") == "round " .. i then served = served + 1 end
        copas.close(skt)
      end
      copas.removeserver(server)
    end, 30)
    assert.equal(ROUNDS, served)
  end)

  it("is served by a copas loaded after the one that waited on it", function()
    local a, b = helpers.pair()
    local got = {}
    -- each copas: one thread waits on a (the core claims it), another sends
    local function exchange(line)
      helpers.run_strict(errors, function()
        copas.addthread(function()
          copas.pause(0.01)
          assert(copas.send(b, line .. "\n"))
        end)
        got[#got + 1] = copas.receive(a, "*l")
      end, 10)
    end
    exchange("one")
    copas, errors = helpers.reload_strict()
    exchange("two")                   -- a's user value names the old loop
    a:close()
    b:close()
    assert.same({ "one", "two" }, got)
  end)
end)
