-- The code in README.md and docs/guide/*.md runs as shown. A ```lua block
-- preceded by the line <!-- runnable --> is run in a fresh interpreter with
-- this process's module paths (bounded by `timeout`); it must exit with
-- status 0, print nothing to stderr, and print every `--> text` its lines
-- announce, in order.

-- the interpreter running this spec (lowest index of `arg`)
local function interpreter()
  local i = 0
  while arg and arg[i - 1] ~= nil do i = i - 1 end
  return (arg and i < 0) and arg[i] or "lua"
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- the runnable blocks of a Markdown file: { {line = n, code = "..."}, ... }
local function runnable_blocks(path)
  local text = assert(read(path), "cannot read " .. path)
  local blocks, marked, cur, n = {}, false, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        blocks[#blocks + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    elseif line:match("^<!%-%- runnable %-%->%s*$") then
      marked = true
    elseif line:match("^```lua%s*$") and marked then
      cur = { line = n + 1, lines = {} }
      marked = false
    elseif line:match("%S") then
      marked = false
    end
  end
  assert(cur == nil, path .. ": unterminated code block")
  for _, b in ipairs(blocks) do b.code = table.concat(b.lines, "\n") .. "\n" end
  return blocks
end

-- the outputs a block announces with `--> text`
local function expected_output(code)
  local out = {}
  for line in code:gmatch("[^\n]+") do
    local want = line:match("%-%->%s(.-)%s*$")
    if want then out[#out + 1] = want end
  end
  return out
end

local function run_file(path)
  local guard = ""
  local r = os.execute("command -v timeout >/dev/null 2>&1")
  if r == true or r == 0 then guard = "timeout -k 2 20 " end
  local errname = os.tmpname()
  local p = assert(io.popen(guard .. interpreter() .. " " .. path .. " 2>" .. errname))
  local out = p:read("*a")
  local ok, how, code = p:close()
  local err = read(errname) or ""
  os.remove(errname)
  if type(ok) == "number" then code = ok; ok = (ok == 0) end   -- Lua 5.1
  if how == "exit" and code ~= 0 then ok = false end
  return ok, out, err, code
end

local function check_block(file, block)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(block.code)
  f:close()
  local ok, out, err, code = run_file(name)
  os.remove(name)
  local where = ("%s:%d"):format(file, block.line)
  assert(ok, ("%s: exited with status %s\nstdout:\n%s\nstderr:\n%s"):format(where, tostring(code), out, err))
  assert(err == "", ("%s: wrote to stderr:\n%s"):format(where, err))
  -- each announced output appears on a line of its own, in order
  local lines = {}
  for line in out:gmatch("[^\n]*") do lines[#lines + 1] = (line:gsub("%s+$", "")) end
  local pos = 1
  for _, want in ipairs(expected_output(block.code)) do
    local found
    for i = pos, #lines do
      if lines[i] == want then found = i break end
    end
    assert(found, ("%s: expected the line %q after line %d of the output:\n%s")
      :format(where, want, pos - 1, out))
    pos = found + 1
  end
end

local files = { "README.md" }
do
  local p = io.popen("ls docs/guide/*.md 2>/dev/null")
  for path in p:read("*a"):gmatch("[^\n]+") do files[#files + 1] = path end
  p:close()
end

describe("documentation code", function()
  it("has runnable blocks in README.md and docs/guide/", function()
    local total = 0
    for _, file in ipairs(files) do total = total + #runnable_blocks(file) end
    assert.is_true(total >= 5, "found " .. total .. " runnable blocks")
  end)

  for _, file in ipairs(files) do
    for _, block in ipairs(runnable_blocks(file)) do
      it(("runs %s:%d as shown"):format(file, block.line), function()
        check_block(file, block)
      end)
    end
  end
end)
