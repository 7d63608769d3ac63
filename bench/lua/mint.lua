-- wrk script for bench/run: mints distinct valid access tokens. Run it with one
-- connection per thread (-t N -c N): each logs in once with the password grant, from a
-- random client address (the benchmark's server trusts X-Forwarded-For from loopback, so
-- the per-client login throttle leaves the threads alone), then renews its session over
-- and over, keeping every answer's access token. Once it holds QUOTA tokens it writes
-- them, one a line, to PREFIX.<thread number>, and then sends nothing more but cheap
-- GET /healthz requests until the script stops wrk.
-- Arguments: username password prefix quota.

local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local threads = 0
local username, password, prefix, quota, refresh, address
local tokens = {}
local written = false

function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end

function init(args)
  username, password, prefix, quota = args[1], args[2], args[3], tonumber(args[4])
  math.randomseed(os.time() + number * 7919)
  address = string.format("10.%d.%d.%d",
    math.random(0, 255), math.random(0, 255), math.random(1, 254))
end

function request()
  if written then
    return wrk.format("GET", "/healthz")
  end
  if refresh == nil then
    return wrk.format("POST", "/oauth/token",
      { ["Content-Type"] = form["Content-Type"], ["X-Forwarded-For"] = address },
      "grant_type=password&username=" .. username .. "&password=" .. password)
  end
  return wrk.format("POST", "/oauth/token", form,
    "grant_type=refresh_token&refresh_token=" .. refresh)
end

function response(status, headers, body)
  if written then
    return
  end
  local access = body:match('"access_token"%s*:%s*"([^"]+)"')
  local successor = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if status ~= 200 or access == nil or successor == nil then
    -- Log in again on any refusal, so one bad answer does not stop the chain.
    refresh = nil
    return
  end
  refresh = successor
  tokens[#tokens + 1] = access
  if #tokens >= quota then
    local file = assert(io.open(prefix .. "." .. number, "w"))
    file:write(table.concat(tokens, "\n"), "\n")
    file:close()
    written = true
    tokens = {}
  end
end
