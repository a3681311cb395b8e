-------------------------------------------------------------------------------
-- copas.waitqueue (internal): the FIFO of waiting threads that copas.lock,
-- copas.semaphore and copas.queue share.
--
-- Records are tables with a `state` field, "waiting" until the primitive
-- hands over, the waiter times out or the primitive is destroyed. Records
-- that stop waiting away from the head stay as tombstones until they reach
-- the head, or until a compaction when they are the majority.
-------------------------------------------------------------------------------

local copas = require "copas"

local type, getmetatable, coroutine_status = type, getmetatable, coroutine.status
local loop = copas._loop

local M = {}

-- does copas still hold `co` (not finished, not removed)?
local function alive(co)
  return type(co) == "thread" and loop:state(co) ~= nil and coroutine_status(co) ~= "dead"
end


-- an empty queue
local function fifo_new()
  return { first = 1, last = 0, dead = 0 }
end


-- append a waiting record
local function fifo_push(q, rec)
  q.last = q.last + 1
  q[q.last] = rec
end


-- drop every tombstone
local function fifo_compact(q)
  local n = q.first - 1
  for i = q.first, q.last do
    local rec = q[i]
    q[i] = nil
    if rec.state == "waiting" then
      n = n + 1
      q[n] = rec
    end
  end
  q.last, q.dead = n, 0
end


-- a record stopped waiting while still queued
local function fifo_abandon(q)
  q.dead = q.dead + 1
  if q.dead > 16 and q.dead * 2 > q.last - q.first + 1 then
    fifo_compact(q)
  end
end


-- the oldest record still waiting, removed from the queue; nil if none
local function fifo_shift(q)
  while q.first <= q.last do
    local rec = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    if rec.state == "waiting" then return rec end
    q.dead = q.dead - 1
  end
  q.first, q.last, q.dead = 1, 0, 0
  return nil
end


-- the oldest record still waiting, left in the queue; nil if none
local function fifo_head(q)
  while q.first <= q.last do
    local rec = q[q.first]
    if rec.state == "waiting" then return rec end
    q[q.first] = nil
    q.first = q.first + 1
    q.dead = q.dead - 1
  end
  q.first, q.last, q.dead = 1, 0, 0
  return nil
end


-- remove the head (after fifo_head returned it)
local function fifo_drop_head(q)
  q[q.first] = nil
  q.first = q.first + 1
end

-- the metatable of a destroyed primitive: every method returns nil, "destroyed"
local function destroyed()
  return nil, "destroyed"
end
M.destroyed_mt = { __index = function() return destroyed end }

-- raises "calling '<fname>' on bad self (<cname> expected, got <type>)"
-- unless `self` is an object of `class` (live or destroyed): the usual slip
-- is `obj.method()` for `obj:method()`
function M.checkself(self, class, cname, fname)
  local mt = getmetatable(self)
  if mt ~= class and mt ~= M.destroyed_mt then
    error(("calling '%s' on bad self (%s expected, got %s)"):format(fname, cname, type(self)), 3)
  end
end

M.alive = alive
M.new = fifo_new
M.push = fifo_push
M.compact = fifo_compact
M.abandon = fifo_abandon
M.shift = fifo_shift
M.head = fifo_head
M.drop_head = fifo_drop_head

return M
