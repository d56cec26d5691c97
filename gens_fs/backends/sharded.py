"""Listing a large prefix of an object store in parallel, split by key prefix.

One page chain over a stage of 10^6 keys is 1,000 ListObjectsV2 pages one after the other
(100 s of waiting at 100 ms a round trip). An object store lists keys in code point order
and takes a ``Prefix`` and a ``StartAfter``, so any key range can be listed without the
pages before it. :func:`list_prefix` asks for one page of the whole prefix: a prefix that
fits in a page costs that one request, as a page chain would. A page that comes back full
(truncated) splits the rest of its range into shards, all listed at once, each split again
when its own first page is full:

* where the page's first and last keys differ, the rest of that character's keys and the
  next characters' go in groups estimated to fill most of a page each (:data:`GROUP_FILL`),
  cut wherever the character after changes. The page shows how many keys a character
  holds: its keys over the characters they span there, counting only characters the keys
  use (base36 gen_ids use no upper case) and the parts of the first and last characters
  the page reached (from the character after). The last group goes on to the end;
* above that depth, one shard per next character of the run ("split a prefix further by
  its next character") up to the last one the keys use: ``gens/essay/0...`` is done, so
  ``gens/essay/1``, ``gens/essay/2``... and the characters after (the rest of the run,
  ``A-Z`` after the digits, anything else) in one more shard, which its own first page
  splits in turn when it holds more than a page.

Complete for any keys, not only gen_ids: the shards of a split cover the rest of the range
with no gap and no overlap (a key with a character outside the gen_id alphabet is in the
shard that covers the range it sorts into), so a stray key is listed like any other, once.

Requests: the pages of the keys plus a few partly filled or empty ones per split: for
random base36 gen_ids 1.2x to 1.35x the pages of one chain (10^5 keys: 129 to 135 listings
instead of 100 pages; 10^6: 1,297 instead of 1,000), in five round trips or fewer instead
of one per page; random hex ids (UUIDs) 1.2x to 1.75x (``benchmarks/profile_sharding.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from gens_fs.backends.base import PageRetry
from gens_fs.layout import GEN_ID_CHARS

T = TypeVar("T")

# The highest code point: ``prefix + _LAST_CHAR`` sorts after almost every key that starts
# with ``prefix`` (all but those holding U+10FFFF right there).
_LAST_CHAR: Final = "\U0010ffff"
# Listings in flight at once (s3fs's pool holds 128 connections).
LISTINGS_IN_FLIGHT: Final = 64
# How much of a page a group of keys is estimated to fill: near full, so that few listings
# come back partly filled, with room for the estimate's error (a group that holds more than
# a page costs a listing more: its first page splits like any other).
GROUP_FILL: Final = 0.9
# The most groups one split makes: a bound on the requests a wrong estimate can cost (keys
# far denser than the page showed are split again, by their own first pages).
MAX_GROUPS: Final = LISTINGS_IN_FLIGHT


@dataclass(frozen=True)
class Shard:
    """The keys that start with ``prefix``, from ``start`` (when given) and before
    ``until`` (when given). Asked for with ``Prefix=prefix`` and ``StartAfter=``
    :attr:`start_after`; what the answer holds outside ``[start, until)`` is another
    shard's. ``after``: where to go on from, once a page was all before ``start``."""

    prefix: str
    start: str | None = None
    until: str | None = None
    after: str | None = None

    @property
    def start_after(self) -> str | None:
        """The ``StartAfter`` of the shard's next request."""
        if self.after is not None:
            return self.after
        return None if self.start is None else key_before(self.start)

    def holds(self, key: str) -> bool:
        return (self.start is None or key >= self.start) and (
            self.until is None or key < self.until
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One listing page: ``(key, value)`` pairs in key order, and whether more follow."""

    entries: list[tuple[str, T]]
    truncated: bool


FetchPage = Callable[[Shard], Awaitable[Page[T]]]
"""One request: the first page of a shard (``Prefix=shard.prefix``,
``StartAfter=shard.start_after``)."""


async def list_prefix(
    fetch: FetchPage[T],
    prefix: str,
    keep: Callable[[list[tuple[str, T]]], None],
    *,
    alphabet: str = GEN_ID_CHARS,
    in_flight: int = LISTINGS_IN_FLIGHT,
    retry_page: PageRetry | None = None,
) -> None:
    """Every key that starts with ``prefix``, with its value, listed by ``fetch`` in
    shards (see the module docstring), each page's keys passed to ``keep`` as it arrives
    (in key order within a page; the pages in no order, none overlapping another): the
    caller keeps them as compactly as it likes. At most ``in_flight`` requests at once,
    each through ``retry_page`` when given (a page that fails is asked for again on its
    own). The first failure cancels the listings still running and is raised."""
    limit = asyncio.Semaphore(in_flight)

    async def walk(shard: Shard) -> None:
        async with limit:
            page = await (fetch(shard) if retry_page is None else retry_page(lambda: fetch(shard)))
        kept = [entry for entry in page.entries if shard.holds(entry[0])]
        if kept:
            keep(kept)
        if not page.truncated or not page.entries:
            return
        last = page.entries[-1][0]
        if shard.until is not None and last >= shard.until:
            return
        if not kept:  # a page of keys just before ``start``: go on after them
            await walk(dataclasses.replace(shard, after=last))
            return
        keys = [key for key, _ in kept]
        await _all(walk(s) for s in split(shard, keys, alphabet, len(page.entries)))

    await walk(Shard(prefix))


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run every coroutine; on the first failure cancel the others, then raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def split(
    shard: Shard, keys: list[str], alphabet: str = GEN_ID_CHARS, page_size: int | None = None
) -> list[Shard]:
    """The shards that together hold what ``shard`` holds after ``keys[-1]``, given that a
    full page of it (``page_size`` keys; ``len(keys)`` when not given) held ``keys`` (in
    order) of the shard's range. Pure."""
    first, last = keys[0], keys[-1]
    if first == last:  # nothing tells where the keys vary: go on from there
        return [Shard(shard.prefix, until=shard.until, after=last)]
    # Where they part (``first`` sorts first, so it is the shorter if one starts the other).
    pairs = enumerate(zip(first, last, strict=False))
    depth = next((i for i, (a, b) in pairs if a != b), len(first))
    # The characters of ``alphabet`` the keys use, from the shard's prefix to one past
    # where they part (where a page of random ids shows them all). Only these start a
    # shard: a ``StartAfter`` just below any other could be a control character.
    window = {c for key in keys for c in key[len(shard.prefix) : depth + 2]}
    used = "".join(c for c in alphabet if c in window)
    shards = _dense_level(shard, keys, depth, used, page_size or len(keys))
    for level in range(depth - 1, len(shard.prefix) - 1, -1):
        shards += _next_characters(shard, last, level, alphabet, used)
    return shards


def _dense_level(
    shard: Shard, keys: list[str], depth: int, used: str, page_size: int
) -> list[Shard]:
    """After ``last`` (``keys[-1]``), under ``last[:depth]``: the rest of the keys in
    groups estimated to fill :data:`GROUP_FILL` of a page each, the last one on to the end
    of ``last[:depth]``'s keys. Where a character's keys are half a group or more, each
    character is a group of its own, listed by its prefix (so its listing stops at its last
    key); otherwise a group may end inside a character's keys, where the next character
    changes. The estimate: the page's keys over the characters they span at ``depth`` (the
    first and last only partly), shared evenly among the characters the keys use (``used``)
    after it; a character no key uses (upper case among base36 gen_ids) counts for nothing."""
    first, last = keys[0], keys[-1]
    head, char = last[:depth], last[depth]
    if not used:  # no character to cut at: go on from ``last``
        return [Shard(head, until=shard.until, after=last)]
    # How many characters' keys the page spanned at ``depth``: those it holds, less the part
    # of the first before ``first`` and the part of the last after ``last`` (as the
    # character after ``depth`` tells).
    seen = len({key[depth] for key in keys if len(key) > depth})
    spanned = seen - 1 + _part_before(last, depth, used) - _part_before(first, depth, used)
    per_char = len(keys) / max(spanned, 1 / len(used))
    group = GROUP_FILL * page_size
    if 2 * per_char >= group:
        units, step = [head + c for c in used if c > char], 1
    else:  # by the character after: ``char``'s own first, then those of the next ones
        units = [head + char + d for d in used if len(last) > depth + 1 and d > last[depth + 1]]
        units += [head + c + d for c in used if c > char for d in used]
        step = max(1, int(group * len(used) / per_char))
    starts = _before_until(units[step - 1 :: step][:MAX_GROUPS], shard.until)
    if starts and starts[0] == _successor(head + char):  # the rest of ``char``'s keys
        rest = Shard(head + char, after=last)
    else:
        rest = Shard(head, until=starts[0] if starts else shard.until, after=last)
    return [rest, *_pieces(head, starts, shard.until)]


def _part_before(key: str, depth: int, used: str) -> float:
    """About what share of the keys that start with ``key[: depth + 1]`` sort before
    ``key``, from the character after (the characters used taken as equally likely)."""
    if len(key) <= depth + 1:
        return 0.0
    return bisect_left(used, key[depth + 1]) / len(used)


def _next_characters(shard: Shard, last: str, level: int, alphabet: str, used: str) -> list[Shard]:
    """Under ``last[:level]``, what sorts after the keys starting with ``last[:level + 1]``:
    one shard per next character of the same run (the digits, the letters of one case) up
    to the last one the keys use, and one for all after it (the characters of the run no
    key uses, those after the run: the shard's first page splits it if it holds more)."""
    head = last[:level]
    above, after_run = _run_above(alphabet, last[level])
    if after_run is None:  # last[level] is U+10FFFF: nothing sorts after it
        return []
    end = max((i + 1 for i, c in enumerate(above) if c in used), default=0)
    above, after_run = above[:end], above[end:][:1] or after_run
    starts = [head + c for c in above] + [head + after_run]
    return _pieces(head, _before_until(starts, shard.until), shard.until)


def _run_above(alphabet: str, char: str) -> tuple[str, str | None]:
    """The characters after ``char`` in its run of consecutive code points in ``alphabet``
    (``0-9``, ``A-Z``, ``a-z``...), and the first code point after that run (after
    ``char`` itself when it is not in ``alphabet``; ``None`` after U+10FFFF)."""
    index = alphabet.find(char)
    if index < 0:
        return "", _next_char(char)
    end = index + 1
    while end < len(alphabet) and ord(alphabet[end]) == ord(alphabet[end - 1]) + 1:
        end += 1
    return alphabet[index + 1 : end], _next_char(alphabet[end - 1])


def _before_until(starts: list[str], until: str | None) -> list[str]:
    return [s for s in starts if until is None or s < until]


def _pieces(head: str, starts: list[str], until: str | None) -> list[Shard]:
    """A shard from each start to the next (the last one to the end of ``head``'s keys, or
    ``until``); one that is exactly a prefix's keys is asked for by that prefix."""
    shards: list[Shard] = []
    for start, end in zip(starts, [*starts[1:], until], strict=False):
        if end is not None and end == _successor(start):
            shards.append(Shard(start))
        else:
            shards.append(Shard(head, start=start, until=end))
    return shards


def _next_char(char: str) -> str | None:
    """The code point after ``char`` that can be in a key (surrogates cannot)."""
    code = ord(char) + 1
    if code > 0x10FFFF:
        return None
    return chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)


def _successor(key: str) -> str | None:
    """The first string after every string that starts with ``key`` (``None``: there is
    none, ``key`` is all U+10FFFF)."""
    while key and key[-1] == _LAST_CHAR:
        key = key[:-1]
    following = _next_char(key[-1]) if key else None
    return None if following is None else key[:-1] + following


def key_before(key: str) -> str:
    """A ``StartAfter`` for the keys from ``key`` on: below ``key`` and above almost every
    key before it (the keys between start with it and hold U+10FFFF; the shard that asked
    leaves them to the shard they belong to)."""
    code = ord(key[-1]) - 1
    if code < 0:
        return key[:-1]
    if 0xD800 <= code <= 0xDFFF:
        code = 0xD7FF
    return key[:-1] + chr(code) + _LAST_CHAR
