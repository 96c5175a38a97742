-- wrk script: a Vault KV v2 LIST of one folder holding 10 keys, GET /v1/secret/metadata/list10/?list=true
-- (the mount also holds the N seeded secrets bench-<i>: the row shows whether a listing costs what it
-- returns or what the mount holds). The same script drives credvault's /v1 door and OpenBao.
dofile("bench/common.lua")
local headers = { ["X-Vault-Token"] = os.getenv("TOKEN") }

function request()
  return wrk.format("GET", "/v1/secret/metadata/list10/?list=true", headers)
end
