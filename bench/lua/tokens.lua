-- wrk script for bench/run: every request carries another valid access token, taken in
-- turn from a file of tokens (one a line), each thread starting at its own place.
-- Arguments: token-file [path, default /auth/verify].

local threads = 0
local tokens, path, index

function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  path = args[2] or "/auth/verify"
  index = (number * 7919) % #tokens + 1
end

function request()
  local token = tokens[index]
  index = index % #tokens + 1
  return wrk.format("GET", path, { Authorization = "Bearer " .. token })
end
