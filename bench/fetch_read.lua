-- wrk script: fetch-credentials, fetch one: GET /api/fetch-credentials?identifier=cred-<i> for a random
-- i in 0 .. N-1 (credentials imported by bench/gen.py with the name prefix cred-). Needs N and TOKEN.
-- The door answers [] (200) when nothing resolves; such answers are counted as "empty".
dofile("bench/common.lua")
local n = tonumber(os.getenv("N"))
local headers = { ["X-Vault-Token"] = os.getenv("TOKEN") }

install_check(function(body) return body ~= "[]" end)

function request()
  return wrk.format("GET", "/api/fetch-credentials?identifier=cred-" .. pick(n), headers)
end
