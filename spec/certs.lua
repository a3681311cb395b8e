-- Test certificates, made at test time with the `openssl` command line tool.
--
--   local certs = require "spec.certs"
--   local c = certs.generate()        -- once per spec file (setup)
--   ... c.server_cert, c.server_key, c.ca_cert ...
--   certs.cleanup(c)                  -- teardown: removes every file made
--
-- Everything lives in a fresh temporary directory (`mktemp -d`). Keys are
-- EC P-256 (fast to make). All leaf certificates are signed by one test CA
-- and are valid for two days.
--
-- Paths in the returned table:
--   dir                       the temporary directory
--   ca_cert, ca_key           the test CA
--   server_cert, server_key   CN "copas test server", SAN IP:127.0.0.1, IP:::1
--   sni_names                 { "alpha.copas.test", "beta.copas.test" }
--   alpha_cert, alpha_key     SAN DNS:alpha.copas.test (and the IPs above)
--   beta_cert, beta_key       SAN DNS:beta.copas.test (and the IPs above)
--   client_cert, client_key   CN "copas test client", for mutual authentication
--   other_ca_cert             a second CA that signed none of the above
--
-- The .test top level domain is reserved (RFC 6761): the names are only
-- ever sent as SNI, never resolved.

local M = {}

M.sni_names = { "alpha.copas.test", "beta.copas.test" }

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- runs a shell command with its output hidden; raises with the command and
-- its output when it fails
local function run(cmd)
  local f = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"exit:$?\""))
  local out = f:read("*a")
  f:close()
  local code = out:match("exit:(%d+)%s*$")
  if code ~= "0" then
    error(("certs: command failed (%s):\n%s\n%s"):format(tostring(code), cmd, out), 3)
  end
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function has_openssl()
  local f = io.popen("openssl version 2>/dev/null")
  if not f then return false end
  local out = f:read("*a") or ""
  f:close()
  return out:match("SSL") ~= nil
end

--- true when the `openssl` command is available.
M.available = has_openssl

local EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

-- makes a key and a certificate signed by the CA in `c`; `ext` holds the
-- extension lines for the certificate
local function leaf(c, name, subject, ext, serial)
  local key = c.dir .. "/" .. name .. ".key"
  local csr = c.dir .. "/" .. name .. ".csr"
  local cert = c.dir .. "/" .. name .. ".pem"
  local extfile = c.dir .. "/" .. name .. ".ext"
  write(extfile, ext)
  run(("openssl req -new %s -keyout %s -out %s -subj %s"):format(
    EC, quote(key), quote(csr), quote(subject)))
  run(("openssl x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days 2 -sha256 -out %s -extfile %s"):format(
    quote(csr), quote(c.ca_cert), quote(c.ca_key), serial, quote(cert), quote(extfile)))
  os.remove(csr)
  os.remove(extfile)
  c._files[#c._files + 1] = key
  c._files[#c._files + 1] = cert
  return cert, key
end

local function ca(c, name, subject)
  local key = c.dir .. "/" .. name .. ".key"
  local cert = c.dir .. "/" .. name .. ".pem"
  run(("openssl req -x509 %s -keyout %s -out %s -days 2 -sha256 -subj %s"
    .. " -addext basicConstraints=critical,CA:TRUE"
    .. " -addext keyUsage=critical,keyCertSign,cRLSign"):format(
    EC, quote(key), quote(cert), quote(subject)))
  c._files[#c._files + 1] = key
  c._files[#c._files + 1] = cert
  return cert, key
end

local SERVER_EXT = "basicConstraints=CA:FALSE\n"
  .. "keyUsage=critical,digitalSignature,keyEncipherment\n"
  .. "extendedKeyUsage=serverAuth\n"

--- Makes the CA and all certificates in a new temporary directory.
-- @return table of paths (see the top of this file)
-- Raises "certs: ..." when a command fails.
function M.generate()
  local f = assert(io.popen("mktemp -d 2>/dev/null || mktemp -d -t copas-certs"))
  local dir = f:read("*l")
  f:close()
  assert(dir and dir ~= "", "certs: mktemp -d failed")
  local c = { dir = dir, _files = {}, sni_names = M.sni_names }
  local ok, err = pcall(function()
    c.ca_cert, c.ca_key = ca(c, "ca", "/CN=copas test CA")
    c.other_ca_cert, c.other_ca_key = ca(c, "otherca", "/CN=copas other CA")
    local ips = "IP:127.0.0.1,IP:::1"
    c.server_cert, c.server_key = leaf(c, "server", "/CN=copas test server",
      SERVER_EXT .. "subjectAltName=" .. ips .. "\n", 2)
    c.alpha_cert, c.alpha_key = leaf(c, "alpha", "/CN=" .. M.sni_names[1],
      SERVER_EXT .. "subjectAltName=DNS:" .. M.sni_names[1] .. "," .. ips .. "\n", 3)
    c.beta_cert, c.beta_key = leaf(c, "beta", "/CN=" .. M.sni_names[2],
      SERVER_EXT .. "subjectAltName=DNS:" .. M.sni_names[2] .. "," .. ips .. "\n", 4)
    c.client_cert, c.client_key = leaf(c, "client", "/CN=copas test client",
      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
      .. "extendedKeyUsage=clientAuth\n", 5)
  end)
  if not ok then
    M.cleanup(c)
    error(err, 2)
  end
  return c
end

--- Removes every file `generate` made and the directory.
-- @return true | nil, "directory not removed: <dir>"
function M.cleanup(c)
  if not c or not c.dir then return true end
  for _, path in ipairs(c._files) do os.remove(path) end
  -- files a failed command may have left behind
  for _, name in ipairs { "ca", "otherca", "server", "alpha", "beta", "client" } do
    for _, ext in ipairs { ".key", ".pem", ".csr", ".ext" } do
      os.remove(c.dir .. "/" .. name .. ext)
    end
  end
  local ok = os.remove(c.dir)
  c._files = {}
  if not ok then return nil, "directory not removed: " .. c.dir end
  c.dir = nil
  return true
end

--- LuaSec server parameters for `cert`/`key` of `c` (default: the IP
-- server certificate); `extra` fields are copied over them.
function M.server_params(c, which, extra)
  which = which or "server"
  local p = {
    mode = "server",
    protocol = "any",
    key = c[which .. "_key"],
    certificate = c[which .. "_cert"],
    cafile = c.ca_cert,
    verify = "none",
    options = { "all" },
  }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

--- LuaSec client parameters that verify the server against the test CA;
-- `extra` fields are copied over them.
function M.client_params(c, extra)
  local p = {
    mode = "client",
    protocol = "any",
    cafile = c.ca_cert,
    verify = "peer",
    options = { "all" },
  }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

return M
