"""``@record`` behaves as the dataclass it stands for: each case is defined twice, once with
``dataclasses.dataclass`` and once with ``record``, and both must answer alike."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import FrozenInstanceError, InitVar, dataclass, field
from typing import Any, ClassVar

import pytest

from sagepipe.records import record


def _pair(frozen: bool) -> tuple[type[Any], type[Any]]:
    """The same class as a dataclass and as a record."""

    def body() -> dict[str, Any]:
        def __post_init__(self: Any, scale: int) -> None:
            object.__setattr__(self, "derived", self.a * scale)

        return {
            "__annotations__": {
                "a": "int",
                "b": "tuple[int, ...]",
                "hidden": "str",
                "loose": "float",
                "unhashed": "str",
                "derived": "int",
                "scale": "InitVar[int]",
                "kind": "ClassVar[str]",
            },
            "b": field(default_factory=tuple),
            "hidden": field(default="h", repr=False),
            "loose": field(default=0.5, compare=False),
            "unhashed": field(default="u", hash=False),
            "derived": field(init=False, default=0),
            "scale": 2,
            "kind": "k",
            "__post_init__": __post_init__,
        }

    plain = dataclass(frozen=frozen)(type("Case", (), body()))
    made = record(frozen=frozen)(type("Case", (), body()))
    return plain, made


@pytest.mark.parametrize("frozen", [True, False])
def test_a_record_answers_as_its_dataclass(frozen: bool) -> None:
    plain, made = _pair(frozen)
    for cls in (plain, made):
        cls.__module__ = __name__
    p1, p2, p3 = plain(1, (2,)), plain(1, (2,), loose=9.0), plain(2)
    m1, m2, m3 = made(1, (2,)), made(1, (2,), loose=9.0), made(2)
    assert repr(m1) == repr(p1)
    assert (m1 == m2, m1 == m3, m1 != m3) == (p1 == p2, p1 == p3, p1 != p3)
    assert m1.derived == p1.derived == 2
    assert [f.name for f in dataclasses.fields(m1)] == [f.name for f in dataclasses.fields(p1)]
    assert dataclasses.asdict(m1) == dataclasses.asdict(p1)
    assert made.__match_args__ == plain.__match_args__
    assert (m1 == object()) is (p1 == object()) is False
    assert m1.__eq__(p1) is NotImplemented  # another class, even with the same fields
    assert (made.__hash__ is None) == (plain.__hash__ is None)
    if frozen:
        assert hash(m1) == hash(m2) and hash(p1) == hash(p2)
        assert hash(m1) == hash(p1)  # the same tuple of hashed fields
        assert hash(made(1, unhashed="x")) == hash(made(1))  # hash=False: not hashed
    else:
        with pytest.raises(TypeError):
            hash(m1)
        m1.a = 5
        assert m1.a == 5


def test_frozen_records_refuse_assignment_and_deletion_as_dataclasses_do() -> None:
    plain, made = _pair(True)
    for obj in (plain(1), made(1)):
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'a'"):
            obj.a = 2
        with pytest.raises(FrozenInstanceError, match="cannot assign to field 'other'"):
            obj.other = 2
        with pytest.raises(FrozenInstanceError, match="cannot delete field 'a'"):
            del obj.a
        with pytest.raises(FrozenInstanceError):
            obj.derived = 3  # set by __post_init__ with object.__setattr__, then frozen too
        assert obj.a == 1


def test_fields_init_leaves_to_the_class_and_subclasses_behave_as_with_dataclasses() -> None:
    """A field with init=False and a plain default is read from the class until assigned: it
    is still frozen. An undecorated subclass may add attributes of its own, as dataclasses
    allow, but not change fields."""

    def body() -> dict[str, Any]:
        return {"__annotations__": {"a": "int", "b": "int"}, "b": field(init=False, default=5)}

    for cls in (dataclass(frozen=True)(type("C", (), body())), record(type("C", (), body()))):
        c = cls(1)
        with pytest.raises(FrozenInstanceError):
            c.b = 6
        assert c.b == 5 and hash(c) == hash(cls(1))
        sub = type("Sub", (cls,), {})(1)
        sub.extra = "mine"  # not a field: allowed on a subclass
        del sub.extra
        with pytest.raises(FrozenInstanceError):
            sub.a = 2
        with pytest.raises(FrozenInstanceError):
            del sub.a


def test_replace_copy_and_pickle_give_equal_records() -> None:
    made = record(type("Point", (), {"__annotations__": {"x": "int", "y": "int"}}))
    made.__module__, made.__qualname__ = __name__, "Point"
    globals()["Point"] = made  # pickle finds the class by name
    try:
        p = made(1, 2)
        assert dataclasses.replace(p, y=3) == made(1, 3)
        assert copy.copy(p) == p and copy.deepcopy(p) == p
        back = pickle.loads(pickle.dumps(p))
        assert back == p and hash(back) == hash(p)
        with pytest.raises(FrozenInstanceError):
            back.x = 0
    finally:
        del globals()["Point"]


def test_methods_the_class_defines_are_kept() -> None:
    @record
    class Own:
        a: int

        def __repr__(self) -> str:
            return "own"

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return 7

    assert repr(Own(1)) == "own" and Own(1) == Own(2) and hash(Own(1)) == 7

    @record
    class EqOnly:  # Python sets __hash__ = None beside __eq__: the record still gets a hash
        a: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, EqOnly) and other.a == self.a

    assert hash(EqOnly(1)) == hash((1,))


def test_inheritance_keeps_fields_and_refuses_mixing_frozen_and_mutable() -> None:
    @record
    class Base:
        a: int

    @record
    class Child(Base):
        b: int = 0

    assert Child(1, 2) == Child(1, 2) and Child(1, 2) != Base(1)
    assert repr(Child(1, 2)).endswith(".<locals>.Child(a=1, b=2)")
    with pytest.raises(FrozenInstanceError):
        Child(1).b = 3
    with pytest.raises(TypeError, match="cannot inherit"):

        @record(frozen=False)
        class Loose(Base):
            c: int = 0


def test_a_recursive_repr_ends() -> None:
    @record(frozen=False)
    class Node:
        items: list[Any] = field(default_factory=list)

    n = Node()
    n.items.append(n)
    assert repr(n).endswith("Node(items=[...])")


def test_a_record_is_a_dataclass_for_type_checkers_and_the_runtime() -> None:
    @record
    class Typed:
        a: int
        kind: ClassVar[str] = "k"
        extra: InitVar[int | None] = None

    assert dataclasses.is_dataclass(Typed)
    assert [f.name for f in dataclasses.fields(Typed)] == ["a"]
