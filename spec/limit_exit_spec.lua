-- copas.limit sets torn down with the interpreter (API.md section 16).
-- When a program ends while a task of a set still sleeps and other threads
-- wait() for the set, closing the Lua state collects the set's handle and
-- then the loop, which drops the task; that wakes the joiners. The set must
-- outlive that wake-up (found by fuzz/fuzz_core.c: it was freed twice).

-- the interpreter running this spec (lowest index of `arg`)
local function interpreter()
  local i = 0
  while arg and arg[i - 1] ~= nil do i = i - 1 end
  return (arg and i < 0) and arg[i] or "lua"
end

-- runs `code` in a fresh interpreter with this process's module paths;
-- returns its combined output and its exit status
local function run_lua(code)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(code)
  f:close()
  local guard = ""
  local r = os.execute("command -v timeout >/dev/null 2>&1")
  if r == true or r == 0 then guard = "timeout 30 " end
  local p = assert(io.popen("(" .. guard .. interpreter() .. " " .. name .. ") 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  os.remove(name)
  local status = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), status
end


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
