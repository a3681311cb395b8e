-- copas.smtp against an SMTP server written with Copas in this process: the
-- server records the dialogue, and it can only answer if the client's socket
-- does not block the loop.
local helpers = require "spec.helpers"
local socket = require "socket"
local ltn12 = require "ltn12"
local mime = require "mime"

local copas = require "copas"
local smtp = require "copas.smtp"
local ssmtp = require "socket.smtp"

-- options: ehlo (extra EHLO lines), reject_rcpt (address to refuse)
local function smtp_server(opts)
  opts = opts or {}
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local srv = { port = port, sessions = {} }
  copas.addserver(server, copas.handler(function(c)
    local s = { commands = {}, data = nil }
    srv.sessions[#srv.sessions + 1] = s
    local function reply(line) c:send(line .. "\r\n") end
    reply("220 test ESMTP ready")
    while true do
      local line = c:receive("*l")
      if not line then break end
      s.commands[#s.commands + 1] = line
      local verb = line:match("^(%S+)"):upper()
      if verb == "EHLO" then
        for _, l in ipairs(opts.ehlo or {}) do reply("250-" .. l) end
        reply("250 OK")
      elseif verb == "MAIL" then reply("250 sender ok")
      elseif verb == "RCPT" then
        if opts.reject_rcpt and line:find(opts.reject_rcpt, 1, true) then
          reply("550 no such user")
        else
          reply("250 recipient ok")
        end
      elseif verb == "DATA" then
        reply("354 go ahead")
        local lines = {}
        while true do
          local l = c:receive("*l")
          if not l or l == "." then break end
          lines[#lines + 1] = l
        end
        s.data = table.concat(lines, "\n")
        reply("250 queued")
      elseif verb == "AUTH" then
        reply("334 " .. mime.b64("Username:"))
        s.auth_user = mime.unb64(c:receive("*l"))
        reply("334 " .. mime.b64("Password:"))
        s.auth_password = mime.unb64(c:receive("*l"))
        reply("235 authenticated")
      elseif verb == "QUIT" then
        reply("221 bye")
        break
      else
        reply("502 unknown")
      end
    end
  end))
  function srv.stop() copas.removeserver(server) end
  return srv
end

-- runs `fn` as a copas thread until the loop ends (bounded); the servers
-- given are stopped when `fn` returns or fails, and a failure is re-raised
local function run(fn, timeout, ...)
  helpers.run_serving(copas, fn, timeout or 20, ...)
end

describe("copas.smtp", function()
  it("reads fields through to socket.smtp", function()
    assert.equal(ssmtp.message, smtp.message)
    assert.equal(ssmtp.TIMEOUT, smtp.TIMEOUT)
    assert.equal(ssmtp.DOMAIN, smtp.DOMAIN)
    assert.equal(require "copas.smtp", copas.smtp)
    assert.are_not.equal(ssmtp.send, smtp.send)
  end)

  it("writes PORT, SERVER, TIMEOUT, DOMAIN and TIMEZONE through", function()
    local keys = { "PORT", "SERVER", "TIMEOUT", "DOMAIN", "TIMEZONE" }
    local saved = {}
    for i, k in ipairs(keys) do saved[i] = ssmtp[k] end
    smtp.PORT, smtp.SERVER, smtp.TIMEOUT, smtp.DOMAIN, smtp.TIMEZONE = 2525, "h", 7, "d", "+0100"
    assert.same({ 2525, "h", 7, "d", "+0100" },
      { ssmtp.PORT, ssmtp.SERVER, ssmtp.TIMEOUT, ssmtp.DOMAIN, ssmtp.TIMEZONE })
    for _, k in ipairs(keys) do assert.is_nil(rawget(smtp, k)) end
    for i, k in ipairs(keys) do ssmtp[k] = saved[i] end
    smtp.OTHER = 1
    assert.is_nil(rawget(ssmtp, "OTHER"))
    smtp.OTHER = nil
  end)

  it("sends a message: the dialogue, dot-stuffing and the body", function()
    local srv = smtp_server()
    local r, e
    run(function()
      r, e = smtp.send {
        from = "<alice@example.test>",
        rcpt = { "<bob@example.test>", "<carol@example.test>" },
        server = "127.0.0.1", port = srv.port, domain = "client.test",
        source = smtp.message {
          headers = { subject = "hello", to = "bob@example.test" },
          body = "line one\r\n.starts with a dot\r\nlast",
        },
      }
    end, nil, srv)
    assert.same({ 1, nil }, { r, e })
    local s = srv.sessions[1]
    assert.same({
      "EHLO client.test",
      "MAIL FROM:<alice@example.test>",
      "RCPT TO:<bob@example.test>",
      "RCPT TO:<carol@example.test>",
      "DATA",
      "QUIT",
    }, s.commands)
    local data = "\n" .. s.data  -- header order varies
    assert.matches("\nSubject: hello\n", data, 1, true)
    assert.matches("\nTo: bob@example.test\n", data, 1, true)
    assert.matches("\n\nline one\n..starts with a dot\nlast", data, 1, true)
  end)

  it("authenticates with AUTH LOGIN when offered", function()
    local srv = smtp_server { ehlo = { "AUTH LOGIN" } }
    local r
    run(function()
      r = smtp.send { from = "<a@x.test>", rcpt = "<b@x.test>", server = "127.0.0.1",
        port = srv.port, user = "joe", password = "s3cret",
        source = ltn12.source.string("Subject: x\r\n\r\nbody") }
    end, nil, srv)
    assert.equal(1, r)
    local s = srv.sessions[1]
    assert.equal("AUTH LOGIN", s.commands[2])
    assert.same({ "joe", "s3cret" }, { s.auth_user, s.auth_password })
  end)

  it("returns the server's reply when a recipient is refused", function()
    local srv = smtp_server { reject_rcpt = "nobody" }
    local r, e
    run(function()
      r, e = smtp.send { from = "<a@x.test>", rcpt = { "<b@x.test>", "<nobody@x.test>" },
        server = "127.0.0.1", port = srv.port, source = ltn12.source.string("x") }
    end, nil, srv)
    assert.same({ nil, "550 no such user" }, { r, e })
    local cmds = srv.sessions[1].commands
    assert.equal("RCPT TO:<nobody@x.test>", cmds[#cmds])
  end)

  it("returns 'connection refused' for a closed port", function()
    local port = helpers.free_port()
    local r, e
    run(function()
      r, e = smtp.send { from = "<a@x.test>", rcpt = "<b@x.test>", server = "127.0.0.1",
        port = port, source = ltn12.source.string("x") }
    end)
    assert.same({ nil, "connection refused" }, { r, e })
  end)

  it("uses mailt.create and the SERVER/PORT defaults", function()
    local srv = smtp_server()
    local saved_server, saved_port = ssmtp.SERVER, ssmtp.PORT
    smtp.SERVER, smtp.PORT = "127.0.0.1", srv.port
    finally(function() ssmtp.SERVER, ssmtp.PORT = saved_server, saved_port end)
    local calls, r = 0, nil
    run(function()
      r = smtp.send { from = "<a@x.test>", rcpt = "<b@x.test>",
        source = ltn12.source.string("x"),
        create = function()
          calls = calls + 1
          return copas.wrap(socket.tcp())
        end }
    end, nil, srv)
    assert.same({ 1, 1 }, { r, calls })
  end)

  it("sends 20 messages concurrently", function()
    local srv = smtp_server()
    local results = {}
    run(function()
      local main, done = coroutine.running(), 0
      for i = 1, 20 do
        copas.addthread(function()
          results[i] = smtp.send { from = "<a@x.test>", rcpt = "<n" .. i .. "@x.test>",
            server = "127.0.0.1", port = srv.port,
            source = ltn12.source.string("message " .. i) }
          done = done + 1
          if done == 20 then copas.wakeup(main) end
        end)
      end
      copas.pauseforever()
    end, 20, srv)
    local seen = {}
    for i = 1, 20 do
      assert.equal(1, results[i])
      seen[srv.sessions[i].data] = true
    end
    for i = 1, 20 do assert.is_true(seen["message " .. i], "message " .. i) end
  end)
end)
