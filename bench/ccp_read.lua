-- wrk script: the CCP door, GET /AIMWebService/api/Accounts for a random seeded account
-- (user names user0 .. user<N-1> in safe BenchSafe, application Bench, source rule 127.0.0.1). Needs N.
dofile("bench/common.lua")
local n = tonumber(os.getenv("N"))

function request()
  return wrk.format("GET", "/AIMWebService/api/Accounts?AppID=Bench&Query=Safe%3DBenchSafe%3BUserName%3Duser" .. pick(n))
end
