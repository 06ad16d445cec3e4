-- wrk script: each request redeems a different refresh token (tokens rotate, so a
-- token can be used once). Tokens come from $TOKENS; thread i takes every n-th.
-- With PACE_MS set, each connection waits that long between requests (a fixed
-- request rate of about connections * 1000 / PACE_MS).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("TOKENS"), "r"))
  tokens = {}
  local i = 0
  local n = tonumber(os.getenv("THREADS"))
  for line in f:lines() do
    if i % n == id then table.insert(tokens, line) end
    i = i + 1
  end
  f:close()
  next_token = 1
  non200 = 0
  exhausted = 0
  pace = tonumber(os.getenv("PACE_MS") or "0")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
end

function request()
  local t = tokens[next_token]
  if t == nil then
    exhausted = exhausted + 1
    t = "exhausted"
  end
  next_token = next_token + 1
  return wrk.format(nil, "/token", nil, "grant_type=refresh_token&refresh_token=" .. t)
end

function delay()
  return pace
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad, ex = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    ex = ex + t:get("exhausted")
  end
  io.write(string.format("RESULT requests=%d non200=%d exhausted=%d rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, bad, ex, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
