-- wrk script: the CCP door, GET /AIMWebService/api/Accounts for a random seeded account
-- (usernames user0 .. user<N-1> in safe BenchSafe, application Bench). Needs N in the environment.
local n = tonumber(os.getenv("N"))

function init(args)
  math.randomseed(os.time())
end

function request()
  local i = math.random(n) - 1
  return wrk.format("GET", "/AIMWebService/api/Accounts?AppID=Bench&Query=Safe%3DBenchSafe%3BUserName%3Duser" .. i)
end
