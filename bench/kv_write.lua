-- wrk script: a Vault KV v2 write, POST /v1/secret/data/bench-<i> {"data": {"password": ...}} for a
-- random i in 0 .. N-1 (a new version of a seeded secret). Same script for credvault and OpenBao.
-- Needs N and TOKEN (X-Vault-Token).
dofile("bench/common.lua")
local n = tonumber(os.getenv("N"))
local headers = { ["X-Vault-Token"] = os.getenv("TOKEN"), ["Content-Type"] = "application/json" }

function request()
  local i = pick(n)
  return wrk.format("POST", "/v1/secret/data/bench-" .. i, headers,
    '{"data":{"password":"w-' .. i .. '-' .. math.random(1000000000) .. '"}}')
end
