-- Shared helpers for the busted specs.
--
-- Every helper works on the copas instance currently in package.loaded, so a
-- spec that reloads copas (helpers.reload) keeps using the helpers unchanged.

local helpers = {}

local function current_copas()
  return package.loaded.copas or require "copas"
end

local function clock()
  return current_copas().gettime()
end

--- Steps copas (`copas.step(0.01)`) until `pred()` returns a truthy value.
-- @return the truthy value returned by `pred`
-- Raises `msg` (default "condition not met") followed by the elapsed time when
-- `timeout` seconds (default 5) pass first.
function helpers.step_until(pred, timeout, msg)
  local copas = current_copas()
  timeout = timeout or 5
  local start = clock()
  while true do
    local res = pred()
    if res then return res end
    local elapsed = clock() - start
    if elapsed > timeout then
      error(("%s (after %.3f s)"):format(msg or "condition not met", elapsed), 2)
    end
    copas.step(0.01)
  end
end

local function in_main_thread()
  local co, ismain = coroutine.running()
  return co == nil or ismain == true
end

--- Adds `fn` as a thread and runs `copas.loop()` until it returns.
-- The loop is run with a step cap of 0.05 s so the guard below gets to look
-- at the clock; that cap does not change what runs or in which order.
-- Raises "loop did not finish within N s" after calling `copas.cancelall()`
-- when the loop is still running `timeout` seconds (default 10) later.
function helpers.run(fn, timeout)
  local copas = current_copas()
  timeout = timeout or 10
  if fn ~= nil then copas.addthread(fn) end
  local deadline = clock() + timeout
  local timed_out = false
  local is_jit = type(rawget(_G, "jit")) == "table"
  -- the guard is a call hook on the main thread (where loop() runs); PUC Lua
  -- copies hooks into coroutines created from a hooked thread, so those drop
  -- theirs on first use (LuaJIT hooks are global: keep it, it is cheap)
  local function guard()
    if not in_main_thread() then
      if not is_jit then debug.sethook() end
      return
    end
    if not timed_out and clock() > deadline then
      timed_out = true
      copas.cancelall()
    end
  end
  local old_hook, old_mask, old_count = debug.gethook()
  debug.sethook(guard, "c")
  local ok, err = pcall(copas.loop, 0.05)
  if old_hook then
    debug.sethook(old_hook, old_mask, old_count)
  else
    debug.sethook()
  end
  if not ok then error(err, 0) end
  if timed_out then
    error(("loop did not finish within %s s"):format(timeout), 2)
  end
end

--- A free TCP port on 127.0.0.1 (bound to port 0, read back, closed).
-- @return port number
function helpers.free_port()
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

--- Unloads copas and its Lua submodules, then loads a fresh instance.
-- @return the new copas module
function helpers.reload()
  for name in pairs(package.loaded) do
    if name == "copas" or (name:match("^copas%.") and name ~= "copas.core") then
      package.loaded[name] = nil
    end
  end
  return require "copas"
end

--- A listening TCP socket on `host` (default 127.0.0.1), port 0.
-- @return server, port
function helpers.listen(host)
  local socket = require "socket"
  local server = assert(socket.bind(host or "127.0.0.1", 0))
  local _, port = server:getsockname()
  return server, tonumber(port)
end

--- A fresh copas whose default error handler records every thread error.
-- @return copas, the table the errors (with tracebacks) are appended to
function helpers.reload_strict()
  local copas = helpers.reload()
  local errors = {}
  copas.seterrorhandler(function(err, co)
    errors[#errors + 1] = tostring(err) .. "\n" .. debug.traceback(co)
  end, true)
  return copas, errors
end

--- helpers.run, then fail if any thread failed (errors from reload_strict).
function helpers.run_strict(errors, fn, timeout)
  helpers.run(fn, timeout)
  assert(#errors == 0, "thread failed: " .. tostring(errors[1]))
end

--- helpers.run for specs with in-process servers: runs `fn` as a thread;
-- when it returns, or any thread fails, calls every server's `stop()`;
-- re-raises the first thread error.
function helpers.run_serving(copas, fn, timeout, ...)
  local servers = { ... }
  local function stop()
    for _, s in ipairs(servers) do s.stop() end
  end
  local failure
  helpers.run(function()
    copas.seterrorhandler(function(msg)
      failure = msg
      stop()
    end)
    fn()
    stop()
  end, timeout)
  if failure then error(failure, 0) end
end

--- Runs `code` in a fresh interpreter (the one running the specs, see
-- spec/process.lua) with this process's module paths, under `timeout`
-- (`limit` seconds, default 60). `env` is put in front of the command
-- ("COPAS_BACKEND=poll", or shell commands ending in one). Returns the
-- combined stdout and stderr, and the exit status.
function helpers.run_lua(code, env, limit)
  local process = require "spec.process"
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(code)
  f:close()
  local p = assert(io.popen(("(%s timeout %d %s %s) 2>&1; echo \"exit:$?\""):format(
    env or "", limit or 60, process.quote(process.lua()), name)))
  local out = p:read("*a")
  p:close()
  os.remove(name)
  local status = tonumber(out:match("exit:(%d+)%s*$"))
  return (out:gsub("exit:%d+%s*$", "")), status
end

--- Two connected, non-blocking TCP sockets over `host` (default 127.0.0.1).
function helpers.pair(host)
  local socket = require "socket"
  local server, port = helpers.listen(host)
  local a = assert(socket.connect(host or "127.0.0.1", port))
  local b = assert(server:accept())
  server:close()
  a:settimeout(0)
  b:settimeout(0)
  return a, b
end

return helpers
