-- copas.limit sets torn down with the interpreter (API.md section 16).
-- When a program ends while a task of a set still sleeps and other threads
-- wait() for the set, closing the Lua state collects the set's handle and
-- then the loop, which drops the task; that wakes the joiners. The set must
-- outlive that wake-up (found by fuzz/fuzz_core.c: it was freed twice).

local run_lua = require("spec.helpers").run_lua

describe("copas.limit at interpreter exit", function()

  it("ends cleanly with sleeping tasks and threads waiting on their sets", function()
    local out, status = run_lua [[
      local copas = require "copas"
      local limit = require "copas.limit"
      local sets = {}
      for k = 1, 20 do
        local set = limit.new(1)
        sets[k] = set
        copas.addthread(function() set:wait() end)
        set:addthread(function() copas.pause(60) end)
        set:addthread(function() copas.pause(60) end)
        copas.addthread(function() set:wait() end)
      end
      copas.step(0)
      copas.step(0)
      print("sleeping " .. copas.status().timer)
    ]]
    assert.equal(0, status, out)
    assert.equal("sleeping 20\n", out)
  end)
end)
