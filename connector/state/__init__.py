"""The state wing: the SQLite state store (``store``) holding run journals, polling
ledgers, the event inbox and subscriptions."""

from connector._compat import moved_attributes

__getattr__ = moved_attributes(
    __name__,
    {name: "connector.state.store" for name in ("StateStore", "default_dir", "dumps", "loads", "SCHEMA")},
)
