-------------------------------------------------------------------------------
-- copas.queue: a FIFO queue between copas threads, with optional workers.
--
-- Items (nil included) are kept in an array between two indices. A `pop`
-- that finds the queue empty sleeps in `copas.pauseforever` (a finite
-- timeout is the thread's `copas.timeout`); `push` hands its item straight
-- to the oldest such waiter, so items go out in order and a waiter that was
-- handed one cannot lose it. A stray `copas.wakeup` is ignored.
--
-- `finish` waits for the queue to be destroyed (a stopped queue destroys
-- itself when its last item is popped) and for every worker to be done
-- with the item it holds.
-- @module copas.queue
-------------------------------------------------------------------------------

local copas = require "copas"

local coroutine_running = coroutine.running
local setmetatable, type, tostring, error = setmetatable, type, tostring, error
local pairs, next = pairs, next
local table_sort = table.sort
local huge = math.huge

local loop = copas._loop
-- waiter records hold their thread weakly: copas holds a waiting thread, and
-- one it dropped (copas.removethread/removeall) must stay collectable
local WEAK = { __mode = "v" }

local DEFAULT_TIMEOUT = 10

local Queue = {}
Queue.__index = Queue


local waitqueue = require "copas.waitqueue"
local checkself = waitqueue.checkself
local alive, fifo_new, fifo_push, fifo_abandon, fifo_shift =
  waitqueue.alive, waitqueue.new, waitqueue.push, waitqueue.abandon, waitqueue.shift


local function check_timeout(t, n)
  if t ~= nil and not (type(t) == "number" and t >= 0) then
    error(("expected timeout (%s argument) to be a number greater than or equal to 0, got: %s")
      :format(n, tostring(t)), 3)
  end
end

-- an error handler that finds the default one at call time (a coroutine
-- that never runs has no handler of its own)
local no_handler_co = coroutine.create(function() end)
local function default_handler()
  return copas.geterrorhandler(no_handler_co)
end

local new_name do
  local count = 0
  function new_name()
    count = count + 1
    return "copas_queue_" .. count
  end
end


-- waiter FIFOs (for `pop` and `finish`): records { thread = {co}, state,
-- item }; state "waiting" until handed an item ("granted"), timed out,
-- done or destroyed. The thread sits in a weak box, the item does not.


-- Sleeps until `rec.state` leaves "waiting"; a finite `timeout` arms the
-- thread's copas.timeout. `list` is the FIFO the record sits in.
local function wait(list, rec, timeout)
  if loop:current() == nil then
    -- not a copas thread: this raises Lua's own "attempt to yield" error
    copas._waitforever()
  end
  rec.thread = setmetatable({ loop:current() or coroutine_running() }, WEAK)
  fifo_push(list, rec)
  if timeout ~= huge then
    copas.timeout(timeout, function()
      if rec.state == "waiting" then
        rec.state = "timeout"
        fifo_abandon(list)
        copas.wakeup(rec.thread[1])
      end
    end)
  end
  repeat
    copas._waitforever()
  until rec.state ~= "waiting"
  if timeout ~= huge then copas.timeout(0) end
end

-- Wakes a waiting record with `state`.
-- @return false when its thread is gone (removed or finished)
local function release(rec, state)
  local co = rec.thread[1]
  if (co ~= nil and copas.wakeup(co)) or alive(co) then
    rec.state = state
    return true
  end
  rec.state = "gone"
  return false
end

-- Releases the `finish` waiters once the queue is destroyed and no live
-- worker still holds an item.
local function check_finished(self)
  if not self.destroyed then return end
  for co in pairs(self.busy) do
    if alive(co) then return end
    self.busy[co] = nil
  end
  while true do
    local rec = fifo_shift(self.finishers)
    if rec == nil then return end
    release(rec, "done")
  end
end


--- Creates a queue. `opts.name` defaults to "copas_queue_<n>". Also works
-- as `Queue:new()`.
-- @param opts table or nil: `name`
-- @usage local q = copas.queue.new()
-- q:add_worker(function(item) print("got", item) end)
-- copas.addthread(function()
--   q:push(1); q:push(2)
--   q:finish()           -- waits until both are handled
-- end)
-- @return the queue
function Queue.new(opts)
  if opts == Queue or opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("expected options (1st argument) to be a table, got: " .. tostring(opts), 2)
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("expected name to be a string, got: " .. tostring(opts.name), 2)
  end
  return setmetatable({
    name = opts.name or new_name(),
    items = {},
    first = 1,                -- index of the oldest item
    last = 0,                 -- index of the newest item
    poppers = fifo_new(),     -- threads waiting in pop
    finishers = fifo_new(),   -- threads waiting in finish
    workers = setmetatable({}, { __mode = "k" }),  -- worker -> number
    busy = setmetatable({}, { __mode = "k" }),     -- worker holding an item -> true
    worker_count = 0,
    stopping = false,
  }, Queue)
end


--- A queue, made by `new`. Readable field: `name`.
-- @type Queue

--- Appends `item` (any value, nil included).
-- @param item any value
-- @return true | nil, "stopping" | nil, "destroyed"
function Queue:push(item)
  checkself(self, Queue, "queue", "push")
  if self.stopping then
    return nil, "stopping"
  end
  while true do
    local rec = fifo_shift(self.poppers)
    if rec == nil then break end
    rec.item = item
    if release(rec, "granted") then
      local co = rec.thread[1]
      if self.workers[co] then self.busy[co] = true end
      return true
    end
  end
  self.last = self.last + 1
  self.items[self.last] = item
  return true
end


--- Removes and returns the oldest item, waiting up to `timeout` seconds
-- (default 10; 0 never waits, math.huge waits forever). A nil item comes
-- back as a single nil: check the second value.
-- @param timeout seconds
-- @return item | nil, "timeout" | nil, "destroyed"
function Queue:pop(timeout)
  checkself(self, Queue, "queue", "pop")
  check_timeout(timeout, "1st")
  if self.first <= self.last then
    local item = self.items[self.first]
    self.items[self.first] = nil
    self.first = self.first + 1
    local co = loop:current()
    if co ~= nil and self.workers[co] then
      self.busy[co] = true  -- before a stopping queue destroys itself below
    end
    if self.first > self.last then
      self.first, self.last = 1, 0
      if self.stopping then self:destroy() end
    end
    return item
  end
  if timeout == nil then timeout = DEFAULT_TIMEOUT end
  if timeout == 0 then
    return nil, "timeout"
  end

  local rec = { state = "waiting" }
  wait(self.poppers, rec, timeout)
  if rec.state == "granted" then
    return rec.item
  end
  if self.destroyed then
    return nil, "destroyed"
  end
  return nil, "timeout"
end


--- @return the number of items in the queue | nil, "destroyed"
function Queue:get_size()
  checkself(self, Queue, "queue", "get_size")
  return self.last - self.first + 1
end


--- @return an array of the live worker coroutines (oldest first) | nil,
-- "destroyed"
function Queue:get_workers()
  checkself(self, Queue, "queue", "get_workers")
  local list = {}
  for co in pairs(self.workers) do
    if alive(co) then list[#list + 1] = co end
  end
  local order = self.workers
  table_sort(list, function(a, b) return order[a] < order[b] end)
  return list
end


--- Refuses further pushes; the queue destroys itself when its last item is
-- popped, at once if it is empty.
-- @return true | nil, "destroyed"
function Queue:stop()
  checkself(self, Queue, "queue", "stop")
  if not self.stopping then
    self.stopping = true
    if self.first > self.last then
      self:destroy()
    end
  end
  return true
end


--- Stops the queue, then waits up to `timeout` seconds (default 10) until
-- it is empty and every worker is done with its last item. On a timeout
-- the queue is destroyed unless `no_destroy_on_timeout`.
-- @param timeout seconds
-- @param no_destroy_on_timeout boolean
-- @return true | nil, "timeout" | nil, "destroyed"
function Queue:finish(timeout, no_destroy_on_timeout)
  checkself(self, Queue, "queue", "finish")
  check_timeout(timeout, "1st")
  if timeout == nil then timeout = DEFAULT_TIMEOUT end
  self:stop()
  check_finished(self)
  if self.destroyed and next(self.busy) == nil then
    return true
  end
  if timeout == 0 then
    if not no_destroy_on_timeout then self:destroy() end
    return nil, "timeout"
  end

  local rec = { state = "waiting" }
  wait(self.finishers, rec, timeout)
  if rec.state == "done" then
    return true
  end
  if not no_destroy_on_timeout and not self.destroyed then
    self:destroy()
  end
  return nil, "timeout"
end


do
  --- Destroys the queue: drops its items, waiting pops return nil,
  -- "destroyed", workers exit; afterwards every method returns nil,
  -- "destroyed".
  -- @return true
  function Queue:destroy()
    checkself(self, Queue, "queue", "destroy")
    self.destroyed = true
    self.stopping = true
    setmetatable(self, waitqueue.destroyed_mt)
    self.items, self.first, self.last = {}, 1, 0
    while true do
      local rec = fifo_shift(self.poppers)
      if rec == nil then break end
      release(rec, "destroyed")
    end
    check_finished(self)
    return true
  end
end


--- Adds a worker thread "<name>:worker_<n>" that pops forever and calls
-- `fn(item)` for every item (nil included); it exits when the queue is
-- destroyed. An error in `fn` ends that worker only (error handler called).
-- Raises "expected worker to be a function".
-- @param fn function(item)
-- @return the worker coroutine | nil, "destroyed"
function Queue:add_worker(fn)
  checkself(self, Queue, "queue", "add_worker")
  if type(fn) ~= "function" then
    error("expected worker to be a function", 2)
  end
  self.worker_count = self.worker_count + 1
  local name = self.name .. ":worker_" .. self.worker_count

  local function done(co)
    self.workers[co] = nil
    self.busy[co] = nil
    check_finished(self)
  end

  local function on_error(err, co, skt)
    done(co)
    return default_handler()(err, co, skt)
  end

  local co
  co = copas.addnamedthread(name, function()
    copas.seterrorhandler(on_error)
    while true do
      local item, err = self:pop(huge)
      if item == nil and err ~= nil then break end  -- destroyed
      self.busy[co] = true
      fn(item)
      self.busy[co] = nil
      check_finished(self)
    end
    done(co)
  end)
  self.workers[co] = self.worker_count
  return co
end


return Queue
