-- wrk script: read the secret of a random credential (GET /api/v1/credentials/{id}/secret).
-- Needs TOKEN and IDS_FILE (one credential id per line) in the environment.
local ids = {}
local token = os.getenv("TOKEN")

function init(args)
  for line in io.lines(os.getenv("IDS_FILE")) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time())
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/credentials/" .. id .. "/secret", { ["X-Vault-Token"] = token })
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d errors=%d\n", summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
