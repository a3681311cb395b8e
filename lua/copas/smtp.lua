--- copas.smtp: LuaSocket's socket.smtp with Copas sockets.
--
-- send() runs LuaSocket's SMTP dialogue (socket.smtp.open and the session's
-- greet, auth, send, quit) on a socket made by `mailt.create`, by default a
-- Copas-wrapped TCP socket, so sending mail never blocks the loop. Other
-- fields (message, the constants, ...) read through to socket.smtp.
-- @module copas.smtp

local copas = require "copas"
local socket = require "socket"
local ssmtp = require "socket.smtp"

-- assigning these writes through to socket.smtp
local FORWARD = { PORT = true, SERVER = true, TIMEOUT = true, DOMAIN = true, TIMEZONE = true }

local M = setmetatable({}, {
  __index = ssmtp,
  __newindex = function(self, key, value)
    if FORWARD[key] then
      ssmtp[key] = value
    else
      rawset(self, key, value)
    end
  end,
})

local function default_create()
  return copas.wrap(socket.tcp())
end

--- Sends a message (mailt as for socket.smtp.send: from, rcpt, source,
-- server, port, domain, user, password, step, create).
-- @param mailt table
-- @usage copas.addthread(function()
--   local ok, err = copas.smtp.send {
--     from = "<a@example.org>", rcpt = { "<b@example.org>" },
--     source = copas.smtp.message { headers = { subject = "hi" }, body = "hello" },
--     server = "127.0.0.1", port = 2525 }
-- end)
-- @return 1 | nil, err (the server's reply line or a socket error)
function M.send(mailt)
  if type(mailt) ~= "table" then
    error("bad argument #1 to 'send' (table expected, got " .. type(mailt) .. ")", 2)
  end
  -- socket.protect is looked up now, so it is the one of the loaded copas
  return socket.protect(function()
    local s = ssmtp.open(mailt.server, mailt.port, mailt.create or default_create)
    local ext = s:greet(mailt.domain)
    s:auth(mailt.user, mailt.password, ext)
    s:send(mailt)
    s:quit()
    return s:close()
  end)()
end

return M
