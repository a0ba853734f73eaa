-- wrk script for bench/: GETs as a browser asks, or form POSTs that each spend a fresh token on a fresh address.
--
--   wrk ... URL -- get
--   wrk ... URL -- post TOKENS_FILE THREADS TAG
--   wrk ... URL -- store TAG            (bench/hello.py's POST /: an address, no token)
--
-- Each POST also names its own client address in X-Forwarded-For, read only when the app trusts a proxy hop.
-- Tokens are single-use, so each thread takes every THREADS-th line of TOKENS_FILE (one token a line,
-- fetched beforehand by GETs of the form) and never repeats one. A thread that runs out stops and says so
-- ("exhausted"), because its later requests would all be refused replays and flatter nobody.
-- done() prints one line, "WRK_RESULT {json}", that bench/common.py reads; the rest of wrk's output is kept
-- for people.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local tokens = {}
local used = 0
local mode = "get"
local tag = "x"

local function load_tokens(path, every)
  local n = 0
  for line in io.lines(path) do
    if n % every == id and line ~= "" then
      table.insert(tokens, line)
    end
    n = n + 1
  end
end

function init(args)
  mode = args[1] or "get"
  ok, limited, invalid, other, exhausted = 0, 0, 0, 0, 0
  if mode == "post" then
    load_tokens(args[2], tonumber(args[3]))
    tag = args[4] or tag
  elseif mode == "store" then
    tag = args[2] or tag
  else
    response = nil  -- wrk then skips parsing headers and bodies
  end
end

-- What a browser sends for an iframe document, so content negotiation costs what it costs for visitors.
local get_request = nil

function request()
  if mode == "store" then
    used = used + 1
    return wrk.format("POST", nil, {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Accept"] = "application/json",
    }, "email=" .. tag .. "-" .. id .. "-" .. used .. "%40example.com")
  end
  if mode ~= "post" then
    get_request = get_request or wrk.format("GET", nil, {
      ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    })
    return get_request
  end
  used = used + 1
  local token = tokens[used]
  if token == nil then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET")
  end
  local body = "token=" .. token .. "&email=" .. tag .. "-" .. id .. "-" .. used .. "%40example.com"
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
    -- one visitor each, as the platform's router reports them (the app trusts one hop in the suite)
    ["X-Forwarded-For"] = string.format("10.%d.%d.%d", id % 256, math.floor(used / 256) % 256, used % 256),
  }, body)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 429 then
    limited = limited + 1
  elseif status == 422 then
    invalid = invalid + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local totals = { ok = 0, limited = 0, invalid = 0, other = 0, exhausted = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}, ' ..
    '"ok": %d, "limited": %d, "invalid": %d, "other": %d, "exhausted_threads": %d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    totals.ok, totals.limited, totals.invalid, totals.other, totals.exhausted))
end
