-------------------------------------------------------------------------------
-- copas.timer: one-shot and recurring timers running as copas threads.
--
-- An armed timer is a thread (named after the timer) that sleeps until its
-- deadline and then calls the callback; a recurring one sleeps `delay`
-- again after each run. An idle timer is cancelled by removing its thread.
-- A callback error ends the thread; the timer's error handler reports it
-- and, for a recurring timer, starts a new thread for the next run. So the
-- callback runs unprotected and may yield on every Lua version.
-- @module copas.timer
-------------------------------------------------------------------------------

local copas = require "copas"
local checkself = require("copas.waitqueue").checkself

local coroutine_running = coroutine.running
local coroutine_status = coroutine.status
local setmetatable, type, error = setmetatable, type, error

local loop = copas._loop

local timer = {}
timer.__index = timer


-- does copas still hold `co` (not finished, not removed)?
local function alive(co)
  return type(co) == "thread" and loop:state(co) ~= nil and coroutine_status(co) ~= "dead"
end

-- the default error handler, looked up at call time (a coroutine that never
-- runs has no handler of its own)
local no_handler_co = coroutine.create(function() end)
local function default_handler()
  return copas.geterrorhandler(no_handler_co)
end

local new_name do
  local count = 0
  function new_name()
    count = count + 1
    return "copas_timer_" .. count
  end
end

local function check_delay(d)
  if type(d) ~= "number" or not (d >= 0) then  -- luacheck: ignore 581 (true for NaN too)
    error("delay must be greater than or equal to 0", 3)
  end
end


-- the thread is `self.co` while the timer is armed; it stops as soon as it
-- is not (cancelled, or replaced by a new arm)
local spawn

local function run(self, deadline)
  local co = coroutine_running()
  copas.seterrorhandler(self.on_error)
  local left = deadline - copas.gettime()
  copas.pause(left > 0 and left or 0)
  while self.co == co do
    if not self.recurring then
      self.co = nil       -- a one-shot timer may re-arm from its callback
    end
    self.firing = co
    self.callback(self, self.params)
    self.firing = nil
    if self.co ~= co or self.cancelled then break end
    copas.pause(self.delay)
  end
  if self.co == co then self.co = nil end
end

function spawn(self, delay)
  self.cancelled = false
  self.firing = nil
  self.co = copas.addnamedthread(self.name, run, self, copas.gettime() + delay)
end

-- the timer thread's error handler: report, then keep a recurring timer going
local function error_handler(self)
  return function(err, co, skt)
    if self.firing == co then self.firing = nil end
    if self.co == co then
      self.co = nil
      if self.recurring and not self.cancelled then
        spawn(self, self.delay)
      end
    end
    local handler = self.errorhandler or default_handler()
    return handler(err, co, skt)
  end
end


--- Creates a timer and arms it.
-- `opts.delay` (>= 0) and `opts.callback(timer, params)` are required;
-- optional `recurring`, `initial_delay` (first delay, default `delay`),
-- `params`, `name` (default "copas_timer_<n>", also the thread name) and
-- `errorhandler` (for callback errors; default: the default handler).
-- Raises "delay must be greater than or equal to 0" or "expected callback
-- to be a function".
-- @param opts table
-- @usage local t = copas.timer.new {
--   delay = 1, recurring = true,
--   callback = function(timer, params) print("tick", params) end,
--   params = "every second",
-- }
-- -- later: t:cancel()
-- @return the armed timer
function timer.new(opts)
  if type(opts) ~= "table" then
    error("expected options (1st argument) to be a table", 2)
  end
  check_delay(opts.delay)
  if type(opts.callback) ~= "function" then
    error("expected callback to be a function", 2)
  end
  if opts.initial_delay ~= nil then check_delay(opts.initial_delay) end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error("expected name to be a string", 2)
  end
  if opts.errorhandler ~= nil and type(opts.errorhandler) ~= "function" then
    error("expected errorhandler to be a function", 2)
  end
  local self = setmetatable({
    name = opts.name or new_name(),
    delay = opts.delay,
    recurring = not not opts.recurring,
    params = opts.params,
    callback = opts.callback,
    errorhandler = opts.errorhandler,
    co = nil,           -- the armed timer's thread
    firing = nil,       -- the thread running the callback right now
    cancelled = false,  -- cancelled while its callback was running
  }, timer)
  self.on_error = error_handler(self)
  return self:arm(opts.initial_delay)
end


--- A timer, made by `new`. Readable fields: `name`, `delay`, `recurring`,
-- `params`.
-- @type timer

--- Arms the timer: the callback runs `initial_delay` (default `delay`)
-- seconds from now. A one-shot timer may re-arm itself from its callback.
-- Raises "delay must be greater than or equal to 0".
-- @param initial_delay seconds (default: the timer's `delay`)
-- @return the timer | nil, "already armed"
function timer:arm(initial_delay)
  checkself(self, timer, "timer", "arm")
  if initial_delay ~= nil then check_delay(initial_delay) end
  local co = self.co
  if co ~= nil and alive(co) and not self.cancelled then
    return nil, "already armed"
  end
  spawn(self, initial_delay or self.delay)
  return self
end


--- Cancels the timer. An idle timer's thread ends at once; a callback in
-- progress finishes, and the timer does not run again.
-- @return the timer | nil, "not armed" | nil, "already cancelled"
function timer:cancel()
  checkself(self, timer, "timer", "cancel")
  local co = self.co
  if co == nil or not alive(co) then
    self.co = nil
    return nil, "not armed"
  end
  if self.cancelled then
    return nil, "already cancelled"
  end
  if self.firing == co then
    self.cancelled = true   -- the thread stops after the callback returns
  else
    self.co = nil
    copas.removethread(co)
  end
  return self
end


return timer
