-- copas.resolver: name lookups on pool threads (issue #6).
--
-- The slow-resolver specs need getaddrinfo to be slow for chosen names.
-- They run this file again inside a network namespace of its own (root and
-- `ip netns` needed), whose /etc/resolv.conf (ip netns exec mounts
-- /etc/netns/<ns>/resolv.conf over it) names 127.0.0.1 as the only name
-- server; there spec/dns_server.lua answers on 127.0.0.1:53, 1 s late.
-- The namespace has only its own loopback, so the fixed port 53 is free.

local copas = require "copas"
local resolver = require "copas.resolver"
local socket = require "socket"
local helpers = require "spec.helpers"
local dns_server = require "spec.dns_server"

local INSIDE = os.getenv("COPAS_SPEC_NETNS") == "1"

-- runs fn in a copas thread; its results, packed
local function in_copas(fn)
  local res
  helpers.run(function()
    res = { n = 0 }
    local function keep(...) res = { n = select("#", ...), ... } end
    keep(fn())
  end)
  return res
end

local function addrs_of(list)
  local set = {}
  for _, a in ipairs(list) do set[a.family .. " " .. a.addr] = true end
  return set
end

-- waits in a copas thread (bounded) until pred() holds
local function await(pred, timeout, msg)
  local deadline = copas.gettime() + timeout
  while not pred() do
    if copas.gettime() > deadline then error(msg .. " within " .. timeout .. " s", 2) end
    copas.pause(0.001)
  end
end

describe("copas.resolver.resolve()", function()
  it("answers literal addresses at once, without the pool", function()
    -- outside any copas thread: a lookup on the pool would raise
    assert.same({ { family = "inet", addr = "127.0.0.1" } }, resolver.resolve("127.0.0.1"))
    assert.same({ { family = "inet6", addr = "::1" } }, resolver.resolve("::1"))
    assert.same({ { family = "inet6", addr = "::1" } }, resolver.resolve("::1", "inet6"))
    assert.is_true(resolver.isliteral("10.1.2.3"))
    assert.is_false(resolver.isliteral("example.test"))
  end)

  it("resolves a name from the hosts file on the pool", function()
    local res = in_copas(function() return resolver.resolve("localhost", "inet") end)
    assert.is_table(res[1])
    assert.is_true(addrs_of(res[1])["inet 127.0.0.1"])
    for _, a in ipairs(res[1]) do assert.equal("inet", a.family) end
  end)

  it("raises for bad input at the call", function()
    local long = ("a"):rep(63) .. "." .. ("b"):rep(63) .. "." .. ("c"):rep(63) .. "." .. ("d"):rep(64)
    assert.equal(256, #long)
    local cases = {
      { function() resolver.resolve(nil) end, "bad argument #1 to 'resolve' (string expected, got nil)" },
      { function() resolver.resolve(12) end, "bad argument #1 to 'resolve' (string expected, got number)" },
      { function() resolver.resolve(long) end, "bad argument #1 to 'resolve' (host name longer than 255 bytes)" },
      { function() resolver.resolve("a.test", "ipx") end,
        "bad argument #2 to 'resolve' (\"inet\", \"inet6\" or \"unspec\" expected, got ipx)" },
      { function() resolver.resolve("a.test", nil, -1) end,
        "bad argument #3 to 'resolve' (positive number of seconds expected)" },
      { function() resolver.setthreads(0) end,
        "bad argument #1 to 'setthreads' (integer from 1 to 1024 expected, got 0)" },
      { function() resolver.setthreads("8") end,
        "bad argument #1 to 'setthreads' (integer from 1 to 1024 expected, got string)" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert.is_false(ok)
      assert.equal(c[2], (err:gsub("^[^:]*:%d+: ", "")))
    end
    local ok, err = pcall(resolver.resolve, "localhost")
    assert.is_false(ok)
    assert.matches("copas.worker: 'resolve' must be called from inside a copas thread$", err)
  end)
end)

if INSIDE then
  describe("copas.resolver with a name server that answers after 1 s", function()
    local dns

    -- runs fn in a copas thread next to the responder; its results, packed.
    -- The responder stops once every query it got was answered.
    local function with_dns(fn, timeout)
      local res
      helpers.run(function()
        dns = dns_server.start(copas, socket, "127.0.0.1", 53, 1.0)
        res = { n = 0 }
        local function keep(...) res = { n = select("#", ...), ... } end
        keep(fn())
        await(function() return dns.answered() == dns.queries() end, 5, "queries left unanswered")
        dns.stop()
      end, timeout)
      return res
    end

    it("keeps an echo round trip under 50 ms while 50 lookups are pending", function()
      resolver.setthreads(50)
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      copas.addserver(server, copas.handler(function(skt)
        while true do
          local line = skt:receive("*l")
          if not line then return end
          skt:send(line .. "\n")
        end
      end))
      local results, resolved, rtts, pending_during = {}, 0, {}, {}
      with_dns(function()
        for i = 1, 50 do
          copas.addthread(function()
            results[i] = { resolver.resolve("slow" .. i .. ".copas.test") }
            resolved = resolved + 1
          end)
        end
        await(function() return dns.queries() >= 50 end, 5, "50 queries did not arrive")
        local client = copas.wrap(socket.tcp())
        assert(client:connect("127.0.0.1", port))
        for k = 1, 20 do
          local t0 = copas.gettime()
          client:send("ping " .. k .. "\n")
          assert.equal("ping " .. k, client:receive("*l"))
          rtts[k] = copas.gettime() - t0
          pending_during[k] = 50 - resolved
        end
        client:close()
        await(function() return resolved == 50 end, 10, "the lookups did not end")
        copas.removeserver(server)
      end, 20)
      for k = 1, 20 do
        assert.equal(50, pending_during[k])
        assert.is_true(rtts[k] < 0.05, ("round trip %d took %.3f s"):format(k, rtts[k]))
      end
      for i = 1, 50 do
        local set = addrs_of(assert(results[i][1], results[i][2]))
        assert.is_true(set["inet 127.0.0.1"], "no IPv4 address for slow" .. i)
        assert.is_true(set["inet6 ::1"], "no IPv6 address for slow" .. i)
      end
    end)

    it("returns only the family asked for", function()
      local res = with_dns(function() return resolver.resolve("four.copas.test", "inet") end)
      assert.same({ { family = "inet", addr = "127.0.0.1" } }, res[1])
      res = with_dns(function() return resolver.resolve("six.copas.test", "inet6") end)
      assert.same({ { family = "inet6", addr = "::1" } }, res[1])
    end)

    it("returns LuaSocket's message for a name that does not exist", function()
      local res = with_dns(function() return resolver.resolve("missing.copas.test") end)
      assert.same({ nil, "host or service not provided, or not known" }, { res[1], res[2] })
    end)

    it("returns nil, 'timeout' when the answer is later than the timeout", function()
      local t0, elapsed
      local res = with_dns(function()
        t0 = copas.gettime()
        local a, b = resolver.resolve("late.copas.test", nil, 0.2)
        elapsed = copas.gettime() - t0
        -- the lookup goes on in the background: with_dns waits for the
        -- answers, so no query is left unanswered when the server stops
        await(function() return dns.queries() >= 1 end, 5, "no query arrived")
        return a, b
      end)
      assert.same({ nil, "timeout" }, { res[1], res[2] })
      assert.is_true(elapsed >= 0.2 and elapsed < 0.9, ("timed out after %.3f s"):format(elapsed))
    end)
  end)
else
  -- the interpreter and busted script running this file
  local function runner()
    local i = -1
    while arg and arg[i - 1] do i = i - 1 end
    return arg and arg[i] or "lua", arg and arg[0] or "busted"
  end

  local function sh(cmd, quiet)
    local r = os.execute(quiet == false and cmd or cmd .. " >/dev/null 2>&1")
    return r == true or r == 0
  end

  local id = io.popen("id -u")
  local root = id and id:read("*l") == "0"
  if id then id:close() end

  local run_it = (root and sh("ip netns list")) and it or pending
  describe("copas.resolver with a name server that answers after 1 s", function()
    run_it("passes its specs inside a network namespace (needs root and ip netns)", function()
      math.randomseed(os.time() + math.floor(os.clock() * 1e6))
      local ns = ("copas-spec-%d"):format(math.random(1e6, 1e7))
      local dir = "/etc/netns/" .. ns
      local log = os.tmpname()
      finally(function()
        sh("ip netns del " .. ns)
        os.remove(dir .. "/resolv.conf")
        os.remove(dir)
        os.remove(log)
      end)
      assert(sh("ip netns add " .. ns), "cannot create network namespace " .. ns)
      assert(sh("mkdir -p " .. dir))
      local f = assert(io.open(dir .. "/resolv.conf", "w"))
      f:write("nameserver 127.0.0.1\noptions timeout:3 attempts:1\n")
      f:close()
      assert(sh(("ip netns exec %s ip link set lo up"):format(ns)))
      local lua, busted = runner()
      local this = debug.getinfo(1, "S").source:gsub("^@", "")
      local ok = sh(("ip netns exec %s env COPAS_SPEC_NETNS=1 %s %s -o utfTerminal %s > %s 2>&1")
        :format(ns, lua, busted, this, log), false)
      local out = assert(io.open(log)):read("*a")
      local s, fl, e = out:match("(%d+) successes? / (%d+) failures? / (%d+) errors?")
      assert(ok and s and tonumber(fl) == 0 and tonumber(e) == 0, out)
      assert.is_true(tonumber(s) >= 7, out)
    end)
  end)
end
