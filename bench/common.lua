-- Shared by every wrk script in bench/ (loaded with dofile from the repository root, where run.sh runs).
-- Gives each script:
--   pick(n)        a uniformly random index in 0 .. n-1
--   lines(path)    the lines of a file, as a table
--   done()         one machine-readable line on stdout:
--                  BENCH {"requests":..,"rps":..,"p50_us":..,"p99_us":..,"non2xx":..,"errors":..,"empty":..}
--                  non2xx counts statuses >= 400 (wrk's own count); errors = connect + read + write + timeout;
--                  empty counts 2xx answers a script's check() found wrong (e.g. an empty fetch list).
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  empty = 0
end

function pick(n)
  return math.random(n) - 1
end

function lines(path)
  local t = {}
  for line in io.lines(path) do
    t[#t + 1] = line
  end
  return t
end

-- A script that defines check(body) (true = a right answer) gets a response() that counts wrong ones.
function install_check(check)
  response = function(status, headers, body)
    if status < 300 and not check(body) then
      empty = empty + 1
    end
  end
end

function done(summary, latency, requests)
  local e = 0
  for _, t in ipairs(threads) do
    e = e + (t:get("empty") or 0)
  end
  local errs = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"rps":%.2f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"non2xx":%d,"errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"empty":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    errs.status, errs.connect + errs.read + errs.write + errs.timeout,
    errs.connect, errs.read, errs.write, errs.timeout, e))
end
