"""moto's server mode, with queries that look only at the items they can match.

moto's `Table.query` gathers its candidates from `Table.all_items()`, which sorts every item of
the table by its primary key; it then keeps the items whose keys match, sorts those by the keys
the query orders by, and pages through that order. On the scale benchmark's table of 100,000
items that walk costs a quarter of a second per query, and the benchmark measures moto instead
of Keyport. Inside a query this hands moto only the candidates that can match, unsorted:
- a table query gets the items of its one partition (moto files items by partition key);
- an index query gets the items whose index partition key attributes hold the queried string
  values (a cheap comparison of the raw strings; other types are left to moto's own check).
moto still applies every condition and sorts the candidates itself, so answers are unchanged:
the same items, in the same order, over the same pages. Every other caller of `all_items` (a
scan, whose pages follow that order) gets it as moto wrote it.
"""
import sys
import threading

from moto.dynamodb.models.table import Table
from moto.server import main

_querying = threading.local()
_sorted_items_of_the_table = Table.all_items
_query = Table.query


def _unsorted_items(table):
    if not table.range_key_attr:
        return list(table.items.values())
    return [item for hash_set in table.items.values() for item in hash_set.values()]


def _items_of_partition(table, hash_key):
    hash_set = table.items.get(hash_key)
    if hash_set is None:
        return []
    return list(hash_set.values()) if table.range_key_attr else [hash_set]


def _holds_string(item, attribute, value):
    held = item.attrs.get(attribute)
    return held is not None and held.type == "S" and held.value == value


def _items_under_index_partition(table, string_conditions):
    return [
        item
        for item in _unsorted_items(table)
        if all(_holds_string(item, attribute, value) for attribute, value in string_conditions)
    ]


def _all_items(self):
    candidates = getattr(_querying, "candidates", None)
    if candidates is None:
        return _sorted_items_of_the_table(self)
    return candidates(self)


def _candidates_for(hash_key, index_name, hash_key_conditions):
    if not index_name:
        return lambda table: _items_of_partition(table, hash_key)
    string_conditions = [
        (attribute, value.value)
        for attribute, value in (hash_key_conditions or [])
        if value.type == "S"
    ]
    return lambda table: _items_under_index_partition(table, string_conditions)


def _query_over_candidates(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    _querying.candidates = _candidates_for(
        hash_key, index_name, kwargs.get("hash_key_conditions")
    )
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _querying.candidates = None


Table.all_items = _all_items
Table.query = _query_over_candidates

if __name__ == "__main__":
    main(sys.argv[1:])
