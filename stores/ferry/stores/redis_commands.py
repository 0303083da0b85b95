"""What the standalone and the cluster Redis stores write, and how: the key layout, the
conditional-write Lua script, and the commands built from rows.

Layout: one string key per (project, view, entity), ``<5-byte prefix><entity key bytes>``
(``ferry.stores.base.hashed_prefix``; ``project:view:`` before December 2026), holding the
encoded row; one hash ``project!watermarks`` mapping view -> µs.

Writes go through a Lua script that applies ``is_newer`` to each key and SETs with PXAT
(the view's TTL after max(now, event time)), so a batch is atomic per key, conditional, and
one round trip: a batch is cut into script calls of ``SCRIPT_KEYS`` keys (a script blocks
Redis while it runs; 1,000 keys take about a millisecond) sent in one pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ferry.stores.base import ViewTable, expiries_at_ms

SCRIPT_KEYS = 1_000

# KEYS: row keys. ARGV: for key i, ARGV[2i-1] = row, ARGV[2i] = expiry (ms since epoch, or
# "" for none). Bytes 2..17 of a row (Lua is 1-based) are the big-endian, sign-flipped
# (event, created) timestamps; they are compared as four unsigned 32-bit numbers, since Lua
# numbers are doubles and string "<" goes through strcoll (locale-dependent on binary data).
# Bytes 18..21 are the schema fingerprint. Returns how many rows were written.
CONDITIONAL_SET = """
local function newer(new, old)
  local n1, n2, n3, n4 = struct.unpack('>I4I4I4I4', string.sub(new, 2, 17))
  local o1, o2, o3, o4 = struct.unpack('>I4I4I4I4', string.sub(old, 2, 17))
  if n1 ~= o1 then return n1 > o1 end
  if n2 ~= o2 then return n2 > o2 end
  if n3 ~= o3 then return n3 > o3 end
  if n4 ~= o4 then return n4 > o4 end
  return string.sub(new, 18, 21) ~= string.sub(old, 18, 21)
end
local written = 0
for i, key in ipairs(KEYS) do
  local row = ARGV[2 * i - 1]
  local old = redis.call('GET', key)
  if (not old) or newer(row, old) then
    local expiry = ARGV[2 * i]
    if expiry == '' then
      redis.call('SET', key, row)
    else
      redis.call('SET', key, row, 'PXAT', expiry)
    end
    written = written + 1
  end
end
return written
"""


CONDITIONAL_SET_SHA = hashlib.sha1(CONDITIONAL_SET.encode()).hexdigest().encode()

# Compare-and-raise in one script so concurrent jobs never lower a watermark.
RAISE_WATERMARK = (
    b"local cur = redis.call('HGET', KEYS[1], ARGV[1]) "
    b"if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then "
    b"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 1"
)


def conditional_set(
    table: ViewTable, rows: Sequence[tuple[bytes, bytes]], now_ms: int
) -> tuple[bytes | int, ...]:
    """The EVALSHA of ``CONDITIONAL_SET`` storing these (entity key, row) pairs of one view
    (at most ``SCRIPT_KEYS``; in a cluster, all of one slot)."""
    prefix = table.key_prefix
    keys = [prefix + key for key, _ in rows]
    args: list[bytes | int] = [b""] * (2 * len(rows))
    args[0::2] = [row for _, row in rows]
    expiries = expiries_at_ms(table, args[0::2], now_ms)  # type: ignore[arg-type]
    if expiries is not None:
        args[1::2] = expiries
    return (b"EVALSHA", CONDITIONAL_SET_SHA, len(keys), *keys, *args)


def raise_watermark(project: str, view: str, micros: int) -> tuple[bytes | str | int, ...]:
    """The EVAL raising a view's watermark to ``micros`` (never lowering it)."""
    return (b"EVAL", RAISE_WATERMARK, 1, watermarks_key(project), view, str(micros))


def watermarks_key(project: str) -> bytes:
    """The hash of a project's watermarks. "!" cannot appear in a project or view name, so
    this never collides with a row key."""
    return f"{project}!watermarks".encode()
