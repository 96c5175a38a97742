-- wrk script: a Vault KV v2 read, GET /v1/secret/data/bench-<i> for a random i in 0 .. N-1.
-- The same script drives credvault's /v1 door and OpenBao. Needs N and TOKEN (X-Vault-Token).
dofile("bench/common.lua")
local n = tonumber(os.getenv("N"))
local headers = { ["X-Vault-Token"] = os.getenv("TOKEN") }

function request()
  return wrk.format("GET", "/v1/secret/data/bench-" .. pick(n), headers)
end
