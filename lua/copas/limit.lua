-------------------------------------------------------------------------------
-- copas.limit: run at most `maxt` tasks of a set at once (the Copas 3.x API).
--
-- The bookkeeping lives in the C core's task sets: a task counts as running
-- from the moment it is added, the rest wait in FIFO order, and a slot is
-- freed when a task returns, fails or is removed.
-- @module copas.limit
-------------------------------------------------------------------------------

local copas = require "copas"
local checkself = require("copas.waitqueue").checkself
local core = require "copas.core"

local loop = copas._loop
local JOIN = core.JOIN
local yield = coroutine.yield

local limit = {}

local set = {}
local set_mt = {
  __index = function(self, key)
    if key == "count" then
      return (rawget(self, "_handle"):counts())
    elseif key == "maxt" then
      local _, _, max = rawget(self, "_handle"):counts()
      return max
    end
    return set[key]
  end,
}

--- Creates a task set running at most `maxt` tasks at once (default 99999).
-- Raises for anything but a positive integer.
-- @param maxt positive integer
-- @return the task set; fields `maxt` and `count` (tasks running)
function limit.new(maxt)
  if maxt == nil then maxt = 99999 end
  if type(maxt) ~= "number" or maxt < 1 or maxt ~= math.floor(maxt) or maxt == math.huge then
    error("bad argument #1 to 'new' (positive integer expected, got " .. tostring(maxt) .. ")", 2)
  end
  return setmetatable({ _handle = loop:newset(maxt) }, set_mt)
end

--- A task set, made by `new`. Readable fields: `maxt`, `count` (tasks
-- counted as running).
-- @type set

--- Adds a task `fn(...)`; it starts now if a slot is free, else when one frees.
-- @param fn function
-- @param ... arguments for `fn`
-- @return the task's coroutine
function set:addthread(fn, ...)
  checkself(self, set_mt, "task set", "addthread")
  if type(fn) ~= "function" then
    error("bad argument #1 to 'addthread' (function expected, got " .. type(fn) .. ")", 2)
  end
  return loop:task(self._handle, fn, ...)
end

--- Removes a task from the set: a queued one never runs, a running one is
-- no longer counted (it keeps running). Unknown threads are ignored.
-- @param co coroutine
function set:removethread(co)
  checkself(self, set_mt, "task set", "removethread")
  loop:untask(self._handle, co)
end

--- Yields until the set has no running and no queued task.
function set:wait()
  checkself(self, set_mt, "task set", "wait")
  local running, queued = self._handle:counts()
  if running == 0 and queued == 0 then return end
  yield(self._handle, JOIN)
end

return limit
