-------------------------------------------------------------------------------
-- copas.lock: a mutual-exclusion lock for copas threads.
--
-- Waiters queue in FIFO order and sleep in `copas.pauseforever`; a finite
-- timeout is the thread's `copas.timeout`. On release the lock is handed
-- straight to the oldest waiter that is still waiting, so nobody can slip in
-- between. A wake-up that did not come from the lock (a stray
-- `copas.wakeup`) is ignored: the waiter goes back to sleep.
-- @module copas.lock
-------------------------------------------------------------------------------

local copas = require "copas"

local coroutine_running = coroutine.running
local setmetatable, type, tostring, error = setmetatable, type, tostring, error
local huge = math.huge

local loop = copas._loop
-- waiter records hold their thread weakly: copas holds a waiting thread, and
-- one it dropped (copas.removethread/removeall) must stay collectable
local WEAK = { __mode = "v" }
local MAIN = {}  -- stands for the main chunk, which has no coroutine on Lua 5.1

local DEFAULT_TIMEOUT = 10

local lock = {}
lock.__index = lock


-- the copas thread making the call (on Lua 5.1 also across a protected
-- call, which runs in a coroutine of its own), or the running coroutine
local function caller()
  return loop:current() or coroutine_running() or MAIN
end

local waitqueue = require "copas.waitqueue"
local checkself = waitqueue.checkself
local alive, fifo_new, fifo_push, fifo_abandon, fifo_shift =
  waitqueue.alive, waitqueue.new, waitqueue.push, waitqueue.abandon, waitqueue.shift


local function valid_timeout(t)
  return type(t) == "number" and t >= 0  -- false for NaN
end


-- waiter FIFO: records { co, state }; state "waiting" until the lock hands
-- itself over ("granted"), the timeout fires ("timeout") or it is destroyed.
-- Records that stop waiting elsewhere than at the head stay as tombstones
-- until they reach the head, or until a compaction when they are the most.


-- Makes `rec` the owner if its thread can still take it.
-- @return true when handed over, false for a removed or finished waiter
local function hand_over(self, rec)
  local co = rec.co
  if (co ~= nil and copas.wakeup(co)) or alive(co) then
    rec.state = "granted"
    self.owner, self.count, self.handed = co, 1, co
    return true
  end
  rec.state = "gone"
  return false
end

-- Gives a free lock to the oldest live waiter, if any.
local function pass_on(self)
  self.owner, self.count, self.handed = nil, 0, nil
  while true do
    local rec = fifo_shift(self.queue)
    if rec == nil or hand_over(self, rec) then return end
  end
end

-- Sleeps until `rec.state` leaves "waiting"; a finite `timeout` arms the
-- thread's copas.timeout, whose expiry marks the record "timeout".
local function wait(self, rec, timeout)
  if timeout ~= huge then
    copas.timeout(timeout, function()
      if rec.state == "waiting" then
        rec.state = "timeout"
        fifo_abandon(self.queue)
        copas.wakeup(rec.co)
      end
    end)
  end
  repeat
    copas._waitforever()
  until rec.state ~= "waiting"
  if timeout ~= huge then copas.timeout(0) end
end


--- Creates a lock.
-- `timeout` (default 10) is the default wait of `get`; `not_reentrant`
-- makes a second `get` by the owner fail instead of nesting.
-- Raises "expected timeout (1st argument) to be a number greater than or
-- equal to 0, got: <v>".
-- @param timeout seconds (default 10)
-- @param not_reentrant boolean
-- @return the lock
function lock.new(timeout, not_reentrant)
  if timeout == nil then timeout = DEFAULT_TIMEOUT end
  if not valid_timeout(timeout) then
    error("expected timeout (1st argument) to be a number greater than or equal to 0, got: "
      .. tostring(timeout), 2)
  end
  return setmetatable({
    timeout = timeout,
    not_reentrant = not not not_reentrant,
    queue = fifo_new(),
    owner = nil,     -- thread holding the lock
    count = 0,       -- nesting depth of the owner
    handed = nil,    -- owner that was handed the lock and has not resumed yet
  }, lock)
end


--- A lock, made by `new`.
-- @type lock

--- Acquires the lock, waiting up to `timeout` seconds (default: the lock's).
-- 0 fails at once without queueing; math.huge waits forever.
-- @param timeout seconds
-- @return seconds waited | nil, "timeout" | "destroyed" | "lock is not
-- re-entrant", seconds waited
function lock:get(timeout)
  checkself(self, lock, "lock", "get")
  if timeout == nil then
    timeout = self.timeout
  elseif not valid_timeout(timeout) then
    error("expected timeout (1st argument) to be a number greater than or equal to 0, got: "
      .. tostring(timeout), 2)
  end
  local co = caller()
  if self.handed ~= nil and not alive(self.handed) then
    pass_on(self)  -- handed to a thread that was removed before it could resume
  end

  if self.owner == nil then
    self.owner, self.count = co, 1
    return 0
  end
  if self.owner == co then
    if self.not_reentrant then
      return nil, "lock is not re-entrant", 0
    end
    self.count = self.count + 1
    return 0
  end
  if timeout == 0 then
    return nil, "timeout", 0
  end

  if co == MAIN or co ~= loop:current() then
    -- not a copas thread: this raises Lua's own "attempt to yield" error
    copas._waitforever()
  end
  local rec = setmetatable({ co = co, state = "waiting" }, WEAK)
  fifo_push(self.queue, rec)
  local start = copas.gettime()
  wait(self, rec, timeout)
  local waited = copas.gettime() - start

  if self.destroyed then
    return nil, "destroyed", waited
  end
  if rec.state == "granted" then
    if self.handed == co then self.handed = nil end
    return waited
  end
  return nil, "timeout", waited
end


--- Releases the lock; a re-entrant owner needs one release per get.
-- @return true | nil, "cannot release a lock not owned" | nil, "destroyed"
function lock:release()
  checkself(self, lock, "lock", "release")
  if self.owner == nil or self.owner ~= caller() then
    return nil, "cannot release a lock not owned"
  end
  self.count = self.count - 1
  if self.count == 0 then
    pass_on(self)
  end
  return true
end


do
  --- Destroys the lock: every waiting `get` (also one that was just handed
  -- the lock) returns nil, "destroyed"; afterwards every method returns
  -- nil, "destroyed".
  -- @return true
  function lock:destroy()
    checkself(self, lock, "lock", "destroy")
    self.destroyed = true
    setmetatable(self, waitqueue.destroyed_mt)
    while true do
      local rec = fifo_shift(self.queue)
      if rec == nil then break end
      rec.state = "destroyed"
      if rec.co ~= nil then copas.wakeup(rec.co) end
    end
    self.owner, self.handed = nil, nil
    return true
  end
end


return lock
