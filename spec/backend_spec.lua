-- COPAS_BACKEND: choosing the poller at run time (DESIGN.md: poller)
local helpers = require "spec.helpers"
local run_lua = helpers.run_lua

local BACKENDS = { "epoll", "poll", "select" }

-- the name of the poller a copas instance uses
local BACKEND_OF = [[
  local function backend_of(copas)
    local core = require "copas.core"
    if type(core.backend) == "string" then return core.backend end
    if type(core.backend) == "function" then return core.backend() end
    return copas._loop:backend()
  end
]]

-- a socket round trip through the poller
local ROUND_TRIP = [[
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local got
  copas.addserver(server, copas.handler(function(c)
    local line = c:receive("*l")
    c:send(line .. "!\n")
  end))
  copas.addthread(function()
    local c = copas.wrap(socket.tcp())
    assert(c:connect("127.0.0.1", port))
    c:send("ping\n")
    got = c:receive("*l")
    c:close()
    copas.removeserver(server)
  end)
  copas.loop()
]]

describe("COPAS_BACKEND", function()

  it("the running suite uses the backend it names", function()
    local copas = helpers.reload()
    local compile = loadstring or load  -- luacheck: ignore 113 (loadstring is 5.1's)
    local backend_of = assert(compile(BACKEND_OF .. " return backend_of"))()
    local wanted = os.getenv("COPAS_BACKEND")
    local name = backend_of(copas)
    assert.equal("string", type(name))
    if wanted and wanted ~= "" then
      assert.equal(wanted, name)
    end
  end)

  for _, b in ipairs(BACKENDS) do
    it("=" .. b .. " selects " .. b .. ", which serves sockets and timers", function()
      local out = run_lua(BACKEND_OF .. [[
        local copas = require "copas"
      ]] .. ROUND_TRIP .. [[
        local e
        copas.loop(function() e = copas.pause(0.02) end)
        print("BACKEND " .. backend_of(copas) .. " GOT " .. tostring(got) ..
          " PAUSE " .. tostring(e >= 0.02 - 1e-9))
      ]], "COPAS_BACKEND=" .. b)
      assert.matches("BACKEND " .. b .. " GOT ping! PAUSE true", out, 1, true)
    end)
  end

  it("an unknown value gives a clear error when copas loads", function()
    local out = run_lua([[
      local ok, err = pcall(require, "copas")
      print("OK " .. tostring(ok))
      print("ERR " .. tostring(err))
    ]], "COPAS_BACKEND=bogus")
    assert.matches("OK false", out, 1, true)
    assert.matches("ERR [^\n]*bogus", out)
    assert.matches("ERR [^\n]*COPAS_BACKEND", out)
  end)
end)


describe("the select backend", function()

  it("refuses a descriptor >= 1024 with a clear Lua error", function()
    local out = run_lua([[
      local socket = require "socket"
      local copas = require "copas"
      local keep = {}
      local high
      local tcp4 = socket.tcp4 or socket.tcp   -- socket.tcp() may open no descriptor yet
      for _ = 1, 1100 do
        local s = tcp4()
        if not s then break end
        keep[#keep + 1] = s
        if s:getfd() >= 1024 then high = s break end
      end
      if not high then print("SKIP could not open a descriptor >= 1024") os.exit(0) end
      -- a receive that has to wait on that descriptor
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      assert(high:connect("127.0.0.1", port))
      local peer = assert(server:accept())
      high:settimeout(0)
      local err
      copas.addthread(function()
        copas.seterrorhandler(function(e) err = tostring(e) end)
        local ok, e = copas.receive(high, "*l")
        if not ok then err = "returned: " .. tostring(e) end
      end)
      copas.loop()
      print("ERROR " .. tostring(err))
      -- and a server on such a descriptor
      local hs
      for _ = 1, 100 do
        hs = assert(socket.bind("127.0.0.1", 0))
        keep[#keep + 1] = hs
        if hs:getfd() >= 1024 then break end
      end
      local ok, e = pcall(copas.addserver, hs, function() end)
      print("ADDSERVER " .. tostring(ok) .. " " .. tostring(e))
      peer:close()
    ]], "ulimit -n 4096 2>/dev/null; COPAS_BACKEND=select")
    if out:match("SKIP") then
      pending(out:match("SKIP ([^\n]*)"))
      return
    end
    assert.matches("ERROR [^\n]*select", out)
    assert.matches("ERROR [^\n]*1024", out)
    assert.matches("ADDSERVER false [^\n]*select", out)
  end)
end)
