-- wrk script: password-grant logins, each from a random client address (the server is
-- started with --trusted-proxies 127.0.0.1, so it believes X-Forwarded-For) so that the
-- per-client throttle does not cap the measurement of hashing throughput.
-- Arguments: username password.

local username, password

function init(args)
  username, password = args[1], args[2]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local address = string.format("10.%d.%d.%d",
    math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", "/oauth/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = address,
  }, "grant_type=password&username=" .. username .. "&password=" .. password)
end
