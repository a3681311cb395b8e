-------------------------------------------------------------------------------
-- copas.future: run a function as a copas thread and collect its outcome.
--
-- The task thread stores its results when it returns; when it fails, its
-- own error handler stores the error instead of reporting it. The task thus
-- runs unprotected and may yield on every Lua version. Any number of
-- threads may wait in `get`; each sleeps in `copas.pauseforever` until the
-- outcome is known (a stray `copas.wakeup` is ignored).
-- @module copas.future
-------------------------------------------------------------------------------

local copas = require "copas"
local checkself = require("copas.waitqueue").checkself

local coroutine_running = coroutine.running
local coroutine_status = coroutine.status
local setmetatable, type, tostring, error, select = setmetatable, type, tostring, error, select
local unpack = table.unpack or unpack  -- luacheck: ignore 143 (unpack is Lua 5.1's)

local loop = copas._loop
-- waiting threads are held weakly: copas holds a waiting thread, and one it
-- dropped (copas.removethread/removeall) must stay collectable
local WEAK = { __mode = "v" }

local M = {
  SUCCESS = true,
  PENDING = false,
  ERROR = "error",
}

local future = {}
future.__index = future


-- does copas still hold `co` (not finished, not removed)?
local function alive(co)
  return type(co) == "thread" and loop:state(co) ~= nil and coroutine_status(co) ~= "dead"
end

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Stores the outcome (`true, results...` or `false, err`) unless one is
-- already there, and wakes every waiter.
local function settle(self, outcome)
  if self.outcome ~= nil then return end
  self.outcome = outcome
  local waiters = self.waiters
  self.waiters = nil
  for i = 1, waiters.n do
    local co = waiters[i]
    if co ~= nil then copas.wakeup(co) end
  end
end

-- A pending task whose thread copas no longer holds (removed, e.g. by
-- copas.removeall) will never finish: it counts as cancelled.
local function check_gone(self)
  if self.outcome == nil and not alive(self.co) then
    settle(self, pack(false, "cancelled"))
  end
end


--- A future, made by `addthread` or `addnamedthread`; calling it, `f(...)`,
-- is `f:get()`.
-- @type future

--- Waits until the task finished or was cancelled.
-- @return true, results... | false, err (false, "cancelled" when cancelled)
function future:get()
  checkself(self, future, "future", "get")
  check_gone(self)
  if self.outcome == nil then
    local co = loop:current()
    if co == nil then
      -- not a copas thread: this raises Lua's own "attempt to yield" error
      copas._waitforever()
      co = coroutine_running()
    end
    local waiters = self.waiters
    waiters.n = waiters.n + 1
    waiters[waiters.n] = co
    repeat
      copas._waitforever()
    until self.outcome ~= nil
  end
  local outcome = self.outcome
  return unpack(outcome, 1, outcome.n)
end

future.__call = future.get


--- Looks at the outcome without waiting.
-- @return PENDING | SUCCESS, results... | ERROR, err
function future:try()
  checkself(self, future, "future", "try")
  check_gone(self)
  local outcome = self.outcome
  if outcome == nil then
    return M.PENDING
  end
  if outcome[1] then
    return M.SUCCESS, unpack(outcome, 2, outcome.n)
  end
  return M.ERROR, outcome[2]
end


--- Cancels a pending task: its thread is removed and never continues, the
-- outcome becomes false, "cancelled" and waiters are released.
-- @return true if it was pending | false if already finished or cancelled
function future:cancel()
  checkself(self, future, "future", "cancel")
  check_gone(self)
  if self.outcome ~= nil then
    return false
  end
  settle(self, pack(false, "cancelled"))
  copas.removethread(self.co)
  return true
end


--- Creating futures.
-- @section create

--- Runs `fn(...)` as a copas thread named `name` (as copas.addnamedthread).
-- Its errors are captured, never reported to an error handler.
-- @param name string
-- @param fn function
-- @param ... arguments for `fn`
-- @return the future
function M.addnamedthread(name, fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #2 to 'addnamedthread' (function expected, got " .. type(fn) .. ")", 2)
  end
  if name ~= nil and type(name) ~= "string" then
    error("bad argument #1 to 'addnamedthread' (string expected, got " .. type(name) .. ")", 2)
  end
  local self = setmetatable({ waiters = setmetatable({ n = 0 }, WEAK) }, future)

  local function capture(err)
    settle(self, pack(false, err))
  end

  self.co = copas.addnamedthread(name, function(...)
    copas.seterrorhandler(capture)
    settle(self, pack(true, fn(...)))
  end, ...)
  return self
end


--- Runs `fn(...)` as a copas thread (as copas.addthread).
-- @param fn function
-- @param ... arguments for `fn`
-- @usage local f = copas.future.addthread(function(a, b) copas.pause(0.1); return a + b end, 1, 2)
-- copas.addthread(function() print(f:get()) end)   --> true 3
-- @return the future
function M.addthread(fn, ...)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'addthread' (function expected, got " .. type(fn) .. ")", 2)
  end
  return M.addnamedthread(nil, fn, ...)
end


setmetatable(M, {
  __index = function(_, key)
    error("unknown field 'future." .. tostring(key) .. "'", 2)
  end,
})

return M
