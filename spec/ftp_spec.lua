-- copas.ftp against a real FTP server (Debian package python3-pyftpdlib, run
-- unprivileged on 127.0.0.1:<free port> with a temporary directory) and
-- against an FTP server written with Copas in this process, which can only
-- answer if no socket of the client blocks the loop.
local helpers = require "spec.helpers"
local socket = require "socket"
local ltn12 = require "ltn12"

local copas = require "copas"
local ftp = require "copas.ftp"
local sftp = require "socket.ftp"

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  return ok == true or ok == 0, code
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local d = f:read("*a")
  f:close()
  return d
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- deterministic content of `size` bytes
local function content(size, seed)
  local t, x = {}, seed
  for i = 1, 4096 do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(math.floor(x / 65536) % 256)
  end
  local block = table.concat(t)
  return block:rep(math.ceil(size / #block)):sub(1, size)
end

-- starts pyftpdlib; nil, reason when it is not installed
local function start_pyftpdlib()
  local python
  for _, p in ipairs { "python3", "/usr/bin/python3" } do
    if sh(p .. " -c 'import pyftpdlib' >/dev/null 2>&1") then python = p break end
  end
  if not python then return nil, "python3-pyftpdlib not installed" end
  local dir = os.tmpname()
  os.remove(dir)
  assert(sh("mkdir -p " .. q(dir .. "/root")))
  local port = helpers.free_port()
  assert(sh(python .. " -m pyftpdlib -i 127.0.0.1 -p " .. port .. " -w -d " ..
    q(dir .. "/root") .. " -u tester -P secret >" .. q(dir .. "/log") .. " 2>&1 & echo $! >" ..
    q(dir .. "/pid")))
  local pid = read_file(dir .. "/pid"):match("%d+")
  local srv = { port = port, dir = dir, root = dir .. "/root",
    base = "ftp://tester:secret@127.0.0.1:" .. port }
  function srv.stop()
    sh("kill " .. pid .. " 2>/dev/null")
    sh("rm -rf " .. q(dir))
  end
  -- wait (bounded) for the greeting
  local deadline = socket.gettime() + 10
  while true do
    local c = socket.tcp()
    c:settimeout(1)
    if c:connect("127.0.0.1", port) then
      local line = c:receive("*l")
      c:close()
      if line and line:match("^220") then break end
    else
      c:close()
    end
    if socket.gettime() > deadline then
      local log = read_file(dir .. "/log")
      srv.stop()
      error("pyftpdlib did not start: " .. tostring(log))
    end
    socket.sleep(0.05)
  end
  return srv
end

-- an FTP server on Copas sockets in this process (passive mode only); it
-- records the commands it received in `srv.commands`
local function copas_ftp_server(files, opts)
  opts = opts or {}
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local srv = { port = port, commands = {}, stored = {} }
  copas.addserver(server, copas.handler(function(c)
    local data_server, data_port, accepted, waiter
    local function reply(s) c:send(s .. "\r\n") end
    reply("220 copas test server")
    while true do
      local line = c:receive("*l")
      if not line then break end
      local cmd, arg = line:match("^(%S+)%s*(.*)$")
      cmd = cmd:upper()
      srv.commands[#srv.commands + 1] = line
      if cmd == "USER" then reply("331 password please")
      elseif cmd == "PASS" then reply("230 logged in")
      elseif cmd == "TYPE" then reply("200 type set")
      elseif cmd == "EPSV" and opts.no_epsv then
        reply("500 EPSV not understood")
      elseif cmd == "EPSV" or cmd == "PASV" then
        -- the data connection is accepted by a Copas server of its own
        data_server = assert(socket.bind("127.0.0.1", 0))
        _, data_port = data_server:getsockname()
        accepted, waiter = nil, nil
        copas.addserver(data_server, function(d)
          accepted = d
          if waiter then copas.wakeup(waiter) end
          copas.pauseforever()  -- keep d open; the control thread uses it
        end)
        if cmd == "EPSV" then
          reply("229 Entering Extended Passive Mode (|||" .. data_port .. "|)")
        else
          reply(("227 Entering Passive Mode (127,0,0,1,%d,%d)"):format(
            math.floor(data_port / 256), data_port % 256))
        end
      elseif cmd == "RETR" or cmd == "STOR" then
        if not accepted then
          waiter = coroutine.running()
          copas.pauseforever()
        end
        local d = accepted
        copas.removeserver(data_server)
        if not d then reply("425 no data connection") else
          d = copas.wrap(d)
          reply("150 opening data connection")
          if cmd == "RETR" then
            local body = files[arg] or ""
            -- send in pieces, yielding in between
            for i = 1, #body, 65536 do d:send(body:sub(i, i + 65535)) copas.pause(0) end
          else
            local got = d:receive("*a")
            srv.stored[arg] = got
          end
          d:close()
          reply("226 transfer complete")
        end
      elseif cmd == "QUIT" then reply("221 bye") break
      else reply("502 not implemented") end
    end
    -- a data server nobody connected to must not keep the loop alive
    if data_server and not accepted then copas.removeserver(data_server) end
  end))
  function srv.stop() copas.removeserver(server) end
  return srv
end

-- runs `fn` as a copas thread until the loop ends (bounded); the servers
-- given are stopped when `fn` returns or fails, and a failure is re-raised
local function run(fn, timeout, ...)
  helpers.run_serving(copas, fn, timeout or 30, ...)
end

describe("copas.ftp", function()
  describe("module", function()
    it("reads missing fields from socket.ftp", function()
      assert.equal(sftp.TIMEOUT, ftp.TIMEOUT)
      assert.equal(sftp.USER, ftp.USER)
      assert.equal(sftp.PASSWORD, ftp.PASSWORD)
      assert.equal(sftp.genericform, ftp.genericform)
      assert.equal(require "copas.ftp", copas.ftp)
    end)

    it("writes PORT, TIMEOUT, USER and PASSWORD through to socket.ftp", function()
      local saved = { sftp.PORT, sftp.TIMEOUT, sftp.USER, sftp.PASSWORD }
      ftp.PORT, ftp.TIMEOUT, ftp.USER, ftp.PASSWORD = 2121, 5, "u", "p"
      assert.same({ 2121, 5, "u", "p" }, { sftp.PORT, sftp.TIMEOUT, sftp.USER, sftp.PASSWORD })
      assert.is_nil(rawget(ftp, "TIMEOUT"))
      sftp.PORT, sftp.TIMEOUT, sftp.USER, sftp.PASSWORD = saved[1], saved[2], saved[3], saved[4]
      ftp.OTHER = 1
      assert.is_nil(rawget(sftp, "OTHER"))
      assert.equal(1, rawget(ftp, "OTHER"))
      ftp.OTHER = nil
    end)

    it("parseRequest makes download and upload tables", function()
      local g = ftp.parseRequest("ftp://u:p@127.0.0.1:2121/dir/file.txt;type=i")
      assert.same({ "127.0.0.1", "2121", "/dir/file.txt", "i", "u", "p" },
        { g.host, g.port, g.path, g.type, g.user, g.password })
      assert.is_table(g.target)
      assert.is_function(g.sink)
      local p = ftp.parseRequest("ftp://127.0.0.1/x", "body")
      assert.is_function(p.source)
      assert.is_nil(p.target)
    end)

    it("returns nil, err for bad URLs", function()
      local res = {}
      run(function()
        res[1] = { ftp.get("http://127.0.0.1/x") }
        res[2] = { ftp.get("ftp:///x") }
        res[3] = { ftp.put("ftp://127.0.0.1/x;type=z", "data") }
      end)
      assert.same({ nil, "wrong scheme 'http'" }, res[1])
      assert.same({ nil, "missing hostname" }, res[2])
      assert.same({ nil, "invalid type 'z'" }, res[3])
    end)

    it("returns 'connection refused' for a closed port", function()
      local port = helpers.free_port()
      local r, e
      run(function() r, e = ftp.get("ftp://127.0.0.1:" .. port .. "/x") end)
      assert.same({ nil, "connection refused" }, { r, e })
    end)
  end)

  describe("against an in-process Copas FTP server", function()
    it("downloads and uploads without blocking the loop (data socket from create)", function()
      local big = content(3 * 1024 * 1024, 5)
      local srv = copas_ftp_server { ["big.bin"] = big }
      local base = "ftp://user:pw@127.0.0.1:" .. srv.port
      local got, sent, created = nil, nil, 0
      -- a blocking data socket would stall the in-process server: fail fast
      local saved_timeout = sftp.TIMEOUT
      sftp.TIMEOUT = 3
      finally(function() sftp.TIMEOUT = saved_timeout end)
      run(function()
        got = ftp.get(base .. "/big.bin;type=i")
        sent = ftp.put { url = base .. "/up.bin", source = ltn12.source.string("uploaded"),
          create = function()
            created = created + 1
            return copas.wrap(socket.tcp())
          end }
      end, 20, srv)
      assert.equal(#big, #got)
      assert.is_true(got == big)
      assert.equal(8, sent)
      assert.equal("uploaded", srv.stored["up.bin"])
      assert.equal(2, created)  -- control and data connection
      assert.same({ "USER user", "PASS pw", "TYPE i", "EPSV", "RETR big.bin", "QUIT" },
        { table.unpack(srv.commands, 1, 6) })
    end)
  end)

  describe("against an in-process server without EPSV", function()
    it("falls back to PASV", function()
      local srv = copas_ftp_server({ ["f.txt"] = "via pasv" }, { no_epsv = true })
      local got
      run(function()
        got = ftp.get("ftp://u:p@127.0.0.1:" .. srv.port .. "/f.txt")
      end, 20, srv)
      assert.equal("via pasv", got)
      assert.same({ "USER u", "PASS p", "EPSV", "PASV", "RETR f.txt", "QUIT" }, srv.commands)
    end)
  end)

  describe("against pyftpdlib", function()
    local srv, reason
    setup(function() srv, reason = start_pyftpdlib() end)
    teardown(function() if srv then srv.stop() end end)

    local function need()
      if not srv then pending("FTP server not available: " .. tostring(reason)) end
      return srv ~= nil
    end

    it("gets a file with the string form", function()
      if not need() then return end
      local data = content(1024 * 1024 + 3, 9)
      write_file(srv.root .. "/one.bin", data)
      local got
      run(function() got = ftp.get(srv.base .. "/one.bin;type=i") end)
      assert.equal(#data, #got)
      assert.is_true(got == data)
    end)

    it("puts a file with the string form and returns the bytes sent", function()
      if not need() then return end
      local data = content(200000, 3)
      local sent
      run(function() sent = ftp.put(srv.base .. "/put.bin;type=i", data) end)
      assert.equal(#data, sent)
      assert.is_true(read_file(srv.root .. "/put.bin") == data)
    end)

    it("get(t) and put(t) use sinks and sources", function()
      if not need() then return end
      local t = {}
      local r1, r2
      run(function()
        r1 = ftp.put { host = "127.0.0.1", port = srv.port, user = "tester",
          password = "secret", path = "/t.txt", type = "i",
          source = ltn12.source.string("table form") }
        r2 = ftp.get { url = srv.base .. "/t.txt", type = "i", sink = ltn12.sink.table(t) }
      end)
      assert.same({ 10, 1 }, { r1, r2 })
      assert.equal("table form", table.concat(t))
    end)

    it("command() runs commands with checks", function()
      if not need() then return end
      write_file(srv.root .. "/old.txt", "x")
      local r
      run(function()
        r = ftp.command { url = srv.base, command = { "rnfr", "rnto" },
          argument = { "old.txt", "new.txt" }, check = { "3..", "2.." } }
      end)
      assert.equal(1, r)
      assert.is_nil(read_file(srv.root .. "/old.txt"))
      assert.equal("x", read_file(srv.root .. "/new.txt"))
    end)

    it("returns the server's reply for a missing file and a bad login", function()
      if not need() then return end
      local r1, e1, r2, e2
      run(function()
        r1, e1 = ftp.get(srv.base .. "/missing.bin")
        r2, e2 = ftp.get("ftp://tester:wrong@127.0.0.1:" .. srv.port .. "/x")
      end)
      assert.is_nil(r1)
      assert.matches("^550", e1)
      assert.is_nil(r2)
      assert.matches("^530", e2)
    end)

    it("completes concurrent transfers with verified content", function()
      if not need() then return end
      local files = {}
      for i = 1, 6 do
        files[i] = content(2 * 1024 * 1024 + i, 20 + i)
        write_file(srv.root .. "/c" .. i .. ".bin", files[i])
      end
      local got = {}
      run(function()
        local done = 0
        local main = coroutine.running()
        for i = 1, 6 do
          copas.addthread(function()
            got[i] = ftp.get(srv.base .. "/c" .. i .. ".bin;type=i")
            done = done + 1
            if done == 6 then copas.wakeup(main) end
          end)
        end
        copas.pauseforever()
      end, 60)
      for i = 1, 6 do
        assert.is_true(got[i] == files[i], "file " .. i .. " differs")
      end
    end)
  end)
end)
