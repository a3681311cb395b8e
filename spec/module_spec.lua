-- module loading: fresh instances, lazy submodules, meta fields, no LuaSocket
-- (API.md section 0)
local helpers = require "spec.helpers"
local run_lua = helpers.run_lua

local SUBMODULES = { "http", "ftp", "smtp", "timer", "lock", "semaphore", "queue", "future", "limit" }


describe("loading copas", function()

  it("package.loaded.copas = nil gives a fresh instance", function()
    local old = helpers.reload()
    old.seterrorhandler(function() end, true)
    local old_co = old.addthread(function() error("old instance thread ran") end)
    old.addthread(function() old.pause(10) end)
    assert.is_false(old.finished())

    package.loaded.copas = nil
    local copas = require "copas"
    assert.are_not.equal(old, copas)
    assert.is_true(copas.finished())
    local st = copas.status()
    assert.same({ 0, 0, 0, 0, 0, 0 },
      { st.read, st.write, st.active, st.timer, st.inactive, st.timeout })
    assert.same({ nil, "not sleeping" }, { copas.wakeup(old_co) })

    -- the default handler is the printing one again
    local out = {}
    local saved = _G.print
    _G.print = function(s) out[#out + 1] = s end
    local ok, err = pcall(function()
      copas.addnamedthread("fresh", function() error("new instance", 0) end)
      copas.loop()
    end)
    _G.print = saved
    assert(ok, err)
    assert.equal(1, #out)
    assert.equal("new instance (coroutine: fresh, socket: nil)", out[1]:match("^[^\n]*"))
    assert.equal("suspended", coroutine.status(old_co))
    old.removeall()
  end)

  it("has the meta fields", function()
    local copas = helpers.reload()
    assert.equal("string", type(copas._VERSION))
    assert.equal("Copas 4.11", copas._VERSION:sub(1, 10))
    assert.equal("string", type(copas._COPYRIGHT))
    assert.equal("string", type(copas._DESCRIPTION))
  end)

  it("reads unknown keys as nil", function()
    local copas = helpers.reload()
    assert.is_nil(copas.no_such_field)
    assert.is_nil(copas.Lock)
    assert.is_nil(copas.core)
  end)

  for _, name in ipairs(SUBMODULES) do
    it("loads copas." .. name .. " lazily, the same table as require", function()
      local copas = helpers.reload()
      assert.is_nil(rawget(copas, name))
      assert.is_nil(package.loaded["copas." .. name])
      local mod = copas[name]
      assert.is_not_nil(mod)
      assert.equal(mod, require("copas." .. name))
      assert.equal(mod, rawget(copas, name))
    end)
  end

  it("works when require 'socket' fails", function()
    local out = run_lua([[
      package.loaded.socket = nil
      package.preload.socket = function() error("LuaSocket is not installed here") end
      local copas = require "copas"
      assert(type(copas.gettime()) == "number", "gettime")
      local log = {}
      copas.loop(function()
        copas.addthread(function()
          copas.timeout(0.01, function(co) log[#log + 1] = "timeout"; copas.wakeup(co) end)
          copas.pauseforever()
          log[#log + 1] = "woken"
        end)
        -- far longer than the timeout: the order must not depend on how
        -- fast the first round runs (under valgrind it is slow)
        local e = copas.pause(0.3)
        log[#log + 1] = e >= 0.3 - 1e-9 and "paused" or "early"
      end)
      print("RESULT " .. table.concat(log, ","))
    ]])
    assert.matches("RESULT timeout,woken,paused", out, 1, true)
  end)
end)
