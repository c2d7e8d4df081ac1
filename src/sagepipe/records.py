"""``@record``: sagepipe's dataclasses: the same behaviour, less than half the cost to define.

Python 3.11's dataclasses compile up to six methods from source for every class, when the class
is defined: ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__``. A command that loads a pipeline defines about ninety of them, and compiling
their methods was a fifth of a fully cached rerun's start-up. A record has dataclasses compile
only its ``__init__``; the other five are the functions below, the same for every record, reading
the field names its class was given when defined (31 ms for 87 classes became 13 ms).

``@record`` is ``@dataclass(frozen=True)``; ``@record(frozen=False)`` is ``@dataclass``. What
stays the same (tests/unit/test_records.py compares the two): value equality over the compared
fields, only between instances of the same class; a hash over the hashed fields when frozen, none
when mutable; the repr; ``FrozenInstanceError`` for an assignment to or deletion of a frozen
record's field, while ``object.__setattr__`` in ``__post_init__`` still works; ``fields``,
``replace``, ``asdict``, copying and pickling. A method the class body defines is kept, as
dataclasses keep it. Type checkers see a dataclass (``dataclass_transform``), frozen by default.

The price: a frozen record's ``__init__`` assigns its fields through the shared ``__setattr__``,
about 0.6 microseconds more per instance of five fields, so classes made by the thousand (a
sync's per-file records, ``ObjectInfo``) stay plain dataclasses. And to dataclasses a frozen
record is not frozen (``__dataclass_params__.frozen`` is False): a ``@dataclass(frozen=True)``
cannot subclass a record, nor a record a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T", bound=type)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = self.__record_compared__
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, n) for n in self.__record_hashed__))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_shown__)
    return f"{self.__class__.__qualname__}({shown})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    cls = type(self)
    if name in cls.__record_fields__:
        # __init__ assigns each of these once; after that it is in the instance's __dict__.
        # The others (init=False without a default_factory) __init__ never assigns.
        if name in self.__dict__ or name in cls.__record_unset__:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    elif cls is cls.__record_class__:  # (an undecorated subclass may add attributes, as with
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")  # dataclasses)
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    cls = type(self)
    if cls is cls.__record_class__ or name in cls.__record_fields__:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


@overload
def record(cls: T, /) -> T: ...


@overload
def record(*, frozen: bool = True) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: Any = None, /, *, frozen: bool = True) -> Any:
    """Make ``cls`` a dataclass, frozen unless ``frozen=False``, as described above."""

    def make(c: Any) -> Any:
        return _make(c, frozen)

    return make if cls is None else make(cls)


def _make(cls: Any, frozen: bool) -> Any:
    for base in cls.__mro__[1:]:
        if getattr(base, "__record_frozen__", frozen) != frozen:
            raise TypeError(
                f"record {cls.__qualname__} (frozen={frozen}) cannot inherit from "
                f"{base.__qualname__} (frozen={not frozen})"
            )
    own = cls.__dict__
    has_eq = "__eq__" in own
    has_repr = "__repr__" in own
    # A body defining __eq__ alone gets __hash__ = None from Python: that is no hash of its own.
    has_hash = "__hash__" in own and not (own["__hash__"] is None and has_eq)
    if frozen and ("__setattr__" in own or "__delattr__" in own):
        raise TypeError(f"cannot overwrite __setattr__ or __delattr__ in {cls.__qualname__}")
    cls = dataclasses.dataclass(cls, repr=False, eq=False)
    fields = dataclasses.fields(cls)
    cls.__record_frozen__ = frozen
    cls.__record_class__ = cls
    cls.__record_fields__ = frozenset(f.name for f in fields)
    cls.__record_unset__ = frozenset(
        f.name for f in fields if not f.init and f.default_factory is dataclasses.MISSING
    )
    cls.__record_compared__ = tuple(f.name for f in fields if f.compare)
    cls.__record_hashed__ = tuple(
        f.name for f in fields if (f.compare if f.hash is None else f.hash)
    )
    cls.__record_shown__ = tuple(f.name for f in fields if f.repr)
    if not has_repr:
        cls.__repr__ = _repr
    if not has_eq:
        cls.__eq__ = _eq
    if frozen:
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
        if not has_hash:
            cls.__hash__ = _hash
    elif not has_hash:
        cls.__hash__ = None
    return cls
