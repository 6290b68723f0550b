"""A small name -> object registry with Python entry-point discovery.

Built-in problems and methods register themselves on import; third-party packages expose theirs
through the entry-point groups ``mtlbench.problems`` and ``mtlbench.methods`` (the entry point
loads a class, which is then registered under its ``name``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mtlbench.errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered objects; ``registry[name]`` raises a one-line error listing names."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str, item: T, *, overwrite: bool = False) -> T:
        if not overwrite and name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def decorator(self, name_attribute: str = "name") -> Callable[[T], T]:
        """A class decorator registering the class under its ``name`` attribute."""

        def wrap(item: T) -> T:
            return self.register(getattr(item, name_attribute), item)

        return wrap

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        for entry_point in entry_points(group=self._entry_point_group):
            item = entry_point.load()
            self.register(getattr(item, "name", entry_point.name), item, overwrite=True)

    def __getitem__(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load_entry_points()
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return list(self)

    def registered_names(self) -> list[str]:
        """The names registered so far in this process, without importing modules or entry points."""
        return sorted(self._items)

    def entry_point_names(self) -> list[str]:
        """The names of this registry's entry points, without importing them."""
        if self._entry_point_group is None:
            return []
        return sorted({entry_point.name for entry_point in entry_points(group=self._entry_point_group)})

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self]
