-- wrk script: the native door, GET /api/v1/credentials/{id}/secret for a random seeded credential.
-- Needs TOKEN (X-Vault-Token) and IDS_FILE (one credential id per line) in the environment.
dofile("bench/common.lua")
local token = os.getenv("TOKEN")
local ids = lines(os.getenv("IDS_FILE"))

function request()
  return wrk.format("GET", "/api/v1/credentials/" .. ids[pick(#ids) + 1] .. "/secret", { ["X-Vault-Token"] = token })
end
