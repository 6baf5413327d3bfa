-- luacheck configuration for the scripts in lua/ (STYLE L9). Helpers in lua/lib/ are inlined
-- into each script by the loader, so a script is checked together with what it includes:
-- `make lint` runs luacheck on the inlined sources (tools/lua_sources.py).
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "unpack"}
max_line_length = 100
