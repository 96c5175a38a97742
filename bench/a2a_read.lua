-- wrk script: the PAM A2A door, GET /iso/pam/credential/{id} for a random seeded credential, as the
-- application Bench (OAuth bearer from POST /iso/oauth2/token). Needs TOKEN (the bearer) and IDS_FILE.
dofile("bench/common.lua")
local ids = lines(os.getenv("IDS_FILE"))
local headers = { ["Authorization"] = "Bearer " .. os.getenv("TOKEN") }

function request()
  return wrk.format("GET", "/iso/pam/credential/" .. ids[pick(#ids) + 1], headers)
end
