"""The sandbox's tables: records by key, indexed so that a page of any list is a slice.

A list is a filter (exact values of some fields, as django-filter's) in an order. For
each set of filter fields it is asked about, a :class:`Table` groups its records by
those fields' values (a bucket), and keeps each bucket sorted in each order asked of
it, so that a page is ``O(log n)`` however long the list, and a lookup by a filtered
value is ``O(1)``. Indexes are built on first use and kept up to date by every write:
a record's filtered, ordered or searched fields change only through
:meth:`Table.change` (other fields may be changed in place).

The orders are those of the handlers before the indexes (kept in the tests as the
reference): an :class:`Order` on a field puts the records that have it first, sorted
by the field's text (case-folded), then ``created_at``, then insertion; then those
without it, in insertion order. ``NEWEST`` is ``-created_at``, DRF's default here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from sortedcontainers import SortedKeyList

Record = dict[str, Any]

#: A bucket this small is sorted when a page of it is asked for, not kept sorted
#: (one per e-mail address would otherwise cost two sorted lists each).
SMALL = 64
#: How many scanned lists (searches, per-user visibility) a table remembers.
SCAN_CACHE = 16


@dataclass(frozen=True)
class Order:
    """``field`` ascending (or descending), records without it last; ``None``: insertion."""

    field: str | None = None
    desc: bool = False


INSERTION = Order()
NEWEST = Order("created_at", desc=True)


class _Sorted:
    """One bucket in one order, kept sorted: those with the field, then those without."""

    def __init__(self, table: Table, order: Order, records: Iterator[Record]):
        seq = table.seq
        name = order.field
        self.order = order
        self.absent = SortedKeyList(key=lambda r: seq[r["key"]])
        if name is None:
            self.present = SortedKeyList()
            self.absent.update(records)
            return
        sign = -1 if order.desc else 1  # ties keep insertion order either way

        def key(r: Record) -> tuple[str, Any, int]:
            return (str(r[name]).casefold(), r["created_at"], sign * seq[r["key"]])

        self.present = SortedKeyList(key=key)
        for r in records:
            self.add(r)

    def _part(self, r: Record) -> Any:
        name = self.order.field
        return self.present if name is not None and r.get(name) is not None else self.absent

    def add(self, r: Record) -> None:
        self._part(r).add(r)

    def remove(self, r: Record) -> None:
        self._part(r).remove(r)

    def __len__(self) -> int:
        return len(self.present) + len(self.absent)

    def slice(self, start: int, stop: int) -> list[Record]:
        n = len(self.present)
        out: list[Record] = []
        if start < n:
            if self.order.desc:
                lo, hi = max(0, n - min(stop, n)), n - start
                out.extend(reversed(self.present[lo:hi]))
            else:
                out.extend(self.present[start : min(stop, n)])
        if stop > n:
            out.extend(self.absent[max(0, start - n) : stop - n])
        return out


def sort_records(records: list[Record], order: Order, seq: Mapping[str, int]) -> list[Record]:
    """``records`` in ``order``, sorted now (for small buckets and scans)."""
    records = sorted(records, key=lambda r: seq[r["key"]])
    name = order.field
    if name is None:
        return records
    present = [r for r in records if r.get(name) is not None]
    absent = [r for r in records if r.get(name) is None]
    present.sort(key=lambda r: (str(r[name]).casefold(), r["created_at"]), reverse=order.desc)
    return present + absent


class View(Sequence[Record]):
    """A list as the API pages it: its length, and slices."""

    def __init__(self, length: int, slicer: Callable[[int, int], list[Record]]):
        self._len = length
        self._slice = slicer

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step != 1:
                return self._slice(0, self._len)[index]
            return self._slice(start, stop) if start < stop else []
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        return self._slice(index, index + 1)[0]

    @classmethod
    def of(cls, records: list[Record]) -> View:
        return cls(len(records), lambda a, b: records[a:b])


class _Bucket:
    """The records sharing one value of each filter field, in every order kept."""

    __slots__ = ("members", "sorted")

    def __init__(self) -> None:
        self.members: dict[str, Record] = {}
        self.sorted: dict[Order, _Sorted] = {}

    def add(self, r: Record) -> None:
        self.members[r["key"]] = r
        for view in self.sorted.values():
            view.add(r)

    def remove(self, r: Record) -> None:
        del self.members[r["key"]]
        for view in self.sorted.values():
            view.remove(r)


def _value(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


class Table(MutableMapping[str, Record]):
    """Records by key (a mapping, in insertion order) with indexes per filter and order."""

    def __init__(self, name: str):
        self.name = name
        self.rows: dict[str, Record] = {}
        self.seq: dict[str, int] = {}
        self._next = 0
        self.version = 0  # bumped by every write
        self._groups: dict[tuple[str, ...], dict[tuple[Any, ...], _Bucket]] = {}
        self._scans: dict[Any, list[Record]] = {}

    # ------------------------------------------------------------------ mapping

    def __getitem__(self, key: str) -> Record:
        return self.rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    def get(self, key: str, default: Any = None) -> Any:
        return self.rows.get(key, default)

    def values(self) -> Any:
        return self.rows.values()

    def items(self) -> Any:
        return self.rows.items()

    def __setitem__(self, key: str, record: Record) -> None:
        if key in self.rows:
            del self[key]
        self.insert({**record, "key": key})

    def __delitem__(self, key: str) -> None:
        r = self.rows[key]
        for fields, buckets in self._groups.items():
            self._leave(buckets, _values(fields, r), r)
        del self.rows[key]
        del self.seq[key]
        self._wrote()

    # ------------------------------------------------------------------ writes

    def insert(self, record: Record) -> Record:
        key = record["key"]
        if key in self.rows:
            del self[key]
        self.rows[key] = record
        self.seq[key] = self._next
        self._next += 1
        for fields, buckets in self._groups.items():
            _join(buckets, _values(fields, record), record)
        self._wrote()
        return record

    def change(self, record: Record, changes: Mapping[str, Any]) -> Record:
        """Apply ``changes`` to ``record`` (one of this table's), keeping indexes right."""
        changed = {k for k, v in changes.items() if k not in record or record[k] is not v}
        if not changed:
            return record
        moves: list[tuple[tuple[str, ...], dict[tuple[Any, ...], _Bucket]]] = []
        resorted: list[_Sorted] = []
        for fields, buckets in self._groups.items():
            if changed.intersection(fields):
                self._leave(buckets, _values(fields, record), record)
                moves.append((fields, buckets))
                continue
            bucket = buckets[_values(fields, record)]
            for order, view in bucket.sorted.items():
                if order.field in changed or "created_at" in changed:
                    view.remove(record)
                    resorted.append(view)
        record.update(changes)
        for fields, buckets in moves:
            _join(buckets, _values(fields, record), record)
        for view in resorted:
            view.add(record)
        self._wrote()
        return record

    def _leave(self, buckets: dict[tuple[Any, ...], _Bucket], values: tuple[Any, ...], r: Record) -> None:
        bucket = buckets[values]
        bucket.remove(r)
        if not bucket.members:
            del buckets[values]

    def _wrote(self) -> None:
        self.version += 1
        if self._scans:
            self._scans.clear()

    # ------------------------------------------------------------------ reads

    def bucket(self, filters: Mapping[str, Any]) -> dict[str, Record]:
        """The records whose fields equal ``filters`` (key -> record; do not change it)."""
        fields = tuple(sorted(filters))
        buckets = self._groups.get(fields)
        if buckets is None:
            buckets = self._groups[fields] = {}
            for r in self.rows.values():
                _join(buckets, _values(fields, r), r)
        found = buckets.get(tuple(_value(filters[f]) for f in fields))
        return found.members if found is not None else {}

    def select(self, filters: Mapping[str, Any], order: Order = INSERTION) -> View:
        """The records matching ``filters`` in ``order``, as a pageable view."""
        if not filters:
            return self._sorted_view(self._all(), order)
        fields = tuple(sorted(filters))
        self.bucket(filters)
        bucket = self._groups[fields].get(tuple(_value(filters[f]) for f in fields))
        if bucket is None:
            return View.of([])
        return self._sorted_view(bucket, order)

    def _all(self) -> _Bucket:
        if () not in self._groups:
            self.bucket({})
        buckets = self._groups[()]
        if () not in buckets:
            buckets[()] = _Bucket()
        return buckets[()]

    def _sorted_view(self, bucket: _Bucket, order: Order) -> View:
        view = bucket.sorted.get(order)
        if view is None:
            if len(bucket.members) <= SMALL:
                return View.of(sort_records(list(bucket.members.values()), order, self.seq))
            view = bucket.sorted[order] = _Sorted(self, order, iter(bucket.members.values()))
        return View(len(view), view.slice)

    def scan(self, key: Any, make: Callable[[], list[Record]]) -> View:
        """A list no index answers (a search, one user's visibility), remembered until
        the next write to this table (``key`` must name all else it depends on)."""
        found = self._scans.get(key)
        if found is None:
            if len(self._scans) >= SCAN_CACHE:
                self._scans.pop(next(iter(self._scans)))
            found = self._scans[key] = make()
        return View.of(found)


def _values(fields: tuple[str, ...], r: Record) -> tuple[Any, ...]:
    return tuple(_value(r.get(f)) for f in fields)


def _join(buckets: dict[tuple[Any, ...], _Bucket], values: tuple[Any, ...], r: Record) -> None:
    bucket = buckets.get(values)
    if bucket is None:
        bucket = buckets[values] = _Bucket()
    bucket.add(r)
