"""The approval lifecycle's table: its diagram, its partition, its edges."""

from __future__ import annotations

import re

from idp.qrlogin import lifecycle
from idp.qrlogin.lifecycle import EDGES, FINAL, OPEN, SETTLED, Kind, Status

LINE = re.compile(r"^\s{4}(\w+)\s+--(\w+)-->\s+(\w+)(?:\s+\((.+)\))?$")


def drawn() -> set[tuple[str, str, str, frozenset[str]]]:
    """The module docstring's diagram: (source, edge, target, kinds) per line."""
    found = set()
    for line in (lifecycle.__doc__ or "").splitlines():
        if match := LINE.match(line):
            source, edge, target, note = match.groups()
            kinds = frozenset(Kind)
            if note and note.endswith(" only"):
                kinds = frozenset({Kind(note.removesuffix(" only"))})
            found.add((source, edge, target, kinds))
    return found


def test_the_diagram_is_the_table():
    table = {
        (source, edge.name, edge.target, edge.kinds)
        for edge in EDGES.values()
        for source in edge.sources
    }
    assert drawn() == table


def test_the_states_are_partitioned():
    assert set(Status) == OPEN | SETTLED
    assert not OPEN & SETTLED
    assert FINAL < SETTLED
    # Nothing leaves a final state but a mark that changes no state (renew).
    for edge in EDGES.values():
        if edge.sources & FINAL:
            assert edge.sources == {edge.target}, edge.name


def test_every_state_is_reached_and_every_open_state_can_expire():
    targets = {edge.target for edge in EDGES.values()} | {Status.PENDING}
    assert targets == set(Status)
    assert EDGES["expire"].sources >= OPEN


def test_a_request_id_never_starts_with_a_dash(monkeypatch):
    drawn = iter(["-" + "a" * 42, "-" + "b" * 42, "c" * 43])
    monkeypatch.setattr(lifecycle.secrets, "token_urlsafe", lambda n: next(drawn))
    assert lifecycle.new_request_id() == "c" * 43
