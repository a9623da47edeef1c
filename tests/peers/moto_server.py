"""moto's server mode, with queries that look only at the items they can match.

moto's `Table.query` gathers its candidates from `Table.all_items()`, which sorts every item of
the table by its primary key; it then keeps the items whose keys match, sorts those by the keys
the query orders by, and pages through that order. On the scale benchmark's table of 100,000
items that costs a quarter of a second per query, and the benchmark would measure moto instead
of Keyport. Inside a query this hands moto only the candidates that can match, unsorted:
- a table query gets the items of its one partition (moto files items by partition key);
- an index query gets the items filed under the queried string value of the index's partition
  key (an index of the table's items by each global index's partition key attribute, built at
  the first index query and kept by every write: put, delete, update, and a transaction's
  rollback, which restores a copy of the table together with its index), less those whose
  string sort key fails the query's sort key condition.
moto still applies every condition to the candidates and sorts them itself, so answers are
unchanged: the same items, in the same order, over the same pages; only where moto would end
a query with an empty page (its last full page followed by items outside the sort key
condition) the page before is the last. AWS documents both ("LastEvaluatedKey ... does not
necessarily mean that there is more data"). Every other caller of
`all_items` (a scan, whose pages follow that order) gets it as moto wrote it.
"""
import sys
import threading
from collections import defaultdict

from moto.dynamodb.comparisons import get_comparison_func
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.server import main

_querying = threading.local()
_sorted_items_of_the_table = Table.all_items
_query = Table.query
_put_item = Table.put_item
_delete_item = Table.delete_item
_update_item = DynamoDBBackend.update_item


def _unsorted_items(table):
    if not table.range_key_attr:
        return list(table.items.values())
    return [item for hash_set in table.items.values() for item in hash_set.values()]


def _primary_key(item):
    return (item.hash_key, item.range_key)


def _partition_key_attributes(table):
    return frozenset(
        key["AttributeName"]
        for index in table.global_indexes
        for key in index.schema
        if key["KeyType"] == "HASH"
    )


# One lock for every table's index: a lock held by the index itself could not be deep-copied
# with the table (a transaction's rollback copy).
_filing = threading.Lock()


def _stored(table, key):
    hash_key, range_key = key
    stored = table.items.get(hash_key)
    if stored is None or not table.range_key_attr:
        return stored
    return stored.get(range_key)


class _IndexPartitions:
    """The table's items filed by (attribute, string value) of each index partition key."""

    def __init__(self, table):
        self.attributes = _partition_key_attributes(table)
        self.members = defaultdict(dict)
        self.entries = {}
        for item in _unsorted_items(table):
            self._file(_primary_key(item), item)

    def refile(self, table, key):
        """Files what the table holds under `key` now. Every write refiles after writing, so
        of two racing writes to one key the later refile reads the item that stayed."""
        with _filing:
            self._forget(key)
            item = _stored(table, key)
            if item is not None:
                self._file(key, item)

    def _file(self, key, item):
        entries = []
        for attribute in self.attributes:
            held = item.attrs.get(attribute)
            if held is not None and held.type == "S":
                self.members[(attribute, held.value)][key] = item
                entries.append((attribute, held.value))
        self.entries[key] = entries

    def _forget(self, key):
        for entry in self.entries.pop(key, ()):
            members = self.members[entry]
            members.pop(key, None)
            if not members:
                del self.members[entry]

    def holding(self, attribute, value):
        with _filing:
            return list(self.members.get((attribute, value), {}).values())


def _index_partitions(table):
    with _filing:
        partitions = table.__dict__.get("_index_partitions")
        if partitions is None or partitions.attributes != _partition_key_attributes(table):
            partitions = _IndexPartitions(table)
            table.__dict__["_index_partitions"] = partitions
        return partitions


def _kept_index_partitions(table):
    """The index if a query built one; writes before the first index query need none. Read
    under the lock, so a write racing the index's building is either in its walk or refiled."""
    with _filing:
        return table.__dict__.get("_index_partitions")


def _items_of_partition(table, hash_key):
    hash_set = table.items.get(hash_key)
    if hash_set is None:
        return []
    return list(hash_set.values()) if table.range_key_attr else [hash_set]


def _string_sort_key_passes(item, attribute, comparison, operands):
    held = item.attrs.get(attribute)
    if held is None:
        return False
    if held.type != "S":
        return True
    return comparison(held.value, *operands)


def _items_under_index_partition(table, index_name, hash_conditions, range_comparison, range_objs):
    partitions = _index_partitions(table)
    strings = [
        (attribute, value.value)
        for attribute, value in hash_conditions
        if value.type == "S" and attribute in partitions.attributes
    ]
    if not strings or len(strings) != len(hash_conditions):
        return _unsorted_items(table)
    items = partitions.holding(*strings[0])
    index = next((i for i in table.all_indexes() if i.name == index_name), None)
    sort_keys = [k["AttributeName"] for k in (index.schema if index else []) if k["KeyType"] == "RANGE"]
    comparison = get_comparison_func(range_comparison) if range_comparison else None
    if len(sort_keys) != 1 or comparison is None or any(o.type != "S" for o in range_objs):
        return items
    operands = [o.value for o in range_objs]
    return [i for i in items if _string_sort_key_passes(i, sort_keys[0], comparison, operands)]


def _all_items(self):
    candidates = getattr(_querying, "candidates", None)
    if candidates is None:
        return _sorted_items_of_the_table(self)
    return candidates(self)


def _query_over_candidates(self, hash_key, *args, **kwargs):
    range_comparison = args[0] if args else kwargs.get("range_comparison")
    range_objs = args[1] if len(args) > 1 else kwargs.get("range_objs", [])
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    hash_conditions = kwargs.get("hash_key_conditions") or []
    multi_range = len(kwargs.get("range_key_conditions") or []) > 1
    if not index_name:
        _querying.candidates = lambda table: _items_of_partition(table, hash_key)
    else:
        _querying.candidates = lambda table: _items_under_index_partition(
            table,
            index_name,
            hash_conditions,
            None if multi_range else range_comparison,
            range_objs or [],
        )
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _querying.candidates = None


def _put_item_kept_indexed(self, *args, **kwargs):
    item = _put_item(self, *args, **kwargs)
    partitions = _kept_index_partitions(self)
    if partitions is not None and item is not None:
        partitions.refile(self, _primary_key(item))
    return item


def _delete_item_kept_indexed(self, hash_key, range_key, *args, **kwargs):
    try:
        return _delete_item(self, hash_key, range_key, *args, **kwargs)
    finally:
        partitions = _kept_index_partitions(self)
        if partitions is not None:
            partitions.refile(self, (hash_key, range_key if self.range_key_attr else None))


def _update_item_kept_indexed(self, table_name, key, *args, **kwargs):
    """An update changes the stored item in place: file it again however the update ended."""
    try:
        return _update_item(self, table_name, key, *args, **kwargs)
    finally:
        table = self.tables.get(table_name)
        partitions = _kept_index_partitions(table) if table is not None else None
        if partitions is not None and table.hash_key_attr in key:
            range_key = (
                DynamoType(key[table.range_key_attr])
                if table.range_key_attr and table.range_key_attr in key
                else None
            )
            partitions.refile(table, (DynamoType(key[table.hash_key_attr]), range_key))


Table.all_items = _all_items
Table.query = _query_over_candidates
Table.put_item = _put_item_kept_indexed
Table.delete_item = _delete_item_kept_indexed
DynamoDBBackend.update_item = _update_item_kept_indexed

if __name__ == "__main__":
    main(sys.argv[1:])
