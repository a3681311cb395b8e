-------------------------------------------------------------------------------
-- copas.worker: run Lua functions on OS threads without blocking the loop.
--
-- A pool is a fixed set of threads, each with a lua_State of its own that
-- lives as long as the thread (standard libraries opened, this process's
-- package.path and package.cpath, an optional init chunk run once). A job
-- travels as bytecode; its arguments and results are copied (nil, booleans,
-- numbers, strings, acyclic tables of those). The calling Copas thread
-- sleeps until the job ends; other threads run meanwhile.
--
-- Completions arrive through the pool's descriptor: while jobs are awaited,
-- one internal thread per pool ("copas_worker_dispatcher") waits on it like
-- on a socket, collects finished jobs and wakes their callers. It ends when
-- nothing is awaited, so an idle pool costs nothing and `copas.finished()`
-- is false exactly while a job is awaited.
-- @module copas.worker
-------------------------------------------------------------------------------

local core = require "copas.core"
local copas = require "copas"
local checkself = require("copas.waitqueue").checkself

local coroutine_running, yield = coroutine.running, coroutine.yield
local type, select, pcall, error, tostring = type, select, pcall, error, tostring
local setmetatable, pairs = setmetatable, pairs
local unpack = table.unpack or unpack  -- luacheck: ignore 143 (unpack is 5.1's)
local floor = math.floor
local now = core.now
local READ = core.READ

local M = {}

local Pool = {}
Pool.__index = Pool

local function pack(...)
  return { n = select("#", ...), ... }
end

-- is co a thread the scheduler still holds?
local function alive(co)
  return co ~= nil and copas._loop:state(co) ~= nil
end

local function check_copas_thread(fname)
  local co = coroutine_running()
  if co == nil or copas._loop:current() ~= co then
    error(("copas.worker: '%s' must be called from inside a copas thread"):format(fname), 3)
  end
  return co
end

-- a call into the core whose errors point at the caller of `fname`;
-- argument numbers in the core's messages count from the job function
local function submit(fname, shift, method, cpool, ...)
  local ok, id = pcall(method, cpool, ...)
  if not ok then
    id = tostring(id):gsub("^bad argument #(%d+) to '[^']*'", function(n)
      return ("bad argument #%d to '%s'"):format(n + shift, fname)
    end)
    error(id, 3)
  end
  return id
end


-- dispatcher -----------------------------------------------------------------

-- hand each finished job to its caller; results of forgotten jobs are dropped
function Pool:_drain()
  local cpool, waiting = self._cpool, self._waiting
  while true do
    local res = pack(cpool:take())
    if res.n == 0 then return end
    local rec = waiting[res[1]]
    if rec then
      waiting[res[1]] = nil
      self._nwaiting = self._nwaiting - 1
      rec.res = res
      copas.wakeup(rec.co)
    end
  end
end

-- every awaited job ends with nil, msg (the pool failed or shut down)
function Pool:_fail_all(msg)
  for id, rec in pairs(self._waiting) do
    self._waiting[id] = nil
    rec.res = { n = 3, id, false, msg }
    copas.wakeup(rec.co)
  end
  self._nwaiting = 0
end

local function dispatch(self)
  local cpool = self._cpool
  while self._nwaiting > 0 do
    local ready = yield(cpool, READ)
    if type(ready) == "string" then    -- the poller refused the descriptor
      cpool:close()
      self:_fail_all(ready)
    else
      self:_drain()
    end
  end
  self._dispatcher = nil
end

-- forget awaited jobs whose callers were dropped (removeall, removethread)
function Pool:_prune()
  for id, rec in pairs(self._waiting) do
    if not alive(rec.co) then
      self._waiting[id] = nil
      self._nwaiting = self._nwaiting - 1
      self._cpool:cancel(id)
    end
  end
end

function Pool:_ensure_dispatcher()
  if self._dispatcher ~= nil and not alive(self._dispatcher) then
    self._dispatcher = nil                -- dropped by removeall()
    self:_prune()
  end
  if self._dispatcher == nil then
    self._dispatcher = copas.addnamedthread("copas_worker_dispatcher", dispatch, self)
  end
end

-- the caller gave up on job id
function Pool:_forget(id)
  if self._waiting[id] == nil then return end
  self._waiting[id] = nil
  self._nwaiting = self._nwaiting - 1
  self._cpool:cancel(id)
  if self._nwaiting == 0 and self._dispatcher ~= nil then
    copas.removethread(self._dispatcher)
    self._dispatcher = nil
  end
end

-- waits for job id (submitted by co); its results | nil, err | nil, "timeout"
function Pool:_await(co, id, timeout)
  local rec = { co = co }
  self._waiting[id] = rec
  self._nwaiting = self._nwaiting + 1
  self:_ensure_dispatcher()
  local deadline = timeout and now() + timeout
  while rec.res == nil do
    if deadline then
      local left = deadline - now()
      if left <= 0 then
        self:_forget(id)
        return nil, "timeout"
      end
      copas.pause(left)
    else
      copas._waitforever()
    end
  end
  local res = rec.res
  if res[2] then return unpack(res, 3, res.n) end
  return nil, res[3]
end


-- pools ----------------------------------------------------------------------

local function check_timeout(t, fname)
  if type(t) ~= "number" or t ~= t or t <= 0 then
    error(("bad argument #1 to '%s' (positive number of seconds expected, got %s)")
      :format(fname, type(t) == "number" and tostring(t) or type(t)), 3)
  end
end

--- A pool of worker threads, made by `new` (or `default`).
-- @type Pool

--- Runs `fn(...)` on a pool thread; the calling Copas thread waits.
-- Raises (at the call) for a non-function, a C function, a function with
-- upvalues other than _ENV, and arguments that cannot be copied.
-- @param fn a Lua function without upvalues (other than `_ENV`)
-- @param ... arguments: nil, booleans, numbers, strings, tables of those
-- @return the function's results | nil, message (error with traceback, or
-- "cannot copy result #n (a function)")
function Pool:run(fn, ...)
  checkself(self, Pool, "worker pool", "run")
  local co = check_copas_thread("run")
  local id = submit("run", 0, self._cpool.run, self._cpool, fn, ...)
  return self:_await(co, id)
end

--- As `run`, giving up after `seconds`: then nil, "timeout" is returned,
-- the job still finishes in the background and its result is dropped (a
-- job still queued is never started).
-- @param seconds positive number
-- @param fn function
-- @param ... arguments
function Pool:call(seconds, fn, ...)
  checkself(self, Pool, "worker pool", "call")
  check_timeout(seconds, "call")
  local co = check_copas_thread("call")
  local id = submit("call", 1, self._cpool.run, self._cpool, fn, ...)
  return self:_await(co, id, seconds)
end

--- Resolves `host` on a pool thread (getaddrinfo), for copas.resolver.
-- @param host string
-- @param family "inet", "inet6" or "unspec"
-- @param seconds timeout, or nil
-- @return array of {family = "inet"|"inet6", addr = "..."} | nil, err |
-- nil, "timeout"
function Pool:resolve(host, family, seconds)
  checkself(self, Pool, "worker pool", "resolve")
  local co = check_copas_thread("resolve")
  local id = submit("resolve", -1, self._cpool.resolve, self._cpool, host, family)
  local res, err = self:_await(co, id, seconds)
  return res, err
end

--- @return the number of threads
function Pool:size()
  checkself(self, Pool, "worker pool", "size")
  return self._cpool:size()
end

--- @return the number of jobs Copas threads are waiting for
function Pool:pending()
  checkself(self, Pool, "worker pool", "pending")
  return self._nwaiting
end

--- Stops the pool: queued jobs are dropped, running ones finish (this
-- blocks until they do) and the threads are joined. Callers still waiting
-- get nil, "shut down". Later calls raise "copas worker pool is shut down".
function Pool:shutdown()
  checkself(self, Pool, "worker pool", "shutdown")
  self._cpool:shutdown()
  self:_fail_all("shut down")
  if self._dispatcher ~= nil then
    copas.removethread(self._dispatcher)
    self._dispatcher = nil
  end
end

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("bad argument #1 to 'new' (table expected, got %s)"):format(type(opts)), 3)
  end
  local n = opts.threads
  if n ~= nil and (type(n) ~= "number" or n < 1 or n > 1024 or n ~= floor(n)) then
    error(("bad argument #1 to 'new' (threads must be an integer from 1 to 1024, got %s)")
      :format(type(n) == "number" and tostring(n) or type(n)), 3)
  end
  local init = opts.init
  if init ~= nil and type(init) ~= "string" and type(init) ~= "function" then
    error(("bad argument #1 to 'new' (init must be a string or a function, got %s)")
      :format(type(init)), 3)
  end
  if type(init) == "string" then
    -- the workers run the same Lua: a chunk that does not compile here
    -- would fail every job there
    local ok, err = (rawget(_G, "loadstring") or load)(init, "=init")
    if not ok then
      error(("bad argument #1 to 'new' (init does not compile: %s)"):format(err), 3)
    end
  end
  for _, key in ipairs { "path", "cpath" } do
    if opts[key] ~= nil and type(opts[key]) ~= "string" then
      error(("bad argument #1 to 'new' (%s must be a string, got %s)"):format(key, type(opts[key])), 3)
    end
  end
  return opts
end

--- Pools and the default pool.
-- @section pools

--- A new pool. Options: `threads` (default: the number of CPUs), `init`
-- (Lua source or a function without upvalues, run once in each worker's
-- state before its first job), `path` and `cpath` (default: this process's
-- package.path and package.cpath).
-- Raises "bad argument #1 to 'new' (...)" for bad options.
-- @param opts table or nil
-- @return the pool
function M.new(opts)
  opts = check_opts(opts)
  local ok, cpool = pcall(core.pool_new, opts.threads or core.pool_cpus(), {
    path = opts.path or package.path,
    cpath = opts.cpath or package.cpath,
    init = opts.init,
  })
  if not ok then error(cpool, 2) end
  return setmetatable({ _cpool = cpool, _waiting = {}, _nwaiting = 0 }, Pool)
end

local default_pool

--- The pool `run` and `call` use, created on first use (one thread per CPU).
function M.default()
  if default_pool == nil then default_pool = M.new() end
  return default_pool
end

--- `run` on the default pool.
-- @param fn function
-- @param ... arguments
-- @usage copas.addthread(function()
--   local sum = copas.worker.run(function(n)
--     local s = 0
--     for i = 1, n do s = s + i end
--     return s
--   end, 1e7)
--   print(sum)
-- end)
function M.run(fn, ...)
  local co = check_copas_thread("run")
  local pool = M.default()
  local id = submit("run", 0, pool._cpool.run, pool._cpool, fn, ...)
  return pool:_await(co, id)
end

--- `call` on the default pool.
-- @param seconds positive number
-- @param fn function
-- @param ... arguments
function M.call(seconds, fn, ...)
  check_timeout(seconds, "call")
  local co = check_copas_thread("call")
  local pool = M.default()
  local id = submit("call", 1, pool._cpool.run, pool._cpool, fn, ...)
  return pool:_await(co, id, seconds)
end

--- @return the number of CPUs online (the default pool size)
function M.cpus()
  return core.pool_cpus()
end

return M
