
-- While FUNCTION LOAD runs the library, Redis lets it see only `redis`: the
-- standard libraries (string, table, math, bit, cmsgpack) exist only while a
-- function runs. So the sections below are the body of `build`, which the
-- first call of any function runs once; what it builds lives as long as
-- the library.
local function build()
