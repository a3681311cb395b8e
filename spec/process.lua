-- Child processes for the specs that run examples and scripts.
--
--   local process = require "spec.process"
--   local p = process.spawn(process.lua() .. " examples/chat.lua")
--   local port = p:line("^listening on 127%.0%.0%.1:(%d+)$")   -- blocks
--   ... talk to it ...
--   p:kill()
--   local output, code = p:finish()
--
-- spawn reads the child's output through a pipe, so its reads block this
-- process: use it for children that do not need this process's Copas loop
-- to make progress. background writes the output to a temporary file, which
-- is read without blocking (p:output(), p:done()) while the loop runs.
-- Every child runs under `timeout`, so a hanging one cannot hang a spec.

local M = {}

--- The interpreter running the specs ($COPAS_LUA overrides), so the
-- children run on the same Lua as the parent.
function M.lua()
  local env = os.getenv("COPAS_LUA")
  if env and env ~= "" then return env end
  local i = 0
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

--- `s` quoted for the shell.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local Proc = {}
Proc.__index = Proc

--- Starts the command `cmd` (a simple command: program and arguments,
-- quoted for the shell) with stdout and stderr on one pipe. It is killed
-- after `limit` seconds (default 60; exit code 124), so a hanging child
-- cannot hang the spec.
-- @return process object
function M.spawn(cmd, limit)
  -- `timeout` forwards the kill() signal to the command; the shell's own
  -- messages ("Terminated") are dropped
  local pipe = assert(io.popen(("{ (exec timeout -k 5 %d %s) 2>&1 & echo \"spawned-pid:$!\";"
    .. " wait $!; echo \"spawned-exit:$?\"; } 2>/dev/null"):format(limit or 60, cmd)))
  return setmetatable({ pipe = pipe, lines = {} }, Proc)
end

-- next line of output; records (and skips) the wrapper's own lines
function Proc:_next()
  while true do
    local line = self.pipe:read("*l")
    if line == nil then return nil end
    local pid = line:match("^spawned%-pid:(%d+)$")
    local code = line:match("^spawned%-exit:(%d+)$")
    if pid then
      self.pid = tonumber(pid)
    elseif code then
      self.code = tonumber(code)
    else
      self.lines[#self.lines + 1] = line
      return line
    end
  end
end

--- Reads lines until one matches `pattern`.
-- @return the captures of the match
-- Raises with the output so far when the child ends first.
function Proc:line(pattern)
  while true do
    local line = self:_next()
    if line == nil then
      error("no line matching " .. pattern .. " in:\n" .. table.concat(self.lines, "\n"), 2)
    end
    if line:match(pattern) then return line:match(pattern) end
  end
end

--- Ends the child with SIGTERM.
function Proc:kill()
  while not self.pid and self:_next() do end
  if self.pid and not self.code then os.execute("kill " .. self.pid .. " 2>/dev/null") end
end

--- Waits for the child to exit.
-- @return all its output (one string), its exit code (128 + n: signal n)
function Proc:finish()
  while self:_next() do end
  self.pipe:close()
  return table.concat(self.lines, "\n"), self.code
end

local Bg = {}
Bg.__index = Bg

--- Starts the command `cmd` in the background, its output going to a
-- temporary file; never blocks. Killed after `limit` seconds (default 60).
-- @return process object: output(), done(), kill(), cleanup()
function M.background(cmd, limit)
  local f = assert(io.popen("mktemp"))
  local path = f:read("*l")
  f:close()
  assert(path and path ~= "", "mktemp failed")
  os.execute(("{ (exec timeout -k 5 %d %s) & echo \"background-pid:$!\"; wait $!;"
    .. " echo \"background-exit:$?\"; } > %s 2>&1 &"):format(limit or 60, cmd, M.quote(path)))
  return setmetatable({ path = path }, Bg)
end

--- @return the output so far (without the wrapper's lines), and the exit
-- code once the child has exited (else nil)
function Bg:output()
  local f = io.open(self.path)
  local text = f and f:read("*a") or ""
  if f then f:close() end
  self.pid = self.pid or tonumber(text:match("background%-pid:(%d+)\n"))
  local code = tonumber(text:match("background%-exit:(%d+)\n"))
  text = text:gsub("background%-%a+:%d+\n", "")
  return text, code
end

--- Ends the child with SIGTERM (once it has started).
function Bg:kill()
  local _, code = self:output()
  if self.pid and not code then os.execute("kill " .. self.pid .. " 2>/dev/null") end
end

--- @return true once the child has exited
function Bg:done()
  local _, code = self:output()
  return code ~= nil
end

--- Removes the output file (after the child exited).
function Bg:cleanup()
  os.remove(self.path)
end

return M
