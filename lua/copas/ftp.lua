--- copas.ftp: LuaSocket's socket.ftp interface on Copas sockets.
--
-- LuaSocket's ftp opens the passive data connection with a plain
-- socket.tcp() that ignores `create`, which would block the whole loop. This
-- module therefore drives the FTP dialogue itself (on socket.tp for the
-- control connection) and makes every socket, control and data, with the
-- request's `create` (default: a Copas-wrapped TCP socket). Errors follow
-- LuaSocket: the session methods raise through socket.try, the high-level
-- functions return nil, err.
-- @module copas.ftp

local copas = require "copas"
local socket = require "socket"
local sftp = require "socket.ftp"
local tp = require "socket.tp"
local url = require "socket.url"
local ltn12 = require "ltn12"

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local setmetatable = setmetatable

-- assigning these writes through to socket.ftp
local FORWARD = { PORT = true, TIMEOUT = true, PASSWORD = true, USER = true }

local M = setmetatable({}, {
  __index = sftp,
  __newindex = function(self, key, value)
    if FORWARD[key] then
      sftp[key] = value
    else
      rawset(self, key, value)
    end
  end,
})

local function default_create()
  return copas.wrap(socket.tcp())
end

local function timeout() return sftp.TIMEOUT or 60 end

-------------------------------------------------------------------------------
-- Low level: sessions. The session methods raise through socket.try, as
-- LuaSocket's do.
-- @section session
-------------------------------------------------------------------------------

local session = {}
local session_mt = { __index = session }

--- Opens the control connection.
-- @param server host name or address
-- @param port number (default 21)
-- @param create socket factory (default: a Copas-wrapped TCP socket)
-- @return session (raises a socket.try error on failure)
function M.open(server, port, create)
  if type(server) ~= "string" then
    error("bad argument #1 to 'open' (string expected, got " .. type(server) .. ")", 2)
  end
  create = create or default_create
  local control = socket.try(tp.connect(server, port or sftp.PORT or 21, timeout(), create))
  local f = setmetatable({ tp = control, create = create }, session_mt)
  f.try = socket.newtry(function() f:close() end)
  return f
end

--- Reads the greeting. @return 1
function session:greet()
  local code = self.try(self.tp:check { "1..", "2.." })
  if code < 200 then self.try(self.tp:check("2..")) end
  return 1
end

--- USER (and PASS when asked); defaults socket.ftp.USER/PASSWORD.
-- @param user string
-- @param password string
-- @return 1
function session:login(user, password)
  self.try(self.tp:command("user", user or sftp.USER))
  local code = self.try(self.tp:check { "2..", 331 })
  if code == 331 then
    self.try(self.tp:command("pass", password or sftp.PASSWORD))
    self.try(self.tp:check("2.."))
  end
  return 1
end

--- TYPE: the transfer type.
-- @param t "a" (ASCII) or "i" (binary)
-- @return 1
function session:type(t)
  self.try(self.tp:command("type", t))
  self.try(self.tp:check(200))
  return 1
end

--- CWD: changes the directory.
-- @param dir string
-- @return 1
function session:cwd(dir)
  self.try(self.tp:command("cwd", dir))
  self.try(self.tp:check(250))
  return 1
end

--- PASV: the data address comes from the reply.
-- @return address, port
function session:pasv()
  self.try(self.tp:command("pasv"))
  local _, reply = self.try(self.tp:check("2.."))
  local a, b, c, d, p1, p2 = reply:match("(%d+)%D(%d+)%D(%d+)%D(%d+)%D(%d+)%D(%d+)")
  self.try(a ~= nil, reply)
  -- tonumber keeps integers on Lua 5.3, where string arithmetic makes floats
  self.pasvt = { address = a .. "." .. b .. "." .. c .. "." .. d,
    port = tonumber(p1) * 256 + tonumber(p2) }
  return self.pasvt.address, self.pasvt.port
end

--- EPSV: the data port comes from the reply, the address is the server's.
-- @return address, port
function session:epsv()
  self.try(self.tp:command("epsv"))
  local _, reply = self.try(self.tp:check("229"))
  local _, port = reply:match("%((.)%1%1(%d+)%1%)")
  port = tonumber(port)
  self.try(port, "invalid epsv response")
  local address = self.try(self.tp.c:getpeername())
  self.pasvt = { address = address, port = port }
  return address, port
end

--- EPSV, falling back to PASV when the server refuses it (5xx).
-- @return address, port
function session:passive()
  self.try(self.tp:command("epsv"))
  local code, reply = self.tp:check("229")
  if code then
    local _, port = reply:match("%((.)%1%1(%d+)%1%)")
    port = tonumber(port)
    self.try(port, "invalid epsv response")
    self.pasvt = { address = self.try(self.tp.c:getpeername()), port = port }
    return self.pasvt.address, self.pasvt.port
  end
  -- a 5xx reply means EPSV is unknown: try PASV; anything else is an error
  if not (reply and reply:match("^5%d%d")) then self.try(nil, reply) end
  return self:pasv()
end

--- Active mode is not supported: raises "active mode (PORT/EPRT) is not
-- supported; use passive mode" through socket.try.
function session:port()
  self.try(nil, "active mode (PORT/EPRT) is not supported; use passive mode")
end
session.eprt = session.port

--- Connects the data socket, made by `create` (so a Copas socket).
-- @return the data socket
function session:dataconnect()
  self.try(self.pasvt, "need pasv first")
  local data = self.try(self.create())
  self.data = data
  data:settimeout(timeout())
  self.try(data:connect(self.pasvt.address, self.pasvt.port))
  return data
end

local function argument_of(t)
  local arg = t.argument or url.unescape((t.path or ""):gsub("^[/\\]", ""))
  if arg == "" then return nil end
  return arg
end

--- Uploads `sendt.source` with STOR (or `sendt.command`).
-- @param sendt table: `source`, `command`, `argument`, `step`
-- @return bytes sent
function session:send(sendt)
  local data = self:dataconnect()
  self.try(self.tp:command(sendt.command or "stor", argument_of(sendt)))
  local code = self.try(self.tp:check { "2..", "1.." })
  local sink = socket.sink("keep-open", data)
  self.try(ltn12.pump.all(sendt.source, sink, sendt.step or ltn12.pump.step))
  local _, sent = data:getstats()
  data:close()
  self.data = nil
  if code < 200 then self.try(self.tp:check("2..")) end
  return sent
end

--- Downloads into `recvt.sink` with RETR (or `recvt.command`).
-- @param recvt table: `sink`, `command`, `argument`, `step`
-- @return 1
function session:receive(recvt)
  local data = self:dataconnect()
  self.try(self.tp:command(recvt.command or "retr", argument_of(recvt)))
  local code, reply = self.try(self.tp:check { "1..", "2.." })
  if code >= 200 then
    -- the reply came without data (LuaSocket passes it to the sink)
    data:close()
    self.data = nil
    recvt.sink(reply)
    return 1
  end
  local source = socket.source("until-closed", data)
  self.try(ltn12.pump.all(source, recvt.sink, recvt.step or ltn12.pump.step))
  data:close()
  self.data = nil
  self.try(self.tp:check("2.."))
  return 1
end

--- QUIT. @return 1
function session:quit()
  self.try(self.tp:command("quit"))
  self.try(self.tp:check("2.."))
  return 1
end

--- Closes the data and control connections. @return 1
function session:close()
  if self.data then self.data:close() end
  self.data = nil
  return self.tp:close()
end

-------------------------------------------------------------------------------
-- High level: get, put and command. They return nil, err on failure.
-- @section highlevel
-------------------------------------------------------------------------------

-- url fields, overridden by the request's own fields
local function override(t)
  if not t.url then return t end
  local u = url.parse(t.url)
  for k, v in pairs(t) do u[k] = v end
  return u
end

local DEFAULTS = { path = "/", scheme = "ftp" }

-- parses an ftp URL (raises through socket.try)
local function parse_url(u)
  local t = socket.try(url.parse(u, DEFAULTS))
  socket.try(t.scheme == "ftp", "wrong scheme '" .. tostring(t.scheme) .. "'")
  socket.try(t.host, "missing hostname")
  if t.params then
    t.type = t.params:match("^type=(.)$")
    socket.try(t.type == "a" or t.type == "i", "invalid type '" .. tostring(t.type) .. "'")
  end
  return t
end

--- Simple-form helper: the request table for `u`; with `body` an upload,
-- otherwise a download collecting into the `target` table.
-- @param u ftp URL
-- @param body string to upload, or nil
-- @return request table (raises a socket.try error for a bad URL)
function M.parseRequest(u, body)
  if type(u) ~= "string" then
    error("bad argument #1 to 'parseRequest' (string expected, got " .. type(u) .. ")", 2)
  end
  local t = parse_url(u)
  if body then
    t.source = ltn12.source.string(body)
  else
    t.target = {}
    t.sink = ltn12.sink.table(t.target)
  end
  return t
end

-- raises unless the request is a URL or a table
local function check_request(t, fname)
  local ty = type(t)
  if ty ~= "string" and ty ~= "table" then
    error(("bad argument #1 to '%s' (string or table expected, got %s)"):format(fname, ty), 3)
  end
end

local function login(t)
  t = override(t)
  socket.try(t.host, "missing hostname")
  local f = M.open(t.host, t.port, t.create)
  f:greet()
  f:login(t.user and url.unescape(t.user), t.password and url.unescape(t.password))
  return f, t
end

local function tput(putt)
  local f, t = login(putt)
  if t.type then f:type(t.type) end
  f:passive()
  local sent = f:send(t)
  f:quit()
  f:close()
  return sent
end

local function tget(gett)
  local f, t = login(gett)
  if t.type then f:type(t.type) end
  f:passive()
  f:receive(t)
  f:quit()
  return f:close()
end

local function tcommand(cmdt)
  local f, t = login(cmdt)
  socket.try(t.command, "missing command")
  if type(t.command) == "table" then
    local args, checks = t.argument or {}, t.check or {}
    for i, cmd in ipairs(t.command) do
      f.try(f.tp:command(cmd, args[i]))
      if checks[i] then f.try(f.tp:check(checks[i])) end
    end
  else
    f.try(f.tp:command(t.command, t.argument))
    if t.check then f.try(f.tp:check(t.check)) end
  end
  f:quit()
  return f:close()
end

--- Downloads. get(url) → content | nil, err; get(t) → 1 | nil, err.
-- @param gett URL or request table (`host`, `path`, `user`, `password`, `type`, `sink`, `create`, ...)
function M.get(gett)
  check_request(gett, "get")
  return socket.protect(function()
    if type(gett) == "string" then
      local t = M.parseRequest(gett)
      tget(t)
      return table.concat(t.target)
    end
    return tget(gett)
  end)()
end

--- Uploads. put(url, content) or put(t) → bytes sent | nil, err.
-- @param putt URL or request table (`source` instead of `body`)
-- @param body string, with a URL
function M.put(putt, body)
  check_request(putt, "put")
  if type(putt) == "string" and body ~= nil and type(body) ~= "string" then
    error("bad argument #2 to 'put' (string expected, got " .. type(body) .. ")", 2)
  end
  return socket.protect(function()
    if type(putt) == "string" then
      return tput(M.parseRequest(putt, body or ""))
    end
    return tput(putt)
  end)()
end

--- Sends commands (t.command: a string or a list, t.argument, t.check).
-- @param cmdt request table
-- @return 1 | nil, err
function M.command(cmdt)
  if type(cmdt) ~= "table" then
    error("bad argument #1 to 'command' (table expected, got " .. type(cmdt) .. ")", 2)
  end
  return socket.protect(function() return tcommand(cmdt) end)()
end

return M
