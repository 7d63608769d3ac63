-- wrk script: each connection logs in once with the password grant, then renews its own
-- session over and over with the refresh token of the previous answer. Run it with as
-- many threads as connections (-t N -c N), so each connection's requests are sequential.
-- Arguments: username password.

local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local username, password, refresh
local threads = 0

-- Each connection logs in from an address of its own (Tessera trusts X-Forwarded-For
-- from 127.0.0.1 in bench/run): sixteen logins at once from one address for one account
-- would be throttled as a guessing attempt.
function setup(thread)
  threads = threads + 1
  thread:set("address", "10.2.0." .. threads)
end

function init(args)
  username, password = args[1], args[2]
end

function request()
  if refresh == nil then
    form["X-Forwarded-For"] = address
    return wrk.format("POST", "/oauth/token", form,
      "grant_type=password&username=" .. username .. "&password=" .. password)
  end
  return wrk.format("POST", "/oauth/token", form,
    "grant_type=refresh_token&refresh_token=" .. refresh)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    refresh = token
  elseif status ~= 200 then
    -- Log in again on any refusal, so one bad answer does not stop the chain.
    refresh = nil
  end
end
