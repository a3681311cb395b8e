-------------------------------------------------------------------------------
-- copas.resolver: host name lookups that do not stop the loop.
--
-- getaddrinfo runs on a pool of OS threads (copas.worker's machinery); the
-- calling Copas thread sleeps until the answer arrives. Literal addresses
-- are answered at once, without the pool. Error strings are LuaSocket's
-- (e.g. "host or service not provided, or not known").
-- @module copas.resolver
-------------------------------------------------------------------------------

local core = require "copas.core"
local worker = require "copas.worker"

local type, error, tostring, floor = type, error, tostring, math.floor

local M = {}

local pool                      -- created on the first lookup
local nthreads                  -- nil: one per CPU, at least 4

local families = { inet = true, inet6 = true, unspec = true }

local function get_pool()
  if pool == nil then
    local n = nthreads or core.pool_cpus()
    if nthreads == nil and n < 4 then n = 4 end
    pool = worker.new { threads = n }
  end
  return pool
end

--- Sets the number of lookup threads (default: one per CPU, at least 4).
-- Raises "bad argument #1 to 'setthreads' (...)" for anything but an
-- integer from 1 to 1024, and "copas.resolver: lookups are pending" while
-- a Copas thread awaits one.
-- @param n integer from 1 to 1024
function M.setthreads(n)
  if type(n) ~= "number" or n < 1 or n > 1024 or n ~= floor(n) then
    error(("bad argument #1 to 'setthreads' (integer from 1 to 1024 expected, got %s)")
      :format(type(n) == "number" and tostring(n) or type(n)), 2)
  end
  if pool ~= nil then
    if pool:pending() > 0 then error("copas.resolver: lookups are pending", 2) end
    pool:shutdown()
    pool = nil
  end
  nthreads = n
end

--- Resolves `host` from inside a Copas thread; other threads run meanwhile.
-- `family` is "inet", "inet6" or "unspec" (default: both, in getaddrinfo's
-- order); `timeout` (seconds, optional) bounds the wait.
-- Raises for a non-string host, a host longer than 255 bytes, a bad family
-- or timeout, and when called outside a Copas thread.
-- @param host string
-- @param family "inet", "inet6" or "unspec" (default)
-- @param timeout seconds, or nil
-- @usage copas.addthread(function()
--   for _, a in ipairs(assert(copas.resolver.resolve("example.org"))) do
--     print(a.family, a.addr)
--   end
-- end)
-- @return array of {family = "inet"|"inet6", addr = "<numeric address>"} |
-- nil, err (LuaSocket's resolver messages) | nil, "timeout"
function M.resolve(host, family, timeout)
  if type(host) ~= "string" then
    error(("bad argument #1 to 'resolve' (string expected, got %s)"):format(type(host)), 2)
  end
  if #host > 255 then
    error("bad argument #1 to 'resolve' (host name longer than 255 bytes)", 2)
  end
  if host:find("\0", 1, true) then
    error("bad argument #1 to 'resolve' (host name contains a zero byte)", 2)
  end
  if family ~= nil and not families[family] then
    error(("bad argument #2 to 'resolve' (\"inet\", \"inet6\" or \"unspec\" expected, got %s)")
      :format(tostring(family)), 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0) then
    error("bad argument #3 to 'resolve' (positive number of seconds expected)", 2)
  end
  local literal = core.addr_literal(host)
  if literal and (family == nil or family == "unspec" or family == literal) then
    return { { family = literal, addr = host } }
  end
  return get_pool():resolve(host, family, timeout)
end

--- Whether `host` is a literal address (no lookup needed).
-- @param host string
-- @return true when `host` is a literal IPv4 or IPv6 address
function M.isliteral(host)
  return type(host) == "string" and core.addr_literal(host) ~= nil
end

return M
