-- Checks that the rockspec lists every C source in csrc/, every Lua module
-- in lua/ and every command in bin/, and nothing that does not exist.
-- Usage (from the repository root): lua scripts/check-rockspec.lua [rockspec]
local path = arg[1] or "rockspec/copas-c-scm-1.rockspec"

local spec = {}
local chunk, err
if setfenv then
  chunk, err = loadfile(path)
  if chunk then setfenv(chunk, spec) end
else
  chunk, err = loadfile(path, "t", spec)
end
assert(chunk, err)
chunk()

local function lines(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- compares two sets, printing what is only on one side; returns the count
local function compare(what, listed, present)
  local problems = 0
  for name in pairs(present) do
    if not listed[name] then
      print(("%s missing from %s: %s"):format(what, path, name))
      problems = problems + 1
    end
  end
  for name in pairs(listed) do
    if not present[name] then
      print(("%s listed in %s but not found: %s"):format(what, path, name))
      problems = problems + 1
    end
  end
  return problems
end

local modules = spec.build.modules
local problems = compare("C source", set(modules["copas.core"].sources),
  set(lines("ls csrc/*.c")))

local lua_listed, lua_present = {}, {}
for name, file in pairs(modules) do
  if type(file) == "string" then
    lua_listed[name .. " = " .. file] = true
  end
end
for _, file in ipairs(lines("cd lua && find . -name '*.lua' | sort")) do
  local rel = file:gsub("^%./", "")
  local name = rel:gsub("/init%.lua$", ""):gsub("%.lua$", ""):gsub("/", ".")
  lua_present[name .. " = lua/" .. rel] = true
end
problems = problems + compare("Lua module", lua_listed, lua_present)

local bin_listed = {}
for name, file in pairs(spec.build.install and spec.build.install.bin or {}) do
  bin_listed[name .. " = " .. file] = true
end
local bin_present = {}
for _, file in ipairs(lines("ls bin 2>/dev/null")) do
  bin_present[file .. " = bin/" .. file] = true
end
problems = problems + compare("command", bin_listed, bin_present)

if problems > 0 then os.exit(1) end
print(path .. ": lists every C source, Lua module and command")
