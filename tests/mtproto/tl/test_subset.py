"""The full layer-229 schema and the subset tool that copies lines out of it (mtproto/tl/subset.py)."""

from __future__ import annotations

import pytest
from telethon.tl import alltlobjects

from mtproto.tl.layer import LAYER
from mtproto.tl.parser import load_schema, parse_schema
from mtproto.tl.subset import FULL, SUBSET, SubsetError, check, closure, insert, main

#: Declared in api-full.tl like any line, implemented by hand in Telethon (it has no class for them).
BUILTINS = {"boolFalse", "boolTrue", "true", "error", "null"}


def test_the_full_schema_is_the_pinned_layer_and_telethons() -> None:
    full = load_schema(FULL)
    assert full.layer == LAYER == alltlobjects.LAYER
    missing = [c.name for c in full.combinators if c.id not in alltlobjects.tlobjects and c.name not in BUILTINS]
    assert missing == []
    assert len(full.combinators) > 2400


def test_every_line_of_the_subset_is_a_published_line() -> None:
    assert check(load_schema(FULL), SUBSET.read_text()) == []
    assert main(["--check"]) == 0


def test_an_edited_line_is_caught() -> None:
    text = SUBSET.read_text().replace("updates.state#a56c2a3e pts:int", "updates.state#a56c2a3e pts:long")
    [problem] = check(load_schema(FULL), text)
    assert "updates.state#a56c2a3e pts:long" in problem


FULL_TEXT = """
peerUser#59511722 user_id:long = Peer;
peerChat#36c6019a chat_id:long = Peer;
a1#00000001 = Big;
a2#00000002 = Big;
a3#00000003 = Big;
a4#00000004 = Big;
a5#00000005 = Big;
a6#00000006 = Big;
a7#00000007 = Big;
a8#00000008 = Big;
a9#00000009 = Big;
holder#0000000a flags:# peer:Peer big:flags.0?Big = Holder;
needsBig#0000000b big:Big = NeedsBig;
---functions---
getHolder#0000000c id:int = Holder;
// LAYER 229
"""

SUBSET_TEXT = """// head
peerUser#59511722 user_id:long = Peer;

---functions---

// LAYER 229
"""


def test_closure_takes_required_types_and_stops_at_big_ones() -> None:
    full, have = parse_schema(FULL_TEXT), parse_schema(SUBSET_TEXT)
    added = closure(full, have, ["getHolder"])
    # Peer is already in the subset (one constructor is enough); Big is optional in holder: not pulled in.
    assert [c.name for c in added] == ["getHolder", "holder"]
    with pytest.raises(SubsetError, match="type Big has 9 constructors"):
        closure(full, have, ["needsBig"])
    assert {c.name for c in closure(full, have, ["needsBig", "Big"])} == {"needsBig"} | {f"a{i}" for i in range(1, 10)}
    with pytest.raises(SubsetError, match="neither a combinator nor a type"):
        closure(full, have, ["nothing.here"])


def test_insert_puts_types_and_functions_in_their_sections() -> None:
    full, have = parse_schema(FULL_TEXT), parse_schema(SUBSET_TEXT)
    text = insert(SUBSET_TEXT, closure(full, have, ["getHolder"]), "batch")
    grown = parse_schema(text)
    assert [c.name for c in grown.constructors] == ["peerUser", "holder"]
    assert [c.name for c in grown.functions] == ["getHolder"]
    assert grown.layer == 229
    assert "// batch\nholder#" in text and "// batch\ngetHolder#" in text
