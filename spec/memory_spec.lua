-- Memory safety of the core at its edges: checked in every run, and
-- what `make valgrind` and `make asan` would flag if it regressed.
local helpers = require "spec.helpers"

local unpack = table.unpack or unpack  -- luacheck: ignore 143

local copas

local function numbers(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

describe("copas.addthread with many arguments", function()
  before_each(function() copas = helpers.reload() end)

  for _, n in ipairs { 19, 20, 21, 60, 200, 5000 } do
    it(("passes all %d of them to the function, in order"):format(n), function()
      local got
      copas.addthread(function(...) got = { n = select("#", ...), ... } end, unpack(numbers(n)))
      helpers.run(function() end)
      assert.is_not_nil(got, "the thread did not run")
      assert.equal(n, got.n)
      assert.same(numbers(n), { unpack(got, 1, got.n) })
    end)
  end

  it("passes them to a task of a limit.taskset too", function()
    local limit = require "copas.limit"
    local got
    helpers.run(function()
      local set = limit.new(1)
      set:addthread(function(...) got = select("#", ...) end, unpack(numbers(300)))
      set:wait()
    end)
    assert.equal(300, got)
  end)
end)
