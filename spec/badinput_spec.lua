-- Bad input, function by function (issue #7).
--
-- docs/robustness.md is the table; this spec runs it. Every row of that
-- page is one `it` here: its call is compiled as written and run in the
-- main chunk or in a Copas thread, and the outcome must be the one the row
-- states. A second block fails when a public function has no row, so the
-- page and the code cannot drift apart.
local helpers = require "spec.helpers"
local socket = require "socket"

local unpack = table.unpack or unpack  -- luacheck: ignore 143 (unpack is 5.1's)

local here = debug.getinfo(1, "S").source:match("^@(.*)$"):match("^(.-)[^/]*$")
local DOC = (here ~= "" and here or "./") .. "../docs/robustness.md"


-------------------------------------------------------------------------------
-- the page
-------------------------------------------------------------------------------

-- rows: { fname, call, where, kind ("raises" | "returns" | "accepts"),
-- text (the message or the values), line }
local function read_rows()
  local f = assert(io.open(DOC, "r"))
  local rows, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:match("^| `") then
      local fname, call, where, result = line:match("^| `([^`]+)` | `([^`]+)` | (%a+) | (.-) |.*|$")
      assert(fname, ("robustness.md:%d: a row must read | `function` | `call` | where | result | note |"):format(n))
      assert(where == "main" or where == "thread", ("robustness.md:%d: where is main or thread"):format(n))
      local kind, text = result:match("^(%a+) `(.*)`$")
      if result == "accepts" then kind, text = "accepts", nil end
      assert(kind == "raises" or kind == "returns" or kind == "accepts",
        ("robustness.md:%d: result is raises `msg`, returns `values` or accepts"):format(n))
      rows[#rows + 1] = { fname = fname, call = call, where = where, kind = kind, text = text, line = n }
    end
  end
  f:close()
  return rows
end

local rows = read_rows()


-------------------------------------------------------------------------------
-- running a row
-------------------------------------------------------------------------------

local function compile(src, env)
  if rawget(_G, "setfenv") then        -- 5.1 and LuaJIT
    local fn, err = (rawget(_G, "loadstring") or load)(src, "=row")
    if fn then rawget(_G, "setfenv")(fn, env) end
    return fn, err
  end
  return load(src, "=row", "t", env)
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Messages that are Lua's own and worded differently by other versions:
-- the documented (5.4) text, and the part every version shares.
local STABLE = {
  ["attempt to yield from outside a coroutine"] = "attempt to yield",
  -- LuaJIT names no function called in a tail call
  ["calling 'send' on bad self (udp{connected} expected)"] = "(udp{connected} expected)",
  ["bad argument #1 to 'sendto' (string expected, got table)"] = "(string expected, got table)",
}

-- runs one row; returns the outcome { ok = bool, err = msg | res = packed }
local function run_row(row)
  local copas = helpers.reload()
  local env = setmetatable({ copas = copas, socket = socket }, { __index = _G })
  local fn = assert(compile("return " .. row.call, env))
  local outcome
  if row.where == "main" then
    local res = pack(pcall(fn))
    if res[1] then
      outcome = { ok = true, res = pack(unpack(res, 2, res.n)) }
    else
      outcome = { ok = false, err = res[2] }
    end
  else
    helpers.run(function()
      copas.seterrorhandler(function(err) outcome = { ok = false, err = err } end)
      outcome = { ok = true, res = pack(fn()) }
    end, 5)
  end
  copas.removeall()
  return outcome
end

local function describe_values(t)
  local out = {}
  for i = 1, t.n do
    out[i] = type(t[i]) == "string" and ("%q"):format(t[i]) or tostring(t[i])
  end
  return table.concat(out, ", ")
end

-- equal values (numbers by value: 1 == 1.0), trailing nils not counted
local function same_values(a, b)
  local function len(t)
    local n = t.n
    while n > 0 and t[n] == nil do n = n - 1 end
    return n
  end
  if len(a) ~= len(b) then return false end
  for i = 1, len(a) do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function check(row, outcome)
  assert(outcome ~= nil, "the call neither returned nor raised")
  if row.kind == "raises" then
    assert(not outcome.ok, "expected an error, but the call returned " ..
      (outcome.res and describe_values(outcome.res) or ""))
    local want = row.text
    if _VERSION ~= "Lua 5.4" then want = STABLE[want] or want end
    local got = tostring(outcome.err)
    assert(got:find(want, 1, true), ("expected the error\n  %s\ngot\n  %s"):format(want, got))
  else
    assert(outcome.ok, "expected no error, got: " .. tostring(outcome.err))
    if row.kind == "returns" then
      local want = pack(assert(compile("return " .. row.text, {}))())
      local got = outcome.res
      assert(same_values(got, want),
        ("expected the call to return\n  %s\ngot\n  %s"):format(describe_values(want),
          describe_values(got)))
    end
  end
end


describe("docs/robustness.md, row by row:", function()
  for _, row in ipairs(rows) do
    local label = ("%s %s (%s) %s%s"):format(row.fname, row.call, row.where, row.kind,
      row.text and (" " .. row.text) or "")
    it(label, function()
      check(row, run_row(row))
    end)
  end
end)


-------------------------------------------------------------------------------
-- every public function has a row
-------------------------------------------------------------------------------

local function functions_of(t, prefix, out, skip)
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") and not (skip and skip[k]) then
      out[#out + 1] = prefix .. k
    end
  end
end

-- the public functions, named as the page names them
local function public_functions()
  local copas = helpers.reload()
  local names = {}
  functions_of(copas, "copas.", names)
  functions_of(copas.debug, "copas.debug.", names)
  for _, m in ipairs { "http", "ftp", "smtp", "future" } do
    functions_of(copas[m], "copas." .. m .. ".", names)
  end
  for _, m in ipairs { "timer", "lock", "semaphore", "queue" } do
    -- the module table is also the objects' method table
    names[#names + 1] = "copas." .. m .. ".new"
    functions_of(copas[m], m .. ":", names, { new = true })
  end
  local f = copas.future.addthread(function() end)
  functions_of(getmetatable(f).__index, "future:", names)
  names[#names + 1] = "copas.limit.new"
  local set = copas.limit.new(1)
  for _, k in ipairs { "addthread", "removethread", "wait" } do
    assert(type(set[k]) == "function", "copas.limit set lost its method " .. k)
    names[#names + 1] = "set:" .. k
  end
  local worker = require "copas.worker"
  functions_of(worker, "copas.worker.", names)
  local pool = worker.new { threads = 1 }
  functions_of(getmetatable(pool).__index, "pool:", names)
  pool:shutdown()
  functions_of(require "copas.resolver", "copas.resolver.", names)
  local tcp, udp = socket.tcp(), socket.udp()
  functions_of(getmetatable(copas.wrap(tcp)).__index, "tcp:", names)
  functions_of(getmetatable(copas.wrap(udp)).__index, "udp:", names)
  tcp:close()
  udp:close()
  copas.removeall()
  table.sort(names)
  return names
end

describe("docs/robustness.md", function()
  it("has a row for every public function", function()
    local documented = {}
    for _, row in ipairs(rows) do documented[row.fname] = true end
    local missing = {}
    for _, name in ipairs(public_functions()) do
      if not documented[name] then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end)

  it("names only functions that exist", function()
    local exists = {}
    for _, name in ipairs(public_functions()) do exists[name] = true end
    local unknown = {}
    for _, row in ipairs(rows) do
      if not exists[row.fname] then unknown[row.fname] = true end
    end
    assert.same({}, unknown)
  end)
end)


-------------------------------------------------------------------------------
-- the C bindings under the API
-------------------------------------------------------------------------------

-- copas.core is internal, but a wrong value reaching it must still end in
-- a Lua error, never in a crash (which would end this process) or a
-- non-string error. Every method of the loop, task-set and pool objects is
-- called with odd values in its first arguments.
describe("copas.core bindings given odd arguments", function()
  local core = require "copas.core"

  local function odd_values()
    return { n = 12, nil, 42, "x", {}, function() end, coroutine.create(function() end), true, -1,
             0 / 0, math.huge, io.stdout, socket.udp() }
  end

  local function methods_of(obj)
    local out = {}
    for k, v in pairs(getmetatable(obj).__index) do
      if type(v) == "function" then out[#out + 1] = k end
    end
    table.sort(out)
    return out
  end

  -- calls obj:m(a, b) for all pairs of odd values; returns the errors that
  -- were not strings, as "method: value"
  local function sweep(make, skip)
    local bad = {}
    local vals = odd_values()
    local sample = make()
    for _, m in ipairs(methods_of(sample)) do
      if not (skip and skip[m]) then
        for i = 1, vals.n do
          for j = 1, vals.n do
            local obj = make()
            local ok, err = pcall(obj[m], obj, vals[i], vals[j])
            if not ok and type(err) ~= "string" then bad[#bad + 1] = m .. ": " .. tostring(err) end
          end
        end
      end
    end
    vals[12]:close()
    return bad
  end

  local function quiet_loop()
    local loop = core.new()
    local function none() end
    loop:sethooks { none, none, none, none }
    return loop
  end

  it("the loop raises string errors and does not crash", function()
    assert.same({}, sweep(quiet_loop))
  end)

  it("a task set raises string errors and does not crash", function()
    local loop = quiet_loop()
    assert.same({}, sweep(function() return loop:newset(2) end))
  end)

  it("a worker pool raises string errors and does not crash", function()
    local pool = core.pool_new(1, {})
    -- shutdown and close are called last, once the sweep is done; resolve
    -- only with values that are no host names (a name would go to DNS)
    assert.same({}, sweep(function() return pool end, { shutdown = true, close = true, resolve = true }))
    local vals = odd_values()
    for i = 1, vals.n do
      if type(vals[i]) ~= "string" and type(vals[i]) ~= "number" then
        local ok, err = pcall(pool.resolve, pool, vals[i], "inet")
        assert.is_false(ok)
        assert.equal("string", type(err))
      end
    end
    vals[12]:close()
    pool:shutdown()
    local ok, err = pcall(pool.run, pool, function() end)
    assert.is_false(ok)
    assert.equal("string", type(err))
  end)

  it("the module functions raise string errors and do not crash", function()
    local vals = odd_values()
    local bad = {}
    for _, name in ipairs { "new", "now", "gettime", "pool_cpus", "addr_literal", "pool_new" } do
      for i = 1, vals.n do
        for j = 1, vals.n do
          local ok, res = pcall(core[name], vals[i], vals[j])
          if not ok and type(res) ~= "string" then bad[#bad + 1] = name .. ": " .. tostring(res) end
          if ok and name == "pool_new" then res:shutdown() end
        end
      end
    end
    vals[12]:close()
    assert.same({}, bad)
  end)
end)
