-- wrk script for bench/run: a light, steady probe of a protected route, to read its
-- latency while something else loads the server. Run it with one connection
-- (-t 1 -c 1) and the token in -H; each request waits PAUSE milliseconds after the
-- previous answer, so the probe itself hardly loads the server.
-- Arguments: [pause in milliseconds, default 2].

local pause

function init(args)
  pause = tonumber(args[1] or "2")
end

function delay()
  return pause
end
