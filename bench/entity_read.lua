-- wrk script: the entity door, public form: GET /api/public/v1/credentials/for/ent-<i> for a random
-- i in 0 .. N-1 (an entity not set answers 404 in this form). Needs N and TOKEN (sent as an API key,
-- Authorization: Bearer).
dofile("bench/common.lua")
local n = tonumber(os.getenv("N"))
local headers = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN") }

function request()
  return wrk.format("GET", "/api/public/v1/credentials/for/ent-" .. pick(n), headers)
end
