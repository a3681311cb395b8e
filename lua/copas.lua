-------------------------------------------------------------------------------
-- Copas: coroutine-oriented networking over LuaSocket and LuaSec.
--
-- The public API of Copas 4.11. Scheduling, waiting sets and timers live in
-- the C module `copas.core`; this file normalises arguments, wraps sockets
-- and turns each wait into a yield of `(what, queue[, deadline])` that the
-- core interprets.
-- @module copas
-------------------------------------------------------------------------------

local core = require "copas.core"

local has_socket, socket = pcall(require, "socket")
if not has_socket then socket = nil end

local coroutine_running = coroutine.running
local yield = coroutine.yield
local now = core.now
local type, tostring, select, pcall, error = type, tostring, select, pcall, error
local setmetatable, getmetatable, rawget = setmetatable, getmetatable, rawget
local unpack = table.unpack or unpack  -- luacheck: ignore 143 (unpack is 5.1's)
local floor = math.floor

local READ, WRITE, SLEEP = core.READ, core.WRITE, core.SLEEP

-- submodules are loaded on first use; a fresh load of copas gets fresh ones
local submodules = {
  http = true, ftp = true, smtp = true, timer = true, lock = true,
  semaphore = true, queue = true, future = true, limit = true,
}
for _, name in ipairs { "http", "ftp", "smtp", "timer", "lock", "semaphore", "queue",
                        "future", "limit", "worker", "resolver", "waitqueue" } do
  package.loaded["copas." .. name] = nil
end

local copas = {
  _VERSION = "Copas 4.11.0 (copas-c 0.1.0, C dispatcher)",
  _COPYRIGHT = "Copyright (C) 2026 the copas-c authors",
  _DESCRIPTION = "Coroutine dispatcher over LuaSocket and LuaSec, with its scheduler in C",
  running = false,
  autoclose = true,
}

setmetatable(copas, {
  __call = function(_, ...) return copas.loop(...) end,
  __index = function(self, key)
    if submodules[key] then
      local mod = require("copas." .. key)
      rawset(self, key, mod)
      return mod
    end
  end,
})

local loop = core.new()
copas._loop = loop  -- internal: the C scheduler, for copas.limit

local weak_keys = { __mode = "k" }
local thread_names = setmetatable({}, weak_keys)   -- thread -> name, or its accepted client
-- Accepted clients and their handler threads are named on demand, from one
-- number per client: the server's number * 2^32 + the client's count (an
-- idle connection stays small). The handler's entry in thread_names is its
-- client socket.
local accept_tags = setmetatable({}, weak_keys)    -- client -> tag
local server_by_no = setmetatable({}, { __mode = "v" })
local servers_added = 0
local TAG_BASE = 2 ^ 32
local socket_names = setmetatable({}, weak_keys)
local errhandlers = setmetatable({}, weak_keys)
local raw_errors = setmetatable({}, weak_keys)      -- thread -> useSocketTimeoutErrors
local sock_timeouts = setmetatable({}, weak_keys)   -- socket -> {connect, send, receive}
local servers = {}                                  -- server socket -> {handler, count}
local exit_waiters = {}                             -- threads in waitforexit, in order

-- sockets made non-blocking, marked TCP, DRAINED (TCP, see do_receive) or
-- UDP, plus TIMED once the socket has an entry in sock_timeouts. One table
-- for all keeps an idle connection small; a TCP mark lets receive and send
-- skip their checks, and the core's receive and send (csrc/bind_io.c) learn
-- all they need of a socket from one lookup.
local nonblocking = setmetatable({}, weak_keys)
local TCP, DRAINED, UDP, TIMED = 1, 2, 3, 4
-- every change of a mark goes through set_mark: on Lua 5.3 and later the
-- core's version (below), which also updates the copy it keeps
local function set_mark(skt, mark) nonblocking[skt] = mark end
local debug_log                                     -- logger while debugging
local exiting = false


local udp_classes = setmetatable({}, weak_keys)   -- metatable -> is it UDP?

local function is_udp(skt)
  if type(skt) ~= "userdata" then return false end
  local mt = getmetatable(skt) or false
  local udp = udp_classes[mt]
  if udp == nil then
    local class = skt.class
    udp = type(class) == "string" and class:sub(1, 3) == "udp"
    udp_classes[mt] = udp
  end
  return udp
end


-- The socket functions work on raw sockets whatever their LuaSocket
-- timeout: each socket is made non-blocking the first time it is used.
local function make_nonblocking(skt)
  if not nonblocking[skt] then
    skt:settimeout(0)
    set_mark(skt, (is_udp(skt) and UDP or TCP) + (sock_timeouts[skt] and TIMED or 0))
  end
end

-- the kind of a mark: TCP, DRAINED, UDP (nil: not made non-blocking)
local function kind_of(mark)
  return mark and mark % TIMED
end

local function set_timeouts(skt, t)
  sock_timeouts[skt] = t
  local mark = nonblocking[skt]
  if mark and mark < TIMED then set_mark(skt, mark + TIMED) end
end


-- argument checks ------------------------------------------------------------

-- raise "bad argument #n to 'fname' (msg)" at the caller of the public
-- function; `level` counts the frames above argerror's caller (default: a
-- check made directly in the public function)
local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level or 3)
end

local function check_type(v, want, n, fname, optional, level)
  local got = type(v)
  if got ~= want and not (optional and v == nil) then
    argerror(n, fname, want .. " expected, got " .. got, level or 4)
  end
end

-- a callable value: a function or a table/userdata with __call
local function check_callable(v, n, fname, optional)
  if optional and v == nil then return end
  if type(v) == "function" then return end
  local mt = (type(v) == "table" or type(v) == "userdata") and getmetatable(v)
  if type(mt) == "table" and mt.__call ~= nil then return end
  argerror(n, fname, "function expected, got " .. type(v), 4)
end

local function check_seconds(v, n, fname, optional)
  check_type(v, "number", n, fname, optional, 5)
  if v ~= v then argerror(n, fname, "number expected, got NaN", 4) end
end


-------------------------------------------------------------------------------
-- Names of threads and sockets.
-- @section names
-------------------------------------------------------------------------------

local function real_socket(skt)
  if type(skt) == "table" and rawget(skt, "socket") ~= nil and getmetatable(skt)
     and getmetatable(skt).copas_wrapper then
    return skt.socket
  end
  return skt
end

-- "<server name>:handler_<n>" / ":client_<n>" of an accepted client
local function accepted_name(client, what)
  local tag = accept_tags[client]
  if not tag then return tostring(client) end
  local n = tag % TAG_BASE
  local server = server_by_no[(tag - n) / TAG_BASE]
  return (server and copas.getsocketname(server) or "server") .. what .. ("%d"):format(n)
end

--- Name of a thread.
-- @param co a coroutine (default: the running one)
-- @return the name given with `setthreadname` or `addnamedthread`, else
-- `tostring(co)`
function copas.getthreadname(co)
  if co ~= nil and type(co) ~= "thread" then error("expected arg #1 to be a coroutine or nil", 2) end
  co = co or coroutine_running()
  local name = thread_names[co]
  if name ~= nil and type(name) ~= "string" then return accepted_name(name, ":handler_") end
  return name or tostring(co)
end

--- Names a thread, for tracebacks and `copas.debug`.
-- Raises "expected arg #1 to be a string" for a name that is not a string.
-- @param name string
-- @param co a coroutine (default: the running one)
function copas.setthreadname(name, co)
  if type(name) ~= "string" then error("expected arg #1 to be a string", 2) end
  if co ~= nil and type(co) ~= "thread" then error("expected arg #2 to be a coroutine or nil", 2) end
  thread_names[co or coroutine_running()] = name
end

--- Name of a socket. A wrapper answers for the socket it wraps.
-- Raises "expected arg #1 to be a socket" when `skt` is missing.
-- @param skt a socket or a wrapper
-- @return the name given with `setsocketname` (or generated for an accepted
-- client, `<server>:client_<n>`), else `tostring(skt)`
function copas.getsocketname(skt)
  local t = type(skt)
  if t ~= "userdata" and t ~= "table" then error("expected arg #1 to be a socket", 2) end
  skt = real_socket(skt)
  local name = socket_names[skt]
  if name == nil and accept_tags[skt] then return accepted_name(skt, ":client_") end
  return name or tostring(skt)
end

--- Names a socket. The name carries over when the socket is wrapped in TLS.
-- @param name string
-- @param skt a socket or a wrapper (raises "expected arg #2 to be a socket"
-- when missing)
function copas.setsocketname(name, skt)
  if type(name) ~= "string" then error("expected arg #1 to be a string", 2) end
  local t = type(skt)
  if t ~= "userdata" and t ~= "table" then error("expected arg #2 to be a socket", 2) end
  socket_names[real_socket(skt)] = name
end


-------------------------------------------------------------------------------
-- Error handlers.
-- @section errors
-------------------------------------------------------------------------------

--- Error message with thread and socket names and a stack traceback.
-- The first line reads `<msg> (coroutine: <name>, socket: <name>)`, with
-- `nil` for an absent thread or socket; an empty or nil `msg` leaves just
-- the parenthesis.
-- @param msg the error (any value; `tostring` is applied)
-- @param co the coroutine whose stack is shown (default: the caller's)
-- @param skt the socket involved, or nil
-- @return string
function copas.gettraceback(msg, co, skt)
  if co ~= nil then check_type(co, "thread", 2, "gettraceback") end
  if skt ~= nil and type(skt) ~= "userdata" and type(skt) ~= "table" then
    argerror(3, "gettraceback", "socket expected, got " .. type(skt))
  end
  local co_name = co == nil and "nil" or copas.getthreadname(co)
  local skt_name = skt == nil and "nil" or copas.getsocketname(skt)
  msg = msg == nil and "" or tostring(msg)
  local where = ("(coroutine: %s, socket: %s)"):format(co_name, skt_name)
  msg = msg == "" and where or (msg .. " " .. where)
  local tb
  if type(co) == "thread" then
    tb = debug.traceback(co, msg)
  else
    tb = debug.traceback(msg, 2)
  end
  return tb   -- not a tail call: LuaJIT would drop the caller's frame
end

local function print_handler(msg, co, skt)
  print(copas.gettraceback(msg, co, skt))   -- the global print, looked up now
end

local default_handler = print_handler

--- Sets an error handler, called as `handler(err, co, skt)` when a thread
-- dies with an error. Without `default` it is the running thread's handler
-- (nil removes it); with `default` it replaces the handler of every thread
-- that has none (which prints `gettraceback` through the global `print`).
-- Raises "Expected the handler to be a function, or nil" and "Expected the
-- handler to be a function when setting the default".
-- @param handler function or nil
-- @param default truthy to set the default handler
-- @usage copas.seterrorhandler(function(err, co, skt)
--   io.stderr:write(copas.gettraceback(err, co, skt), "\n")
-- end, true)
function copas.seterrorhandler(handler, default)
  if handler ~= nil and type(handler) ~= "function" then
    error("Expected the handler to be a function, or nil", 2)
  end
  if default then
    if handler == nil then
      error("Expected the handler to be a function when setting the default", 2)
    end
    default_handler = handler
  else
    errhandlers[coroutine_running()] = handler
  end
end

--- Alias of `seterrorhandler`.
-- @function setErrorHandler
copas.setErrorHandler = copas.seterrorhandler

--- The error handler of a thread.
-- @param co a coroutine (default: the running one)
-- @return its own handler, else the default one
function copas.geterrorhandler(co)
  if co ~= nil then check_type(co, "thread", 1, "geterrorhandler") end
  co = co or coroutine_running()
  return errhandlers[co] or default_handler
end

local function call_handler(handler, err, co, skt)
  local ok, e = pcall(handler, err, co, skt)
  if not ok then
    print("Failed executing error handler: " .. tostring(e))
  end
end


-- hooks the core calls -------------------------------------------------------

local function close_quietly(skt)
  if skt ~= nil then pcall(copas.close, skt) end
end

local function accept_clients(server)
  local srv = servers[server]
  if srv == nil then return end
  local tmo = sock_timeouts[server]
  for _ = 1, 64 do
    local client, err = server:accept()
    if not client then
      if err ~= "timeout" then
        -- out of descriptors (EMFILE) or similar: the listening socket stays
        -- readable, so stop watching it for a while instead of spinning
        loop:removeserver(server)
        local retry = loop:spawn(function()
          yield(0.1, SLEEP)
          if servers[server] == srv then loop:addserver(server) end
        end)
        thread_names[retry] = copas.getsocketname(server) .. ":accept_retry"
      end
      return
    end
    make_nonblocking(client)
    if tmo then
      set_timeouts(client, { connect = tmo.connect, send = tmo.send, receive = tmo.receive })
    end
    local n = srv.count + 1
    srv.count = n
    accept_tags[client] = srv.no * TAG_BASE + n
    local co = loop:spawnfirst(srv.handler, client)
    thread_names[co] = client
    loop:setsocket(co, client, copas.autoclose and true or false)
  end
end

local function thread_ended(co, err, skt, closeskt, errored)
  if debug_log then debug_log("exiting '", copas.getthreadname(co), "'") end
  if errored then
    call_handler(errhandlers[co] or default_handler, err, co, skt)
  end
  if closeskt ~= nil then close_quietly(closeskt) end
end

-- A timeout callback runs in an internal thread named "copas_core_timer";
-- its errors go to the default handler with that thread, whose stack still
-- holds the callback's frames for the traceback.
local function run_timeout(callback, co)
  if callback == nil then return end
  local tco = coroutine.create(callback)
  thread_names[tco] = "copas_core_timer"
  local ok, err = coroutine.resume(tco, co)
  if ok and coroutine.status(tco) ~= "dead" then
    ok, err = false, "a copas.timeout callback may not yield"
  end
  if not ok then call_handler(default_handler, err, tco, nil) end
end

local function resuming(_, co)
  if debug_log then debug_log("resuming '", copas.getthreadname(co), "'") end
end

loop:sethooks { thread_ended, accept_clients, run_timeout, resuming }


-------------------------------------------------------------------------------
-- Threads, sleeping and per-thread timeouts.
-- @section threads
-------------------------------------------------------------------------------

--- Adds a thread that calls `fn(...)`.
-- The thread first runs in a later round of the loop, never inside this
-- call; threads added in one round start in the order they were added. The
-- return value of `fn` is dropped; an error goes to the error handler.
-- @param fn function
-- @param ... arguments for `fn` (nils included)
-- @return the coroutine
-- @usage copas.addthread(function(n)
--   for i = 1, n do print(i); copas.pause(0.1) end
-- end, 3)
-- copas.loop()
function copas.addthread(fn, ...)
  check_type(fn, "function", 1, "addthread")
  return loop:spawn(fn, ...)
end

--- Adds a thread with a name, as `addthread`. The order `(fn, name, ...)`
-- is accepted as well.
-- @param name string or nil
-- @param fn function
-- @param ... arguments for `fn`
-- @return the coroutine
function copas.addnamedthread(name, fn, ...)
  if type(name) == "function" and (type(fn) == "string" or fn == nil) then
    name, fn = fn, name
  end
  check_type(fn, "function", 2, "addnamedthread")
  if name ~= nil then check_type(name, "string", 1, "addnamedthread") end
  local co = loop:spawn(fn, ...)
  if name then thread_names[co] = name end
  return co
end

--- Removes a thread: it is never resumed again, wherever it waits
-- (runnable, sleeping, on a socket, in a lock, semaphore or queue). Its
-- waits are dropped at once and its error handler is not called. Removing
-- the running thread takes effect at its next suspension. Anything that is
-- not a live Copas thread is ignored.
-- @param co coroutine
function copas.removethread(co)
  if type(co) ~= "thread" then return end
  local closeskt = loop:remove(co)
  if closeskt ~= nil then close_quietly(closeskt) end
end

-- copas.pause runs in the core (one call level less than a Lua function
-- around coroutine.yield); this is its path for anything but a plain
-- number, and for every call while debugging: raises on bad input, logs,
-- and returns the seconds to sleep
local function pause_slow(s)
  if type(s) ~= "number" or s ~= s then
    if s ~= nil then
      -- levels: argerror, check_type, this function, the C pause, its caller
      check_type(s, "number", 1, "pause", false, 5)
      argerror(1, "pause", "number expected, got NaN", 4)
    end
    s = 0
  elseif s < 0 then
    s = 0
  end
  if debug_log then debug_log("yielding '", copas.getthreadname(), "' to SLEEP for ", s, " seconds") end
  return s
end

--- Yields the running thread for `s` seconds.
-- Raises for a non-number other than nil.
-- @function copas.pause
-- @param s seconds; nil, 0 or negative yields for one round
-- @return the seconds actually slept (less than `s` when woken early with
-- `wakeup`)
copas.pause = loop:pausefn(pause_slow)

--- Yields the running thread until `wakeup` is called for it. Such a thread
-- does not keep the loop alive.
-- @return the seconds slept
function copas.pauseforever()
  if debug_log then debug_log("yielding '", copas.getthreadname(), "' to SLEEP for ", -1, " seconds") end
  return yield(-1, SLEEP)
end

-- Internal, for the sync primitives: as pauseforever, but the scheduler
-- holds the thread strongly while it waits (a plain pauseforever thread
-- nobody refers to is collectable; one waiting for a lock is not), until
-- it is woken or removed.
function copas._waitforever()
  return yield(-1, SLEEP, true)
end

--- Deprecated: use `pause` or `pauseforever`.
-- @param s negative: sleep until woken; nil or 0: one round; positive:
-- seconds
function copas.sleep(s)
  if s ~= nil then check_seconds(s, 1, "sleep") end
  if s ~= nil and s < 0 then
    copas.pauseforever()
  else
    copas.pause(s)
  end
end

--- Wakes a thread that is in `pause`, `pauseforever` or `sleep`; its pause
-- returns the time slept. A thread waiting inside a lock, semaphore, queue
-- or future treats this as a spurious wake-up and keeps waiting.
-- @param co coroutine
-- @return `true`, or `nil, "not sleeping"` when `co` was not sleeping
function copas.wakeup(co)
  check_type(co, "thread", 1, "wakeup")
  return loop:wakeup(co)
end

--- Arms, re-arms or cancels the running thread's timeout.
-- On expiry `callback(co)` is called once, from an internal thread named
-- `copas_core_timer`; it must not yield. Socket operations and the sync
-- primitives use the same per-thread slot, so a timeout armed before a
-- socket call does not survive it. Deadlines are exact (no tick).
-- Raises for a negative or non-number `delay`, and outside a Copas thread.
-- @param delay seconds; 0 or `math.huge` cancels
-- @param callback function or nil
-- @return true
-- @usage copas.addthread(function()
--   copas.timeout(1, function(co) copas.wakeup(co) end)
--   copas.pauseforever()          -- woken by the callback after 1 s
--   copas.timeout(0)              -- cancel (already fired here)
-- end)
function copas.timeout(delay, callback)
  check_seconds(delay, 1, "timeout")
  if delay < 0 then argerror(1, "timeout", "timeout must not be negative") end
  check_type(callback, "function", 2, "timeout", true)
  if loop:current() == nil then
    error("copas.timeout must be called from inside a copas thread", 2)
  end
  loop:timeout(delay, callback)
  return true
end

--- Number of armed timeouts (`status().timeout`).
-- @return integer
function copas.gettimeouts()
  local _, _, _, _, _, timeouts = loop:status()
  return timeouts
end


-------------------------------------------------------------------------------
-- Running the loop.
-- @section loop
-------------------------------------------------------------------------------

--- Wall-clock time: seconds since the epoch, with sub-second precision.
-- Implemented in C (`copas.core.gettime`). Deadlines inside the loop use a
-- monotonic clock and ignore changes of the wall clock.
-- @function gettime
-- @return number
copas.gettime = core.gettime

--- Whether nothing is left to do: no runnable or sleeping thread, no socket
-- or server waited on, no pending worker job or DNS lookup, and no thread in
-- `pauseforever` with an armed timeout.
-- @return boolean
function copas.finished()
  return loop:finished()
end

--- Runs one round: waits for sockets (not at all if a thread is runnable,
-- else until the earliest deadline, at most `timeout`), resumes the threads
-- whose sockets are ready, the sleepers whose deadline passed, then the
-- threads that were runnable when the round began. Returns at once when
-- nothing could ever wake it. Usable from a foreign main loop.
-- @param timeout seconds (default: no cap)
-- @return `true` when sockets were ready, `false` otherwise, `nil, err`
-- when the poller failed
function copas.step(timeout)
  if timeout ~= nil then check_seconds(timeout, 1, "step") end
  return loop:step(timeout)
end

--- Marks the program as exiting and releases every thread in
-- `waitforexit`. `loop` calls it by itself when it runs out of work.
function copas.exit()
  exiting = true
  local waiters = exit_waiters
  exit_waiters = {}
  for _, co in ipairs(waiters) do loop:wakeup(co) end
end

--- Whether `exit` was called (including by `loop`) since the last `loop`
-- started.
-- @return boolean
function copas.exiting()
  return exiting
end

--- Yields until `exit` is called; returns at once when already exiting.
-- A thread waiting here does not keep the loop alive.
function copas.waitforexit()
  while not exiting do
    exit_waiters[#exit_waiters + 1] = coroutine_running()
    copas.pauseforever()
  end
end

--- Runs the loop until nothing is left to do. When it first runs out of
-- work it calls `exit`, lets the threads released from `waitforexit` run,
-- and returns once no work is left. Errors in threads never end it; it may
-- be called again after it returned. `copas(...)` is the same call.
-- Raises when called inside a running loop.
-- @param init a function run as the thread `copas_initializer`; if not a
-- function, it is taken as `timeout`
-- @param timeout seconds, caps each wait of a round (not the loop's run
-- time)
-- @usage copas.loop(function()
--   copas.pause(0.5)
--   print("half a second later")
-- end)
function copas.loop(init, timeout)
  if copas.running then
    error("copas.loop: the loop is already running", 2)
  end
  local targ = 2
  if type(init) == "function" then
    copas.addnamedthread("copas_initializer", init)
  elseif init then
    timeout, targ = init, 1
  end
  if timeout ~= nil then check_seconds(timeout, targ, "loop") end
  exiting = false
  copas.running = true
  while true do
    loop:step(timeout)
    if loop:finished() then
      if exiting then break end
      copas.exit()
    end
  end
  copas.running = false
end

--- Drops every thread except the caller, cancels every timeout, forgets
-- pending worker and DNS jobs, removes and closes every server and every
-- socket a thread waited on. Does not call `exit`.
-- @return true
function copas.removeall()
  local to_close = loop:removeall()
  for skt in pairs(to_close) do
    servers[skt] = nil
    close_quietly(skt)
  end
  for k in pairs(servers) do servers[k] = nil end
  exit_waiters = {}
  return true
end

--- `removeall` followed by `exit`: ends a running loop promptly.
function copas.cancelall()
  copas.removeall()
  copas.exit()
end

local stats_on = false

local function round3(x) return floor(x * 1000 + 0.5) / 1000 end

--- Counts of the scheduler's work, and optional per-round statistics.
-- Always present: `running`, `read`, `write` (sockets waited on, servers
-- included), `active` (runnable threads), `timer` (sleeping with a
-- deadline), `inactive` (in `pauseforever`, including sync primitives),
-- `timeout` (armed timeouts). With statistics on, also `steps`,
-- `duration_tot`, `duration_min`, `duration_max`, `duration_avg`,
-- `duration_min_ever`, `duration_max_ever` (milliseconds spent running
-- threads), `time_start`, `time_end`, `time_tot` (seconds) and `time_avg`
-- (milliseconds per round); each call starts a new window.
-- @param enable_stats `true` switches statistics on, `false` off
-- @return table
function copas.status(enable_stats)
  local read, write, active, timer, inactive, timeouts = loop:status()
  local res = {
    running = copas.running, read = read, write = write, active = active,
    timer = timer, inactive = inactive, timeout = timeouts,
  }
  if enable_stats == false then
    loop:stats(false)
    stats_on = false
  elseif stats_on then
    local steps, tot, min, max, min_ever, max_ever, start = loop:stats()
    local t_end = core.gettime()
    res.steps = steps
    res.duration_tot = round3(tot * 1000)
    res.duration_min = round3(min * 1000)
    res.duration_max = round3(max * 1000)
    res.duration_avg = steps > 0 and round3(tot * 1000 / steps) or 0
    res.duration_min_ever = round3(min_ever * 1000)
    res.duration_max_ever = round3(max_ever * 1000)
    res.time_start = round3(start)
    res.time_end = round3(t_end)
    res.time_tot = round3(t_end - start)
    res.time_avg = steps > 0 and round3((t_end - start) * 1000 / steps) or 0
  elseif enable_stats == true then
    loop:stats(true)
    stats_on = true
  end
  return res
end


-------------------------------------------------------------------------------
-- Debugging.
-- @section debugging
-------------------------------------------------------------------------------

copas.debug = {}

--- Reports every yield, resume and thread exit through `logger`.
-- @param logger function called with the parts of each message (default:
-- the global `print`)
function copas.debug.start(logger)
  check_callable(logger, 1, "debug.start", true)
  debug_log = logger or function(...) return print(...) end
  loop:debug(true)
end

--- Stops the reporting started by `debug.start`.
function copas.debug.stop()
  debug_log = nil
  loop:debug(false)
end


-- coroutine-safe socket.protect / newtry / try -------------------------------

local pcall_yieldable = pcall
if _VERSION == "Lua 5.1" and not jit then  -- luacheck: ignore 113 (jit is LuaJIT's)
  -- PUC 5.1 cannot yield across pcall: run the function in a coroutine of
  -- its own and pass its yields on to the scheduler
  pcall_yieldable = function(fn, ...)
    local co = coroutine.create(fn)
    local function relay(ok, ...)
      if not ok then return false, ... end
      if coroutine.status(co) == "dead" then return true, ... end
      return relay(coroutine.resume(co, yield(...)))
    end
    return relay(coroutine.resume(co, ...))
  end
end
copas._pcall = pcall_yieldable

if socket then
  local try_error = {}
  try_error.__index = try_error
  try_error.__tostring = function(e)
    return "Copas 'try' error intermediate table: '" .. tostring(e[1]) .. "'"
  end

  local function unwrap(ok, ...)
    if ok then return ... end
    local err = ...
    if getmetatable(err) == try_error then return nil, err[1] end
    error(err, 0)
  end

  socket.protect = function(fn)
    return function(...) return unwrap(pcall_yieldable(fn, ...)) end
  end

  socket.newtry = function(finalizer)
    return function(...)
      local ok = ...
      if ok then return ... end
      if finalizer then pcall(finalizer) end
      error(setmetatable({ (select(2, ...)) }, try_error), 0)
    end
  end

  socket.try = socket.newtry()
end


-------------------------------------------------------------------------------
-- Socket functions, on raw LuaSocket and LuaSec sockets.
-- @section sockets
-------------------------------------------------------------------------------

local test_mode = rawget(_G, "_TEST")
local socket_register, operation_register, timeout_flags
if test_mode then
  socket_register = setmetatable({}, weak_keys)
  operation_register = setmetatable({}, weak_keys)
  timeout_flags = setmetatable({}, weak_keys)
  copas._socket_register = socket_register
  copas._operation_register = operation_register
  copas._timeout_flags = timeout_flags
end

local function op_begin(skt, op)
  local co = coroutine_running()
  socket_register[co] = skt
  operation_register[co] = op
end

local function op_end()
  local co = coroutine_running()
  socket_register[co] = nil
  operation_register[co] = nil
  timeout_flags[co] = nil
end

local must_wait = { timeout = true, wantread = true, wantwrite = true }

local function timeout_error(err)
  if raw_errors[coroutine_running()] then return err end
  return "timeout"
end

local function deadline_of(skt, kind)
  local t = sock_timeouts[skt]
  t = t and t[kind]
  if t and t > 0 then return now() + t end
  return nil
end

-- Counts an operation that completed without waiting. Past a budget of
-- them in one run of the thread, it yields a round, so that a socket that
-- always has data cannot starve timers and other threads. The count is the
-- core's, shared with its receive and send.
local function maybe_yield()
  if loop:spend() then yield(0, SLEEP) end
end

-- wait until `skt` is ready in `dir`; false when the deadline passed
local function log_wait(skt, dir)
  debug_log("yielding '", copas.getthreadname(), "' to ", dir == READ and "READ" or "WRITE",
    " on '", copas.getsocketname(skt), "'")
end

-- (the logging is in a function of its own: a thread parked here keeps its
-- Lua stack, and a small frame keeps that stack at its initial size)
local function wait(skt, dir, deadline)
  if debug_log then log_wait(skt, dir) end
  local r = yield(skt, dir, deadline)
  if r ~= true and type(r) == "string" then error(r, 0) end
  if r == false and test_mode then timeout_flags[coroutine_running()] = true end
  return r
end

local function direction(err)
  return err == "wantwrite" and WRITE or READ
end

local function index(v, k) return v[k] end

-- Where Lua has continuations (5.3, 5.4), copas.receive and copas.send
-- run in the core (csrc/bind_io.c), which hands all but the common case to
-- the Lua functions below: their argument errors then count one frame more
local io_up = 0

-- raises unless `skt` is a table or userdata (and, given `method`, has
-- that method): "bad argument #1 to 'fname' (socket expected, got <type>)"
-- (`up`: frames between the public function and its caller, see io_up)
local function check_socket(skt, fname, method, up)
  local t = type(skt)
  local level = 4 + (up or 0)
  if t ~= "userdata" and t ~= "table" then
    argerror(1, fname, "socket expected, got " .. t, level)
  end
  if method then
    local ok, m = pcall(index, skt, method)
    if not ok or m == nil then
      argerror(1, fname, "socket expected, got " .. t .. " without a '" .. method .. "' method", level)
    end
  end
end

-- host and port as LuaSocket's connect takes them (strings or numbers)
local function check_endpoint(host, port, n, fname)
  local th, tp = type(host), type(port)
  if th ~= "string" and th ~= "number" then
    argerror(n, fname, "string expected, got " .. th, 4)
  end
  if tp ~= "number" and tp ~= "string" then
    argerror(n + 1, fname, "number expected, got " .. tp, 4)
  end
end

-- data, i, j of a send: a string (or number) and optional numbers
local function check_data(data, from, to, fname, up)
  local t = type(data)
  local level = 4 + (up or 0)
  if t ~= "string" and t ~= "number" then argerror(2, fname, "string expected, got " .. t, level) end
  if from ~= nil and type(from) ~= "number" then
    argerror(3, fname, "number expected, got " .. type(from), level)
  end
  if to ~= nil and type(to) ~= "number" then
    argerror(4, fname, "number expected, got " .. type(to), level)
  end
end

local function check_pattern(pattern, fname, up)
  if pattern == nil then return end
  local level = 4 + (up or 0)
  if type(pattern) == "number" then
    if pattern < 0 or pattern ~= pattern then argerror(2, fname, "invalid receive pattern", level) end
  elseif pattern ~= "*l" and pattern ~= "*a" and pattern ~= "l" and pattern ~= "a" then
    argerror(2, fname, "invalid receive pattern", level)
  end
end

-- LuaSocket 3 spellings, and the default pattern
local spelled = { l = "*l", a = "*a" }

local function finish(...)
  if test_mode then op_end() end
  return ...
end

-- Sockets that once found nothing to read are marked DRAINED in
-- `nonblocking`. A request/response peer mostly leaves the socket empty
-- after each complete message, so a receive on such a socket waits for
-- readiness first instead of calling recv() only to get EAGAIN. Data
-- buffered in the socket object (dirty) is always read at once; the mark
-- stays, so the header lines of a request do not undo it for the next one.
-- A socket that always has data pays one poller round per empty buffer.

-- the read after a wait that ended at the deadline
local function last_receive(client, pattern, part)
  local s, err
  s, err, part = client:receive(pattern, part)
  if s or not must_wait[err] then return finish(s, err, part) end
  return finish(nil, timeout_error(err), part)
end

-- receive loop shared by receive and receivepartial
local function do_receive(client, pattern, part, partial, timeout)
  local deadline = timeout and timeout > 0 and now() + timeout or nil
  if test_mode then op_begin(client, "read") end
  do
    local mark = nonblocking[client]
    if not mark then
      make_nonblocking(client)
    elseif mark % TIMED == DRAINED and not client:dirty() and not wait(client, READ, deadline) then
      return last_receive(client, pattern, part)
    end
  end
  -- few registers are live at the call of wait: a thread parked there
  -- keeps its Lua stack, and a simple handler's then fits in the initial one
  repeat
    local dir
    do
      local before, s, err = part
      s, err, part = client:receive(pattern, part)
      if s or not must_wait[err] then
        maybe_yield()
        return finish(s, err, part)
      end
      if partial and part ~= nil and part ~= "" and part ~= before then
        return finish(nil, timeout_error(err), part)
      end
      dir = direction(err)
    end
    do
      local mark = nonblocking[client]
      if mark % TIMED == TCP and client.dirty then set_mark(client, mark - TCP + DRAINED) end
    end
    if not wait(client, dir, deadline) then
      return last_receive(client, pattern, part)
    end
  until false
end

--- Receives from a raw socket, yielding while no data is available.
-- TCP patterns are LuaSocket's: `"*l"` (default), `"*a"`, a byte count
-- (also `"l"`, `"a"`). On a UDP socket, `pattern` is the datagram size. The
-- receive timeout (`settimeout`) is one deadline for the whole call; with a
-- receive timeout of exactly 0 the call returns as soon as any data came,
-- as `receivepartial`.
-- @param client a LuaSocket or LuaSec socket
-- @param pattern see above
-- @param part a prefix for the result
-- @return `data`, or `nil, err, partial` (`err` is `"closed"`, `"timeout"`,
-- or the system's message)
function copas.receive(client, pattern, part)
  do  -- a socket marked TCP before skips the checks
    local kind = kind_of(nonblocking[client])
    if kind ~= TCP and kind ~= DRAINED then
      check_socket(client, "receive", nil, io_up)
      if is_udp(client) then
        if (type(pattern) ~= "number" and pattern ~= nil) or (pattern and pattern < 0) then
          argerror(2, "receive", "non-negative number expected for a UDP socket", 3 + io_up)
        end
        return copas.receivefrom(client, pattern, true)
      end
    end
  end
  if pattern == nil then
    pattern = "*l"
  elseif pattern ~= "*l" then
    check_pattern(pattern, "receive", io_up)
    pattern = spelled[pattern] or pattern
  end
  local t = sock_timeouts[client]
  local timeout = t and t.receive
  return do_receive(client, pattern, part, timeout == 0, timeout)
end

--- As `receive`, but returns as soon as any new data arrived: the full
-- result when the pattern is satisfied, else `nil, "timeout", partial`.
-- Waits until at least one new byte, an error or the timeout.
-- @param client socket
-- @param pattern as `receive`
-- @param part a prefix for the result
-- @return `data`, or `nil, err, partial`
function copas.receivepartial(client, pattern, part)
  check_socket(client, "receivepartial")
  check_pattern(pattern, "receivepartial")
  local t = sock_timeouts[client]
  return do_receive(client, spelled[pattern] or pattern or "*l", part, true, t and t.receive)
end

--- Alias of `receivepartial`.
-- @function receivePartial
copas.receivePartial = copas.receivepartial

-- one receive attempt on a UDP socket. LuaSocket answers a receive on a
-- closed UDP socket with an empty datagram (and, from receivefrom, a stale
-- address), so a closed socket is checked for first.
local function datagram(client, size, connected)
  if client.getfd and client:getfd() < 0 then return nil, "closed" end
  if connected then return client:receive(size) end
  return client:receivefrom(size)
end

--- Receives a datagram from a UDP socket, yielding until one arrives.
-- @param client UDP socket
-- @param size maximum size (default: LuaSocket's maximum datagram size)
-- @param connected internal: use `receive` on a connected socket
-- @return `data, ip, port`, or `nil, err`
function copas.receivefrom(client, size, connected)
  check_socket(client, "receivefrom", (not connected) and "receivefrom" or nil)
  if size ~= nil then
    check_seconds(size, 2, "receivefrom")
    if size < 0 then argerror(2, "receivefrom", "size must not be negative") end
  end
  size = size or (socket and socket._DATAGRAMSIZE) or 8192
  make_nonblocking(client)
  local deadline = deadline_of(client, "receive")
  if test_mode then op_begin(client, "read") end
  repeat
    local s, err, port = datagram(client, size, connected)
    if s or err ~= "timeout" then
      maybe_yield()
      return finish(s, err, port)
    end
    if not wait(client, READ, deadline) then
      s, err, port = datagram(client, size, connected)
      if s or err ~= "timeout" then return finish(s, err, port) end
      return finish(nil, timeout_error(err))
    end
  until false
end

--- Sends `data:sub(from, to)` on a raw socket, yielding while the socket
-- cannot take more. On a UDP socket, sends one datagram and never waits.
-- @param client socket
-- @param data string
-- @param from first index (default 1)
-- @param to last index (default `#data`)
-- @return the index of the last byte sent, or `nil, err, last` with the
-- index of the last byte that was sent
function copas.send(client, data, from, to)
  do  -- (a block: the mark's register is free again for the loop below)
    local mark = nonblocking[client]
    local kind = kind_of(mark)
    if kind ~= TCP and kind ~= DRAINED then
      check_socket(client, "send", nil, io_up)
      check_data(data, from, to, "send", io_up)
      if is_udp(client) then return client:send(data) end
      if not mark then make_nonblocking(client) end
    elseif type(data) ~= "string" or from ~= nil or to ~= nil then
      check_data(data, from, to, "send", io_up)
    end
  end
  local t = sock_timeouts[client]
  t = t and t.send
  local deadline = t and t > 0 and now() + t or nil
  if test_mode then op_begin(client, "write") end
  local last = (from or 1) - 1
  repeat
    local s, err
    s, err, last = client:send(data, last + 1, to)
    if s or not must_wait[err] then
      maybe_yield()
      return finish(s, err, last)
    end
    if not wait(client, err == "wantread" and READ or WRITE, deadline) then
      s, err, last = client:send(data, last + 1, to)
      if s or not must_wait[err] then return finish(s, err, last) end
      return finish(nil, timeout_error(err), last)
    end
  until false
end

do
  local receive, send, setmark = loop:iofns(nonblocking, sock_timeouts, timeout_error,
    copas.receive, copas.send)
  if receive and not test_mode then
    copas.receive, copas.send, io_up = receive, send, 1
  end
  set_mark = setmark or set_mark
end

--- Deprecated: `client:sendto(data, ip, port)`, which never waits.
-- @param client UDP socket
-- @param data string
-- @param ip address
-- @param port number
function copas.sendto(client, data, ip, port)
  check_socket(client, "sendto", "sendto")
  check_data(data, nil, nil, "sendto")
  check_endpoint(ip, port, 3, "sendto")
  return client:sendto(data, ip, port)
end

-- one connect attempt to a literal address (or, outside a thread, a name)
local function connect_to(skt, host, port, deadline)
  local waited = false
  repeat
    local ret, err = skt:connect(host, port)
    if ret or (err ~= "timeout" and err ~= "Operation already in progress") then
      if not ret and err == "already connected" and waited then return 1 end
      return ret, err
    end
    waited = true
    if not wait(skt, WRITE, deadline) then
      ret, err = skt:connect(host, port)
      if ret or err == "already connected" then return 1 end
      if err ~= "timeout" and err ~= "Operation already in progress" then return nil, err end
      return nil, timeout_error(err)
    end
  until false
end

-- the family a socket is bound to once it has a descriptor, else nil
local function family_of(skt)
  if skt:getfd() < 0 then return nil end
  return skt:getfamily() == "inet6" and "inet6" or "inet"
end

-- Connects `skt` to `host`; a host name is resolved on the worker pool and
-- its addresses tried in order. A socket's family is fixed by its first
-- attempt: `renew()`, when given, returns a fresh socket to try an address
-- of the other family (wrappers swap their socket); without it such
-- addresses are skipped. Returns the socket used and connect's results.
local function connect_host(skt, host, port, renew)
  make_nonblocking(skt)
  local deadline = deadline_of(skt, "connect")
  local resolver = type(host) == "string" and loop:current() ~= nil
                   and type(skt.getfamily) == "function" and require("copas.resolver")
  if not resolver or resolver.isliteral(host) then
    return skt, connect_to(skt, host, port, deadline)
  end
  local fixed = family_of(skt)
  local left = deadline and deadline - now()
  if left and left <= 0 then return skt, nil, timeout_error("timeout") end
  local addrs, err = resolver.resolve(host, (not renew) and fixed or nil, left)
  if not addrs then return skt, nil, err end
  for _, a in ipairs(addrs) do
    if fixed and a.family ~= fixed and renew then
      skt = renew(skt)
      fixed = nil
    end
    if fixed == nil or a.family == fixed then
      local ret
      ret, err = connect_to(skt, a.addr, port, deadline)
      if ret or err == "timeout" then return skt, ret, err end
      fixed = family_of(skt)
    end
  end
  return skt, nil, err or "host or service not provided, or not known"
end

--- Connects a raw TCP socket without blocking the loop.
-- A host name is resolved on worker threads (`copas.resolver`), then its
-- addresses are tried in order within the socket's connect timeout. A raw
-- socket keeps the address family of its first attempt, so addresses of the
-- other family are skipped (a wrapper's `connect` tries both).
-- @param skt a LuaSocket TCP socket
-- @param host name or address
-- @param port number
-- @return `1`, or `nil, err` (LuaSocket's messages, e.g.
-- `"connection refused"`, `"timeout"`, `"host or service not provided, or
-- not known"`)
function copas.connect(skt, host, port)
  check_socket(skt, "connect")
  check_endpoint(host, port, 2, "connect")
  if test_mode then op_begin(skt, "connect") end
  return finish(select(2, connect_host(skt, host, port)))
end

local function copy_socket_state(from, to)
  local t = sock_timeouts[from]
  if t then set_timeouts(to, { connect = t.connect, send = t.send, receive = t.receive }) end
  if socket_names[from] then socket_names[to] = socket_names[from] end
  accept_tags[to] = accept_tags[from]
  local co = coroutine_running()
  local skt, autoclose = loop:getsocket(co)
  if autoclose and skt == from then loop:setsocket(co, to, true) end
end

local function is_tls(skt)
  return type(skt) == "userdata" and type(skt.getpeercertificate) == "function"
end

local function tls_wrap(skt, params)
  if is_tls(skt) then return skt end
  local ssl = require "ssl"
  local nskt, err = ssl.wrap(skt, params)
  if not nskt then return nil, err end
  copy_socket_state(skt, nskt)
  make_nonblocking(nskt)
  return nskt
end

--- Wraps a connected TCP socket in TLS (`ssl.wrap`) and performs the
-- handshake without blocking the loop. Timeouts, name and autoclose carry
-- over to the new socket; use the returned socket from then on.
-- Raises "TLS/SSL handshake failed: ..." when the handshake fails, and
-- when `params` is missing.
-- @param skt socket
-- @param params LuaSec parameters or context
-- @return the TLS socket, or `nil, "timeout"` after the connect timeout
function copas.dohandshake(skt, params)
  check_socket(skt, "dohandshake")
  if not params then
    error("cannot wrap socket into a secure socket (using 'ssl.wrap()') without parameters/context", 2)
  end
  local tp = type(params)
  if tp ~= "table" and tp ~= "userdata" then
    argerror(2, "dohandshake", "table or userdata expected, got " .. tp)
  end
  local nskt, err = tls_wrap(skt, params)
  if not nskt then error("TLS/SSL handshake failed: " .. tostring(err), 0) end
  local deadline = deadline_of(nskt, "connect")
  if test_mode then op_begin(nskt, "handshake") end
  repeat
    local ok
    ok, err = nskt:dohandshake()
    if ok then return finish(nskt) end
    if not must_wait[err] then
      finish()
      error("TLS/SSL handshake failed: " .. tostring(err), 0)
    end
    if not wait(nskt, direction(err), deadline) then
      ok, err = nskt:dohandshake()
      if ok then return finish(nskt) end
      return finish(nil, timeout_error(err))
    end
  until false
end

--- Closes a socket. Threads waiting on it get `nil, "closed"` within the
-- next round.
-- @param skt socket or wrapper
-- @param ... passed to `skt:close`
-- @return the results of `skt:close`
function copas.close(skt, ...)
  skt = real_socket(skt)
  check_socket(skt, "close", "close")
  loop:forget(skt)
  return skt:close(...)
end

--- Deprecated; does nothing.
function copas.flush() end

local function timeouts_of(skt)
  local t = sock_timeouts[skt]
  if not t then
    t = {}
    set_timeouts(skt, t)
  end
  return t
end

--- Sets the connect, send and receive timeouts of a socket together.
-- These are Copas timeouts, separate from LuaSocket's own.
-- @param skt socket or wrapper
-- @param t seconds; nil or negative: none (wait forever); 0: see `receive`
-- @return `true`, or `nil, "timeout must be 'nil' or a number"`
function copas.settimeout(skt, t)
  skt = real_socket(skt)
  check_socket(skt, "settimeout")
  if t ~= nil and (type(t) ~= "number" or t ~= t) then return nil, "timeout must be 'nil' or a number" end
  if t and t < 0 then t = nil end
  set_timeouts(skt, { connect = t, send = t, receive = t })
  return true
end

--- Sets the timeouts of a socket one by one.
-- @param skt socket or wrapper
-- @param connect seconds; nil leaves it unchanged, negative removes it
-- @param send likewise
-- @param receive likewise
-- @return `true`, or `nil, "<connect|send|read> timeout must be 'nil' or a
-- number"` (the values before the bad one are applied)
function copas.settimeouts(skt, connect, send, receive)
  skt = real_socket(skt)
  check_socket(skt, "settimeouts")
  local t = timeouts_of(skt)
  local function set(kind, label, v)
    if v == nil then return true end
    if type(v) ~= "number" or v ~= v then return nil, label .. " timeout must be 'nil' or a number" end
    if v < 0 then v = nil end
    t[kind] = v
    return true
  end
  local ok, err = set("connect", "connect", connect)
  if not ok then return nil, err end
  ok, err = set("send", "send", send)
  if not ok then return nil, err end
  ok, err = set("receive", "read", receive)
  if not ok then return nil, err end
  return true
end

--- For the running thread: a timeout returns the underlying error text
-- (`"timeout"`, `"wantread"`, `"wantwrite"`, `"Operation already in
-- progress"`) instead of always `"timeout"`.
-- @param bool truthy to switch on (default off)
function copas.useSocketTimeoutErrors(bool)
  raw_errors[coroutine_running()] = not not bool
end

--- Alias of `useSocketTimeoutErrors`.
-- @function usesockettimeouterrors
copas.usesockettimeouterrors = copas.useSocketTimeoutErrors


-------------------------------------------------------------------------------
-- Wrapped sockets.
-- @section wrapped
-------------------------------------------------------------------------------

local function normalize_sslparams(sslt)
  local t = type(sslt)
  if sslt == nil then return { wrap = false, sni = false } end
  if t == "userdata" then return { wrap = sslt, sni = false } end
  if t ~= "table" then error("ssl parameters; did not expect type " .. t, 3) end
  if sslt.mode or sslt.protocol then return { wrap = sslt, sni = false } end
  return { wrap = sslt.wrap or false, sni = sslt.sni or false }
end

local tcp = {}
local tcp_mt = { __index = tcp, copas_wrapper = true }
tcp_mt.__tostring = function(self) return tostring(self.socket) .. " (copas wrapped)" end

local udp = {}
local udp_mt = { __index = udp, copas_wrapper = true }
udp_mt.__tostring = tcp_mt.__tostring

--- Wraps a socket so that its methods yield instead of blocking: a TCP or
-- TLS socket gets the `tcp` methods, a UDP socket the `udp` ones. Wrapping a
-- wrapper returns it unchanged.
-- @param skt a LuaSocket or LuaSec socket
-- @param sslt TLS settings: nil; LuaSec parameters or a context (for a later
-- `dohandshake`, or at `connect`); or `{wrap = params|context, sni = {names
-- = ..., strict = bool}}`. Raises for another type.
-- @return the wrapper; `wrapper.socket` is the socket underneath
-- @usage local client = copas.wrap(socket.tcp(), { wrap = {
--   mode = "client", protocol = "any", verify = "peer",
--   cafile = "/etc/ssl/certs/ca-certificates.crt" } })
-- assert(client:connect("example.org", 443))  -- TCP, then TLS
function copas.wrap(skt, sslt)
  local mt = getmetatable(skt)
  if mt == tcp_mt or mt == udp_mt then return skt end
  check_socket(skt, "wrap", "settimeout")
  make_nonblocking(skt)
  if is_udp(skt) then
    return setmetatable({ socket = skt }, udp_mt)
  end
  return setmetatable({ socket = skt, ssl_params = normalize_sslparams(sslt) }, tcp_mt)
end

-- a fresh plain socket in place of `old` (which the failed attempt bound
-- to one address family), keeping its Copas timeouts and name
local function renew_socket(self, old)
  local new = socket.tcp()
  copy_socket_state(old, new)
  make_nonblocking(new)
  old:close()
  self.socket = new
  return new
end

--- A wrapped TCP socket, as returned by `copas.wrap`: its methods yield
-- instead of blocking. The field `socket` holds the socket underneath (the
-- TLS socket after a handshake).
-- @type tcp

--- Connects (see `copas.connect`), then sets SNI and performs the TLS
-- handshake when the wrapper has TLS settings. Tries IPv6 and IPv4
-- addresses alike (it swaps in a fresh socket when the family changes).
-- A failed handshake raises "TLS/SSL handshake failed: ...".
-- @param host name or address
-- @param port number
-- @return a truthy value (`1`, or the wrapper after a handshake), or
-- `nil, err`
function tcp:connect(host, port)
  check_socket(self.socket, "connect")
  check_endpoint(host, port, 1, "connect")
  if test_mode then op_begin(self.socket, "connect") end
  local renew = socket and not is_tls(self.socket)
                and function(old) return renew_socket(self, old) end
  local _, ret, err = connect_host(self.socket, host, port, renew)
  if test_mode then op_end() end
  if not ret then return nil, err end
  if self.ssl_params.sni then self:sni() end
  if self.ssl_params.wrap then return self:dohandshake() end
  return ret
end

--- `copas.send` on the wrapped socket.
-- @param data string
-- @param from first index
-- @param to last index
function tcp:send(data, from, to) return copas.send(self.socket, data, from, to) end

--- `copas.receive` on the wrapped socket.
-- @param pattern `"*l"`, `"*a"` or a byte count
-- @param prefix string
function tcp:receive(pattern, prefix) return copas.receive(self.socket, pattern, prefix) end

--- `copas.receivepartial` on the wrapped socket (alias `receivePartial`).
-- @param pattern `"*l"`, `"*a"` or a byte count
-- @param prefix string
function tcp:receivepartial(pattern, prefix) return copas.receivepartial(self.socket, pattern, prefix) end
--- Alias of `receivepartial`.
-- @function tcp:receivePartial
tcp.receivePartial = tcp.receivepartial

--- `copas.settimeout` on the wrapped socket.
-- @param t seconds
function tcp:settimeout(t) return copas.settimeout(self.socket, t) end

--- `copas.settimeouts` on the wrapped socket.
-- @param c connect timeout
-- @param s send timeout
-- @param r receive timeout
function tcp:settimeouts(c, s, r) return copas.settimeouts(self.socket, c, s, r) end

--- `copas.close` on the wrapped socket.
function tcp:close(...) return copas.close(self.socket, ...) end

--- Does nothing (deprecated, as in Copas).
function tcp.flush() end

--- Performs the TLS handshake (see `copas.dohandshake`) and puts the TLS
-- socket in `self.socket`.
-- @param params LuaSec parameters or context (default: the wrapper's)
-- @return the wrapper, or `nil, "timeout"`; raises on failure
function tcp:dohandshake(params)
  params = params and normalize_sslparams(params).wrap or self.ssl_params.wrap
  local nskt, err = copas.dohandshake(self.socket, params)
  if not nskt then return nil, err end
  self.socket = nskt
  return self
end

--- Wraps the socket in TLS (without handshake) and sets SNI.
-- @param names server name for a client; for a server, a table mapping
-- host names to contexts (default: the wrapper's `sni.names`)
-- @param strict for a server, refuse unknown names
function tcp:sni(names, strict)
  local sni = self.ssl_params.sni or {}
  names = names or sni.names
  if strict == nil then strict = sni.strict end
  if not self.ssl_params.wrap and not is_tls(self.socket) then
    error("cannot wrap socket into a secure socket (using 'ssl.wrap()') without parameters/context", 2)
  end
  local nskt, err = tls_wrap(self.socket, self.ssl_params.wrap)
  if not nskt then error("TLS/SSL handshake failed: " .. tostring(err), 0) end
  self.socket = nskt
  return nskt:sni(names, strict)
end

local function tls_only(name)
  return function(self, ...)
    local f = self.socket[name]
    if not is_tls(self.socket) or f == nil then return nil, "not a tls socket" end
    return f(self.socket, ...)
  end
end

--- The protocol ALPN negotiated; `nil, "not a tls socket"` on a plain socket.
-- @function tcp:getalpn

--- The SNI name the client asked for (server side); `nil, "not a tls socket"`
-- on a plain socket.
-- @function tcp:getsniname
tcp.getalpn = tls_only("getalpn")
tcp.getsniname = tls_only("getsniname")

-- A pass-through method calls the socket's method as a plain function, so
-- LuaSocket's argument errors would read "bad argument #2 to '?'": they are
-- raised again naming the wrapper method and counting from its first
-- argument after self.
local function relay(name, ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "string" then
    local n, rest = err:match("bad argument #(%d+) to '[^']*' (.*)$")
    if n == "1" then
      err = ("calling '%s' on bad self %s"):format(name, rest)
    elseif n then
      err = ("bad argument #%d to '%s' %s"):format(n - 1, name, rest)
    end
  end
  error(err, 3)
end

local function maybe_missing(name)
  return function(self, ...)
    local f = self.socket[name]
    if f == nil then return nil, "not implemented by LuaSec" end
    return relay(name, pcall(f, self.socket, ...))
  end
end

--- The local address and port, as LuaSocket's `getsockname`; `nil, "not
-- implemented by LuaSec"` where the socket lacks it.
-- @function tcp:getsockname

--- The peer's address and port, as LuaSocket's `getpeername`; `nil, "not
-- implemented by LuaSec"` where the socket lacks it.
-- @function tcp:getpeername

--- LuaSocket's `getoption`; `nil, "not implemented by LuaSec"` where the
-- socket lacks it.
-- @function tcp:getoption

--- LuaSocket's `setoption`; `nil, "not implemented by LuaSec"` where the
-- socket lacks it.
-- @function tcp:setoption
for _, name in ipairs { "getsockname", "getpeername", "getoption", "setoption" } do
  tcp[name] = maybe_missing(name)
end

local function pass(name)
  return function(self, ...) return relay(name, pcall(self.socket[name], self.socket, ...)) end
end

--- LuaSocket's `bind`, passed through.
-- @function tcp:bind

--- LuaSocket's `listen`, passed through.
-- @function tcp:listen

--- LuaSocket's `accept`, passed through.
-- @function tcp:accept

--- LuaSocket's `getstats`, passed through.
-- @function tcp:getstats

--- LuaSocket's `setstats`, passed through.
-- @function tcp:setstats

--- LuaSocket's `shutdown`, passed through.
-- @function tcp:shutdown

--- LuaSocket's `getfd`, passed through.
-- @function tcp:getfd

--- LuaSocket's `setfd`, passed through.
-- @function tcp:setfd

--- LuaSocket's `dirty`, passed through.
-- @function tcp:dirty
for _, name in ipairs { "bind", "listen", "accept", "getstats", "setstats", "shutdown",
                        "getfd", "setfd", "dirty" } do
  tcp[name] = pass(name)
end

--- A wrapped UDP socket, as returned by `copas.wrap`. The field `socket`
-- holds the socket underneath.
-- @type udp

--- Sends a datagram on a connected socket; never waits.
-- @param data string
function udp:send(data) return self.socket:send(data) end

--- Sends a datagram to `ip`, `port`; never waits.
-- @param data string
-- @param ip address
-- @param port number
function udp:sendto(data, ip, port) return self.socket:sendto(data, ip, port) end

--- Receives a datagram on a connected socket, yielding until one arrives.
-- @param size maximum size
-- @return `data`, or `nil, err`
function udp:receive(size) return copas.receivefrom(self.socket, size, true) end

--- Receives a datagram, yielding until one arrives.
-- @param size maximum size
-- @return `data, ip, port`, or `nil, err`
function udp:receivefrom(size) return copas.receivefrom(self.socket, size) end

--- `copas.settimeout` on the wrapped socket.
-- @param t seconds
function udp:settimeout(t) return copas.settimeout(self.socket, t) end

--- `copas.settimeouts` on the wrapped socket.
-- @param c connect timeout
-- @param s send timeout
-- @param r receive timeout
function udp:settimeouts(c, s, r) return copas.settimeouts(self.socket, c, s, r) end

--- Does not close: a UDP wrapper may share its socket with a server. Close
-- for real with `wrapper.socket:close()`.
-- @return true
function udp.close() return true end

--- Does nothing (deprecated, as in Copas).
function udp.flush() end

--- LuaSocket's `setpeername`, passed through.
-- @function udp:setpeername

--- LuaSocket's `setsockname`, passed through.
-- @function udp:setsockname

--- LuaSocket's `getsockname`, passed through.
-- @function udp:getsockname

--- LuaSocket's `getpeername`, passed through.
-- @function udp:getpeername

--- LuaSocket's `getoption`, passed through.
-- @function udp:getoption

--- LuaSocket's `setoption`, passed through.
-- @function udp:setoption

--- LuaSocket's `getfd`, passed through.
-- @function udp:getfd

--- LuaSocket's `setfd`, passed through.
-- @function udp:setfd

--- LuaSocket's `dirty`, passed through.
-- @function udp:dirty
for _, name in ipairs { "setpeername", "setsockname", "getsockname", "getpeername",
                        "getoption", "setoption", "getfd", "setfd", "dirty" } do
  udp[name] = pass(name)
end


-------------------------------------------------------------------------------
-- Servers.
-- @section servers
-------------------------------------------------------------------------------

--- Makes a connection handler for `addserver` that wraps the client socket
-- (`copas.wrap`), sets SNI and performs the TLS handshake when `sslparams`
-- ask for it, then calls `handler(wrapped, ...)`. A handshake that fails or
-- times out raises, and `handler` is not called.
-- @param handler function
-- @param sslparams as for `copas.wrap`
-- @return function
function copas.handler(handler, sslparams)
  check_type(handler, "function", 1, "handler")
  normalize_sslparams(sslparams)  -- raises now for a bad type, not in each client
  return function(skt, ...)
    skt = copas.wrap(skt, sslparams)
    local params = skt.ssl_params
    if params.sni then skt:sni(params.sni.names, params.sni.strict) end
    if params.wrap then
      local ok, err = skt:dohandshake(params.wrap)
      if not ok then error("TLS/SSL handshake failed: " .. tostring(err), 0) end
    end
    return handler(skt, ...)
  end
end

--- Serves a socket. For a TCP server, each accepted client gets a thread
-- `<server>:handler_<n>` that runs `handler(client)` at once, with the raw
-- client socket (use `copas.handler` to get a wrapped one); a bound socket
-- that is not listening is made to listen. For a UDP socket, one thread
-- runs `handler(socket)`, started inside this call. A server keeps the
-- loop alive until removed.
-- @param server a LuaSocket TCP server or UDP socket (or a wrapper)
-- @param handler function
-- @param timeout seconds, the timeouts of the server and of its clients
-- @param name the server's socket name
-- @usage local server = assert(socket.bind("127.0.0.1", 0))
-- copas.addserver(server, copas.handler(function(skt)
--   skt:send("hello\n")
-- end))
function copas.addserver(server, handler, timeout, name)
  server = real_socket(server)
  check_socket(server, "addserver", "settimeout")
  check_type(handler, "function", 2, "addserver")
  if timeout ~= nil then check_seconds(timeout, 3, "addserver") end
  if name ~= nil then check_type(name, "string", 4, "addserver") end
  server:settimeout(0)
  if timeout then copas.settimeout(server, timeout) end
  if name then socket_names[server] = name end
  if is_udp(server) then
    local co = loop:spawn(handler, server)
    thread_names[co] = copas.getsocketname(server) .. ":handler"
    loop:runnow(co)
    return
  end
  if server.class == "tcp{master}" then server:listen(32) end
  servers_added = servers_added + 1
  server_by_no[servers_added] = server
  servers[server] = { handler = handler, count = 0, no = servers_added }
  local ok, err = loop:addserver(server)
  if not ok then
    servers[server] = nil
    error("copas.addserver: " .. tostring(err), 2)
  end
end

--- Stops serving a socket, and closes it unless `keep_open`.
-- @param server socket or wrapper
-- @param keep_open boolean
-- @return `true` when kept open, else the result of `server:close()`
function copas.removeserver(server, keep_open)
  server = real_socket(server)
  check_socket(server, "removeserver", "close")
  servers[server] = nil
  loop:removeserver(server)
  if keep_open then return true end
  loop:forget(server)
  return server:close()
end


-------------------------------------------------------------------------------
-- Debugging sockets: a proxy that logs every method call.
-- @section debugsocket
-------------------------------------------------------------------------------

local function shorten(v)
  if type(v) == "string" and #v > 60 then
    return ("%q"):format(v:sub(1, 40)) .. ("...(%d bytes)"):format(#v)
  elseif type(v) == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end

local function describe(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = shorten((select(i, ...))) end
  return table.concat(out, ", ")
end

--- A proxy of `skt` that prints every method call with its arguments and
-- results (long strings shortened). Given a wrapper, it replaces the
-- wrapper's socket with such a proxy and returns the wrapper.
-- @param skt socket or wrapper
-- @return the proxy, or the wrapper
function copas.debug.socket(skt)
  check_socket(skt, "debug.socket")
  local mt = getmetatable(skt)
  if mt == tcp_mt or mt == udp_mt then
    skt.socket = copas.debug.socket(skt.socket)
    return skt
  end
  local name = tostring(skt)
  local proxy = {}
  return setmetatable(proxy, {
    __tostring = function() return name end,
    __index = function(_, key)
      local v = skt[key]
      if type(v) ~= "function" then return v end
      return function(self, ...)
        if self == proxy then self = skt end
        print(("%s:%s(%s)"):format(name, key, describe(...)))
        local res = { n = 0 }
        local function keep(...) res = { n = select("#", ...), ... } end
        keep(v(self, ...))
        print(("%s:%s -> %s"):format(name, key, describe(unpack(res, 1, res.n))))
        return unpack(res, 1, res.n)
      end
    end,
  })
end


return copas
