-- copas.debug.start / stop (API.md section 10)
local helpers = require "spec.helpers"
local socket = require "socket"

local copas

-- a logger collecting each call's arguments, concatenated
local function collector()
  local lines = {}
  local function logger(...)
    local t = {}
    for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
    lines[#lines + 1] = table.concat(t)
  end
  return lines, logger
end

local function contains(lines, s)
  for _, l in ipairs(lines) do
    if l == s then return true end
  end
  return false
end

describe("copas.debug", function()

  before_each(function()
    copas = helpers.reload()
  end)

  after_each(function()
    copas.debug.stop()
  end)

  it("logs resume, sleep yields and exit of a thread", function()
    local lines, logger = collector()
    copas.debug.start(logger)
    copas.addnamedthread("dbg", function() copas.pause(0.02) end)
    copas.loop()
    assert.is_true(contains(lines, "resuming 'dbg'"), table.concat(lines, "\n"))
    assert.is_true(contains(lines, "yielding 'dbg' to SLEEP for 0.02 seconds"), table.concat(lines, "\n"))
    assert.is_true(contains(lines, "exiting 'dbg'"), table.concat(lines, "\n"))
  end)

  it("logs read waits with the socket name", function()
    local server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    local a = assert(socket.connect("127.0.0.1", port))
    local b = assert(server:accept())
    server:close()
    b:settimeout(0)
    copas.setsocketname("dbgsock", b)
    local lines, logger = collector()
    copas.debug.start(logger)
    local got
    copas.addnamedthread("reader", function() got = copas.receive(b, "*l") end)
    copas.step(0)
    assert(a:send("x\n"))
    helpers.run(nil, 5)
    assert.equal("x", got)
    assert.is_true(contains(lines, "yielding 'reader' to READ on 'dbgsock'"), table.concat(lines, "\n"))
    a:close()
    b:close()
  end)

  it("logs in order: resume before yield before exit", function()
    local lines, logger = collector()
    copas.debug.start(logger)
    copas.addnamedthread("ordered", function() copas.pause(0) end)
    copas.loop()
    local pos = {}
    for _, l in ipairs(lines) do
      if l:find("'ordered'", 1, true) then pos[#pos + 1] = l:match("^%a+") end
    end
    assert.same({ "resuming", "yielding", "resuming", "exiting" }, pos)
  end)

  it("stop() ends the logging and scheduling is unaffected", function()
    local lines, logger = collector()
    copas.debug.start(logger)
    copas.debug.stop()
    local log = {}
    for _, n in ipairs { "A", "B" } do
      copas.addthread(function()
        for i = 1, 2 do
          log[#log + 1] = n .. i
          copas.pause(0)
        end
      end)
    end
    copas.loop()
    assert.same({}, lines)
    assert.same({ "A1", "B1", "A2", "B2" }, log)
  end)

  it("does not change scheduling while on", function()
    local _, logger = collector()
    copas.debug.start(logger)
    local log = {}
    for _, n in ipairs { "A", "B" } do
      copas.addthread(function()
        for i = 1, 2 do
          log[#log + 1] = n .. i
          copas.pause(0)
        end
      end)
    end
    copas.loop()
    assert.same({ "A1", "B1", "A2", "B2" }, log)
  end)

  it("defaults to the global print", function()
    local out = {}
    local old = _G.print
    _G.print = function(...)
      local t = {}
      for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end
      out[#out + 1] = table.concat(t)
    end
    local ok, err = pcall(function()
      copas.debug.start()
      copas.addnamedthread("printed", function() end)
      copas.loop()
      copas.debug.stop()
    end)
    _G.print = old
    assert(ok, err)
    -- print separates its arguments with tabs; compare with those removed
    local found = false
    for _, l in ipairs(out) do
      if l:gsub("\t", "") == "exiting 'printed'" then found = true end
    end
    assert.is_true(found, table.concat(out, "\n"))
  end)
end)
