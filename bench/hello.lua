-- wrk script: the ceiling, GET /hello on bench/hello (a bare axum JSON hello-world).
dofile("bench/common.lua")

function request()
  return wrk.format("GET", "/hello")
end
