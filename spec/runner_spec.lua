-- bin/copas, the command-line runner: the script runs as a thread of the
-- Copas loop, gets its arguments, and a failing script ends the run with
-- exit code 1. Each case runs the runner as a child process on the
-- interpreter running the specs. Run from the repository root.
local process = require "spec.process"

local lua = process.lua()
local files = {}

-- writes `text` to a new temporary script
-- @return its path
local function script(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  files[#files + 1] = path
  return path
end

-- runs `bin/copas <args>`: output, exit code
local function copas_cmd(args)
  return process.spawn(lua .. " bin/copas " .. args, 30):finish()
end

describe("bin/copas", function()
  teardown(function()
    for _, path in ipairs(files) do os.remove(path) end
  end)

  it("runs the script inside the loop: it may sleep at its top level", function()
    local path = script [[
local copas = require "copas"
copas.addthread(function()
  copas.pause(0.05)
  print("thread after 0.05 s")
end)
print("running:", copas.running)
copas.sleep(0.1)
print("script after 0.1 s")
local slept = copas.pause(0.01)
print("paused:", slept > 0)
]]
    local out, code = copas_cmd(process.quote(path))
    assert.equal(0, code, out)
    assert.equal("running:\ttrue\nthread after 0.05 s\nscript after 0.1 s\npaused:\ttrue", out)
  end)

  it("runs the threads the script added to their end", function()
    local path = script [[
local copas = require "copas"
copas.addthread(function()
  copas.pause(0.1)
  print("last")
end)
print("script done")
]]
    local out, code = copas_cmd(process.quote(path))
    assert.equal(0, code, out)
    assert.equal("script done\nlast", out)
  end)

  it("passes the arguments as ... and in arg, arg[0] being the script", function()
    local path = script [[
print(select("#", ...), ...)
print(arg[0], #arg, arg[1], arg[2], arg[-1])
]]
    local out, code = copas_cmd(process.quote(path) .. " one 'two words'")
    assert.equal(0, code, out)
    assert.equal("2\tone\ttwo words\n" .. path .. "\t2\tone\ttwo words\tbin/copas", out)
  end)

  it("exits with 1, the message and a traceback when the script raises", function()
    local path = script [[
local copas = require "copas"
copas.addthread(function()
  copas.pause(5)
  print("never printed: the failure stops the loop")
end)
copas.pause(0.01)
error("boom")
]]
    local out, code = copas_cmd(process.quote(path))
    assert.equal(1, code, out)
    assert.equal("copas: " .. path .. ":7: boom", out:match("^[^\n]*"))
    assert.matches("\nstack traceback:\n", out, 1, true)
    assert.not_matches("never printed", out, 1, true)
  end)

  it("runs -e code in the loop, before the script", function()
    local path = script [[print("script", copas.running)]]
    local out, code = copas_cmd("-e 'copas.pause(0.01) print(\"e\", copas.running)' "
      .. process.quote(path))
    assert.equal(0, code, out)
    assert.equal("e\ttrue\nscript\ttrue", out)
  end)

  it("exits with 1 when the script cannot be loaded", function()
    local path = script "this is not Lua"
    local out, code = copas_cmd(process.quote(path))
    assert.equal(1, code, out)
    assert.matches("^copas: " .. path:gsub("%p", "%%%0") .. ":1: ", out)
    out, code = copas_cmd("/nonexistent/script.lua")
    assert.equal(1, code, out)
    assert.equal("copas: cannot open /nonexistent/script.lua", out:match("^[^:]*:[^:]*"))
  end)

  it("exits with 2 on a usage error", function()
    local out, code = copas_cmd("")
    assert.equal(2, code, out)
    assert.matches("^copas: usage: copas ", out)
    out, code = copas_cmd("-x")
    assert.equal(2, code, out)
    assert.matches("^copas: unknown option '%-x'\nusage: copas ", out)
  end)
end)
