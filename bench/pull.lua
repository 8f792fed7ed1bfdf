-- wrk script: every connection walks a list of registry requests, one per
-- line "ACCEPT PATH" (ACCEPT "-" sends no Accept header), round robin, each
-- thread starting at its own offset. At the end prints one RESULT line with
-- bytes, duration, latency percentiles and error counts for bench/run.sh.
--
--   wrk -t2 -c16 -d10s --timeout 30s -s bench/pull.lua http://HOST:PORT -- LIST

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local reqs = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do
    local accept, path = line:match("^(%S+)%s+(%S+)$")
    if path then
      local headers = {}
      if accept ~= "-" then
        headers["Accept"] = accept
      end
      table.insert(reqs, wrk.format("GET", path, headers))
    end
  end
  if #reqs == 0 then
    error("no requests in " .. tostring(args[1]))
  end
  counter = (tid or 0) * math.floor(#reqs / 2 + 1)
end

function request()
  counter = counter + 1
  return reqs[(counter % #reqs) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%.0f bytes=%.0f duration_us=%.0f p50_us=%.0f p99_us=%.0f " ..
      "err_connect=%.0f err_read=%.0f err_write=%.0f err_status=%.0f err_timeout=%.0f\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
