-- The caps on one script call's work, so that no accepted argument makes a script block Redis
-- for long (about 20 ms at most, measured by bench/bench_caps.py). Batch scripts refuse a call
-- over CAPS.BATCH jobs or over CAPS.ARG_BYTES of payloads or results (beyond its first job), and
-- stop reading stored records once CAPS.READ_BYTES are read (lib/read_some): the client sends
-- the rest in the next call. Mirrored by redisq/_core/calls.py; a test checks parity.
local CAPS = {
  BATCH = 1000,
  ARG_BYTES = 1048576,
  READ_BYTES = 1048576,
  -- Records read per HMGET by lib/read_some: a call reads at most this many records past its
  -- budget, however large they are.
  READ_GROUP = 4,
  -- Finished records one call trims (lib/trim_retention), whatever the retention's trim batch:
  -- a call that finishes up to BATCH jobs still trims more than it adds, so the retention
  -- limits hold.
  TRIM = 1100,
  -- Bytes of finished records one call trims (beyond the first): freeing takes time as well,
  -- and it is more than a call adds (READ_BYTES + ARG_BYTES), so the sets still converge.
  TRIM_BYTES = 4194304,
  -- Longest error text nack stores (the client cuts longer ones with a marker).
  ERROR_BYTES = 16384,
}
