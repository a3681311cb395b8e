-------------------------------------------------------------------------------
-- copas.semaphore: a counting semaphore for copas threads.
--
-- `take` requests are served in FIFO order: a request at the head that does
-- not fit blocks the smaller ones behind it. Waiters sleep in
-- `copas.pauseforever`; a finite timeout is the thread's `copas.timeout`.
-- Resources are deducted when a waiter is released, so a released waiter
-- cannot lose them. Waiters that time out or whose thread was removed leave
-- the queue and never block anyone. A stray `copas.wakeup` is ignored.
-- @module copas.semaphore
-------------------------------------------------------------------------------

local copas = require "copas"

local coroutine_running = coroutine.running
local setmetatable, type, tostring, error = setmetatable, type, tostring, error
local huge = math.huge

local loop = copas._loop
-- waiter records hold their thread weakly: copas holds a waiting thread, and
-- one it dropped (copas.removethread/removeall) must stay collectable
local WEAK = { __mode = "v" }

local DEFAULT_TIMEOUT = 10

local semaphore = {}
semaphore.__index = semaphore


local waitqueue = require "copas.waitqueue"
local checkself = waitqueue.checkself
local alive, fifo_new, fifo_push, fifo_abandon, fifo_head, fifo_drop_head =
  waitqueue.alive, waitqueue.new, waitqueue.push, waitqueue.abandon, waitqueue.head, waitqueue.drop_head


local function non_negative(v)
  return type(v) == "number" and v >= 0  -- false for NaN
end


-- waiter FIFO: records { co, n, state }; state "waiting" until released
-- ("granted"), timed out ("timeout") or destroyed. Records that stop
-- waiting away from the head stay as tombstones until they reach the head,
-- or until a compaction when they are the most.


-- Releases waiters from the head while their request fits, dropping
-- waiters whose thread is gone.
local function dispatch(self)
  local q = self.queue
  while true do
    local rec = fifo_head(q)
    if rec == nil then return end
    if rec.n <= self.count then
      fifo_drop_head(q)
      local co = rec.co
      if (co ~= nil and copas.wakeup(co)) or alive(co) then
        rec.state = "granted"
        self.count = self.count - rec.n
      else
        rec.state = "gone"
      end
    elseif alive(rec.co) then
      return  -- the head does not fit yet: everyone behind it waits too
    else
      fifo_drop_head(q)
      rec.state = "gone"
    end
  end
end

-- Sleeps until `rec.state` leaves "waiting"; a finite `timeout` arms the
-- thread's copas.timeout.
local function wait(self, rec, timeout)
  if timeout ~= huge then
    copas.timeout(timeout, function()
      if rec.state == "waiting" then
        rec.state = "timeout"
        fifo_abandon(self.queue)
        copas.wakeup(rec.co)
        dispatch(self)  -- smaller requests behind it may fit now
      end
    end)
  end
  repeat
    copas._waitforever()
  until rec.state ~= "waiting"
  if timeout ~= huge then copas.timeout(0) end
end


--- Creates a semaphore holding at most `max` resources, `start` (default
-- 0) available, `timeout` (default 10) the default wait of `take`.
-- Raises "expected max resources (1st argument) to be a number greater than
-- 0, got: <v>" and likewise for `start` and `timeout`.
-- @param max number >= 1
-- @param start number (default 0)
-- @param timeout seconds (default 10)
-- @return the semaphore
function semaphore.new(max, start, timeout)
  if type(max) ~= "number" or not (max >= 1) then  -- luacheck: ignore 581 (true for NaN too)
    error("expected max resources (1st argument) to be a number greater than 0, got: "
      .. tostring(max), 2)
  end
  if start == nil then start = 0 end
  if not non_negative(start) then
    error("expected start resources (2nd argument) to be a number greater than or equal to 0, got: "
      .. tostring(start), 2)
  end
  if timeout == nil then timeout = DEFAULT_TIMEOUT end
  if not non_negative(timeout) then
    error("expected timeout (3rd argument) to be a number greater than or equal to 0, got: "
      .. tostring(timeout), 2)
  end
  return setmetatable({
    max = max,
    count = start,
    timeout = timeout,
    queue = fifo_new(),
  }, semaphore)
end


--- A semaphore, made by `new`.
-- @type semaphore

--- Takes `n` (default 1) resources, waiting up to `timeout` seconds
-- (default: the semaphore's; 0 never waits, math.huge waits forever).
-- @param n number (default 1)
-- @param timeout seconds
-- @return true | nil, "too many" | nil, "timeout" | nil, "destroyed"
function semaphore:take(n, timeout)
  checkself(self, semaphore, "semaphore", "take")
  if n == nil then n = 1 end
  if not non_negative(n) then
    error("expected requested resources (1st argument) to be a number greater than or equal to 0, got: "
      .. tostring(n), 2)
  end
  if timeout == nil then
    timeout = self.timeout
  elseif not non_negative(timeout) then
    error("expected timeout (2nd argument) to be a number greater than or equal to 0, got: "
      .. tostring(timeout), 2)
  end

  dispatch(self)  -- forget waiters that are gone
  if fifo_head(self.queue) == nil and self.count >= n then
    self.count = self.count - n
    return true
  end
  if n > self.max then
    return nil, "too many"
  end
  if timeout == 0 then
    return nil, "timeout"
  end

  local co = loop:current()
  if co == nil then
    -- not a copas thread: this raises Lua's own "attempt to yield" error
    copas._waitforever()
    co = coroutine_running()
  end
  local rec = setmetatable({ co = co, n = n, state = "waiting" }, WEAK)
  fifo_push(self.queue, rec)
  wait(self, rec, timeout)

  if self.destroyed then
    return nil, "destroyed"
  end
  if rec.state == "granted" then
    return true
  end
  return nil, "timeout"
end


--- Gives back `n` (default 1) resources and releases waiters in FIFO order
-- while the head request fits. The count is capped at `max`.
-- Raises "expected given resources (1st argument) to be a finite number
-- greater than or equal to 0, got: <v>".
-- @param n number (default 1)
-- @return true | nil, "too many" (capped, waiters still released)
function semaphore:give(n)
  checkself(self, semaphore, "semaphore", "give")
  if n == nil then n = 1 end
  if not non_negative(n) or n == huge then
    error("expected given resources (1st argument) to be a finite number greater than or equal to 0, got: "
      .. tostring(n), 2)
  end
  local err
  self.count = self.count + n
  if self.count > self.max then
    self.count = self.max
    err = "too many"
  end
  dispatch(self)
  if err then return nil, err end
  return true
end


--- @return the number of resources available
function semaphore:get_count()
  checkself(self, semaphore, "semaphore", "get_count")
  return self.count
end


--- @return the sum of the requests waiting minus the resources available
-- (negative when nobody waits and resources are available)
function semaphore:get_wait()
  checkself(self, semaphore, "semaphore", "get_wait")
  dispatch(self)
  local q, wanted = self.queue, 0
  for i = q.first, q.last do
    local rec = q[i]
    if rec.state == "waiting" and alive(rec.co) then
      wanted = wanted + rec.n
    end
  end
  return wanted - self.count
end


do
  --- Destroys the semaphore: every waiter returns nil, "destroyed" (and
  -- cancels its timeout); afterwards every method returns nil, "destroyed".
  -- @return true
  function semaphore:destroy()
    checkself(self, semaphore, "semaphore", "destroy")
    self.destroyed = true
    setmetatable(self, waitqueue.destroyed_mt)
    local q = self.queue
    for i = q.first, q.last do
      local rec = q[i]
      q[i] = nil
      if rec.state == "waiting" then
        rec.state = "destroyed"
        if rec.co ~= nil then copas.wakeup(rec.co) end
      end
    end
    self.queue = fifo_new()
    return true
  end
end


return semaphore
