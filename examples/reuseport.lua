-- One port, several processes: each process runs its own Copas loop on its
-- own listening socket, all bound to the same port with SO_REUSEPORT, and
-- the Linux kernel spreads incoming connections over them. A server answers
-- every line with its process id, so a client sees the spread.
--
--   lua examples/reuseport.lua [--procs N] [--connections C]
--       start N servers (default 4), connect C times (default 40), print how
--       many connections each process took, stop the servers
--   lua examples/reuseport.lua serve [--procs N] [--port P] [--duration S]
--       only the servers; they stop after S seconds (default 60) or when
--       every one of them got a "stop" line
--   lua examples/reuseport.lua client --port P [--connections C] [--stop]
--       only the client; --stop then sends "stop" until every server quit
--
-- Lua cannot fork: the servers are new interpreters running this file
-- (`worker` mode), started through the shell, which passes each its pid.
-- Protocol, one line each way: "pid" -> "pid <pid>", "stop" -> "stopping <pid>".

local copas = require "copas"
local socket = require "socket"

local mode = "demo"
if arg[1] == "serve" or arg[1] == "client" or arg[1] == "worker" then
  mode = table.remove(arg, 1)
end
local opts = { procs = 4, connections = 40, port = 0, duration = 60 }
do
  local numeric = { procs = true, connections = true, port = true, duration = true, pid = true }
  local i = 1
  while arg[i] do
    local key, value = arg[i]:match("^%-%-(%a+)$"), tonumber(arg[i + 1])
    if key == "stop" then
      opts.stop, i = true, i + 1
    elseif numeric[key] and value then
      opts[key], i = value, i + 2
    else
      io.stderr:write("usage: lua examples/reuseport.lua [serve|client] [--procs N]"
        .. " [--port P] [--connections C] [--duration S] [--stop]\n")
      os.exit(2)
    end
  end
end

-- worker mode: one server process on the shared port
local function worker()
  local server = assert(socket.tcp4())
  assert(server:setoption("reuseaddr", true))
  assert(server:setoption("reuseport", true))   -- before bind: the port is shared
  assert(server:bind("127.0.0.1", opts.port))
  assert(server:listen(128))
  local port = select(2, server:getsockname())
  io.stdout:setvbuf("line")
  print(("ready %d %d"):format(opts.pid, port))
  local served, stop = 0, false
  local ticker
  local function quit()
    if stop then return end
    stop = true
    copas.removeserver(server)
    if ticker then copas.wakeup(ticker) end
  end
  copas.addserver(server, copas.handler(function(skt)
    skt:settimeout(5)
    local line = skt:receive("*l")
    served = served + 1
    if line == "stop" then
      -- close the listener before answering: the client's next connection
      -- then goes to another server
      quit()
      skt:send(("stopping %d\n"):format(opts.pid))
    elseif line then
      skt:send(("pid %d\n"):format(opts.pid))
    end
  end))
  ticker = copas.addthread(function()
    copas.pause(opts.duration)
    quit()
  end)
  copas.loop()
  print(("worker %d served %d connections"):format(opts.pid, served))
end

-- the interpreter running this script, and the script, for the workers
local function self_command()
  local i = 0
  while arg[i - 1] do i = i - 1 end
  local quote = function(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  return quote(arg[i]) .. " " .. quote(arg[0])
end

-- starts `procs` workers; the first picks the port, the others join it
-- @return port, array of { pid = , pipe = }
local function start_workers(procs, port)
  local workers = {}
  for n = 1, procs do
    local cmd = ("exec %s worker --pid $$ --port %d --duration %s"):format(
      self_command(), port, opts.duration)
    local pipe = assert(io.popen(cmd))
    local line = pipe:read("*l") or ""
    local pid, bound = line:match("^ready (%d+) (%d+)$")
    assert(pid, "worker " .. n .. " did not start: " .. line)
    port = tonumber(bound)
    workers[n] = { pid = tonumber(pid), pipe = pipe }
  end
  return port, workers
end

-- waits for the workers to exit, printing what they print
local function wait_workers(workers)
  for _, w in ipairs(workers) do
    io.write(w.pipe:read("*a"))
    w.pipe:close()
  end
end

-- one request: the reply line, or nil, err
local function ask(port, request)
  local c = copas.wrap(socket.tcp())
  c:settimeout(5)
  local ok, err = c:connect("127.0.0.1", port)
  if not ok then return nil, err end
  c:send(request .. "\n")
  local reply, rerr = c:receive("*l")
  c:close()
  return reply, rerr
end

-- the client: `connections` concurrent requests, then the stops
local function client(port, connections, stop)
  local per_pid, answered, order = {}, 0, {}
  copas.addthread(function()
    local tasks = require("copas.limit").new(connections)
    for _ = 1, connections do
      tasks:addthread(function()
        local pid = (ask(port, "pid") or ""):match("^pid (%d+)$")
        if pid then
          answered = answered + 1
          if not per_pid[pid] then
            per_pid[pid], order[#order + 1] = 0, pid
          end
          per_pid[pid] = per_pid[pid] + 1
        end
      end)
    end
    tasks:wait()
    table.sort(order)
    for _, pid in ipairs(order) do
      print(("process %s took %d connections"):format(pid, per_pid[pid]))
    end
    print(("%d/%d answered by %d processes"):format(answered, connections, #order))
    if stop then
      -- a stopped server closes its socket, so the next connection goes to
      -- another one; the attempts are bounded
      local stopped = 0
      for _ = 1, 50 do
        local reply, err = ask(port, "stop")
        if err == "connection refused" then break end   -- no server left
        if reply then stopped = stopped + 1 end
      end
      print(("stopped %d servers"):format(stopped))
    end
  end)
  copas.loop()
end

if mode == "worker" then
  worker()
elseif mode == "client" then
  client(opts.port, opts.connections, opts.stop)
else
  local port, workers = start_workers(opts.procs, opts.port)
  local pids = {}
  for n, w in ipairs(workers) do pids[n] = w.pid end
  print(("listening on 127.0.0.1:%d with %d processes: %s"):format(port, #workers,
    table.concat(pids, " ")))
  io.stdout:flush()
  if mode == "demo" then client(port, opts.connections, true) end
  wait_workers(workers)
end
