"""A hypothesis state machine over private chats: users on two physical shards send, resend, edit, delete (for
themselves or for both) and read, and some sends "crash" between the sender's commit and the delivery (the row
stays in the outbox until the sender's next write or a sweep). After every step the database must match a model:

- every box holds exactly the messages it should (matched by their origin: who sent them under which id);
- within a conversation, one sender's messages are in the order they were sent;
- every user's update log is gap-free (each pts = previous pts + pts_count, the last = user_state.pts);
- every dialog's top message and unread count agree with the box;
- no outbox row is left when the model has nothing pending.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mtproto.tl import api
from services.common.rpc import RpcError
from services.messages import outbox, store
from tests.helpers.messages import MessageLab, User

F = api.functions.messages
USERS = 4
TEXTS = st.sampled_from(["hi", "hello", "ok", "see you", "ünïcode ✓", "x" * 50])

Origin = tuple[int, int]  # (sender, id in the sender's box)


@dataclasses.dataclass
class Copy:
    text: str
    out: bool
    peer: int


def machine(main_dsn: str) -> type[RuleBasedStateMachine]:
    class PrivateChats(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.lab = MessageLab(main_dsn)
            self.run(self.lab.__aenter__())
            self.users: list[User] = []
            self.boxes: dict[int, dict[Origin, Copy]] = {}
            self.next_id: dict[int, int] = {}
            self.pending: dict[int, list[Callable[[], None]]] = {}
            self.sent_random: dict[int, tuple[int, int]] = {}  # random_id -> (sender, id)
            self.leftover: set[int] = set()  # sources with a row applied and not deleted (crash_after_apply)

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.run(self.lab.__aexit__(None, None, None))
            self.loop.close()

        @initialize()
        def make_users(self) -> None:
            for i in range(USERS):
                u = self.run(self.lab.user(f"user{i}"))
                self.users.append(u)
                self.boxes[u.id], self.next_id[u.id], self.pending[u.id] = {}, 1, []

        # -- the model -------------------------------------------------------------------------------------

        def _flush(self, uid: int) -> None:
            self.leftover.discard(uid)  # a drain deletes the rows that were applied but not deleted, too
            effects, self.pending[uid] = self.pending[uid], []
            for effect in effects:
                effect()

        def _effect(self, uid: int, effect: Callable[[], None], inline: bool) -> None:
            self.pending[uid].append(effect)
            if inline:
                self._flush(uid)

        def _deliver(self, origin: Origin, text: str, to: int) -> Callable[[], None]:
            def apply() -> None:
                self.boxes[to][origin] = Copy(text, False, origin[0])
                self.next_id[to] += 1
            return apply

        # -- rules ---------------------------------------------------------------------------------------

        @rule(a=st.integers(0, USERS - 1), b=st.integers(0, USERS - 1), text=TEXTS, crash=st.booleans())
        def send(self, a: int, b: int, text: str, crash: bool) -> None:
            sender, to = self.users[a], self.users[b]
            random_id = len(self.sent_random) + 1
            self.lab.deps.config = dataclasses.replace(self.lab.config, deliver_inline=not crash)
            try:
                sent = self.run(self.lab.call(sender, F.SendMessage(peer=self.lab.peer(to), message=text,
                                                                    random_id=random_id)))
            finally:
                self.lab.deps.config = self.lab.config
            origin = (sender.id, self.next_id[sender.id])
            assert sent.id == origin[1]
            self.next_id[sender.id] += 1
            self.sent_random[random_id] = origin
            self.boxes[sender.id][origin] = Copy(text, True, to.id)
            if to.id != sender.id:
                self._effect(sender.id, self._deliver(origin, text, to.id), inline=not crash)
            elif not crash:
                self._flush(sender.id)  # a send to oneself delivers what the sender has pending, too

        @precondition(lambda self: bool(self.sent_random))
        @rule(data=st.data())
        def resend(self, data: st.DataObject) -> None:
            random_id = data.draw(st.sampled_from(sorted(self.sent_random)))
            sender_id, msg_id = self.sent_random[random_id]
            sender = next(u for u in self.users if u.id == sender_id)
            peer = self.users[0]  # a resend is recognised by random_id alone, whatever else it says
            again = self.run(self.lab.call(sender, F.SendMessage(peer=self.lab.peer(peer), message="resent",
                                                                 random_id=random_id)))
            if (sender_id, msg_id) in self.boxes[sender_id]:
                assert again.id == msg_id
            # (deleted from the sender's box: the random_id is free again, and a new message was sent)
            else:
                origin = (sender_id, self.next_id[sender_id])
                assert again.id == origin[1]
                self.next_id[sender_id] += 1
                self.boxes[sender_id][origin] = Copy("resent", True, peer.id)
                self.sent_random[random_id] = origin
                if peer.id != sender_id:
                    self._effect(sender_id, self._deliver(origin, "resent", peer.id), inline=True)
                else:
                    self._flush(sender_id)

        @rule(a=st.integers(0, USERS - 1), data=st.data(), text=TEXTS)
        def edit(self, a: int, data: st.DataObject, text: str) -> None:
            user = self.users[a]
            own = sorted(o for o, c in self.boxes[user.id].items() if c.out)
            if not own:
                return
            origin = data.draw(st.sampled_from(own))
            copy = self.boxes[user.id][origin]
            peer = next(u for u in self.users if u.id == copy.peer)
            try:
                self.run(self.lab.call(user, F.EditMessage(peer=self.lab.peer(peer), id=origin[1], message=text)))
            except RpcError as exc:
                assert exc.message == "MESSAGE_NOT_MODIFIED" and copy.text == text
                return
            copy.text = text

            def apply() -> None:
                if origin in self.boxes[peer.id]:
                    self.boxes[peer.id][origin].text = text

            self._effect(user.id, apply if peer.id != user.id else (lambda: None), inline=True)

        @rule(a=st.integers(0, USERS - 1), data=st.data(), revoke=st.booleans())
        def delete(self, a: int, data: st.DataObject, revoke: bool) -> None:
            user = self.users[a]
            if not self.boxes[user.id]:
                return
            origins = data.draw(st.lists(st.sampled_from(sorted(self.boxes[user.id])), min_size=1, max_size=3,
                                         unique=True))
            ids = self._ids(user.id, origins)
            done = self.run(self.lab.call(user, F.DeleteMessages(revoke=revoke, id=ids)))
            assert done.pts_count == len(origins)
            peers = {o: self.boxes[user.id].pop(o).peer for o in origins}

            def apply() -> None:
                for o, p in peers.items():
                    if p != user.id:
                        self.boxes[p].pop(o, None)

            self._effect(user.id, apply if revoke else (lambda: None), inline=True)

        @rule(a=st.integers(0, USERS - 1), b=st.integers(0, USERS - 1))
        def read(self, a: int, b: int) -> None:
            user, peer = self.users[a], self.users[b]
            done = self.run(self.lab.call(user, F.ReadHistory(peer=self.lab.peer(peer), max_id=0)))
            if done.pts_count:
                self._flush(user.id)

        @precondition(lambda self: any(self.pending.values()))
        @rule(data=st.data())
        def crash_after_apply(self, data: st.DataObject) -> None:
            """A drainer applies a source's first pending row and dies before deleting it: the row stays, and
            the next drain applies it again (which must change nothing)."""
            uid = data.draw(st.sampled_from(sorted(u for u, effects in self.pending.items() if effects)))
            shard = self.lab.shards.for_user(uid)
            rows = self.run(self.lab.shards.txn(shard, "test.pending",
                                                lambda con: store.pending_outbox(con, shard, uid, 100)))
            # Rows this rule applied before come first and apply as duplicates; the first new one applies.
            first_new = len(rows) - len(self.pending[uid])
            applied = [self.run(outbox.apply(self.lab.deps, row)) for row in rows[:first_new + 1]]
            assert applied[-1] is True and not any(applied[:-1])
            self.pending[uid].pop(0)()
            self.leftover.add(uid)

        @rule()
        def sweep(self) -> None:
            self.run(outbox.sweep(self.lab.deps, older_than=0, batch=1000))
            for uid in list(self.pending):
                self._flush(uid)

        # -- reading the database back ---------------------------------------------------------------------

        def _uids(self) -> list[int]:
            return [u.id for u in self.users]

        def _ids(self, uid: int, origins: list[Origin]) -> list[int]:
            rows = self.run(self.lab.shard_rows(
                "SELECT id, origin_user, origin_id FROM messages WHERE owner_id = $1", uid))
            by_origin = {(r["origin_user"], r["origin_id"]): r["id"] for r in rows}
            return [by_origin[o] for o in origins]

        @invariant()
        def boxes_match_the_model(self) -> None:
            if not self.users:
                return
            rows = self.run(self.lab.shard_rows(
                "SELECT owner_id, id, peer_id, out, message, origin_user, origin_id FROM messages "
                "WHERE owner_id = ANY($1) ORDER BY id", self._uids()))
            seen: dict[int, dict[Origin, Copy]] = {u.id: {} for u in self.users}
            last: dict[tuple[int, int, int], int] = {}
            for r in rows:
                origin = (r["origin_user"], r["origin_id"])
                assert origin not in seen[r["owner_id"]], f"duplicate {origin} in box {r['owner_id']}"
                seen[r["owner_id"]][origin] = Copy(r["message"], r["out"], r["peer_id"])
                key = (r["owner_id"], r["peer_id"], r["origin_user"])
                assert last.get(key, 0) < r["origin_id"], f"out of send order in box {r['owner_id']}"
                last[key] = r["origin_id"]
            assert seen == self.boxes

        @invariant()
        def update_logs_are_gap_free(self) -> None:
            if not self.users:
                return
            logs = self.run(self.lab.shard_rows(
                "SELECT owner_id, pts, pts_count FROM update_log WHERE owner_id = ANY($1) ORDER BY owner_id, pts",
                self._uids()))
            states = {r["user_id"]: r["pts"] for r in self.run(self.lab.shard_rows(
                "SELECT user_id, pts FROM user_state WHERE user_id = ANY($1)", self._uids()))}
            at: dict[int, int] = {}
            for r in logs:
                assert r["pts"] - r["pts_count"] == at.get(r["owner_id"], 0), f"pts gap for {r['owner_id']}"
                at[r["owner_id"]] = r["pts"]
            assert at == {uid: pts for uid, pts in states.items() if pts}

        @invariant()
        def dialogs_agree_with_boxes(self) -> None:
            if not self.users:
                return
            bad = self.run(self.lab.shard_rows(
                "SELECT d.owner_id, d.peer_id FROM dialogs d WHERE d.top_message <> coalesce((SELECT max(id) FROM "
                "messages m WHERE m.shard = d.shard AND m.owner_id = d.owner_id AND m.peer_id = d.peer_id), 0) "
                "OR d.unread_count <> (SELECT count(*) FROM messages m WHERE m.shard = d.shard AND "
                "m.owner_id = d.owner_id AND m.peer_id = d.peer_id AND NOT m.out AND m.id > d.read_inbox_max_id) "
                "AND d.owner_id = ANY($1)", self._uids()))
            assert bad == []

        @invariant()
        def outbox_empty_when_nothing_is_pending(self) -> None:
            if not self.users or any(self.pending.values()) or self.leftover:
                return
            rows = self.run(self.lab.shard_rows("SELECT id FROM outbox WHERE source_id = ANY($1)", self._uids()))
            assert rows == []

    return PrivateChats


def test_private_chats_state_machine(database: str) -> None:
    cls = machine(database)
    cls.TestCase.settings = settings(max_examples=10, stateful_step_count=20, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
    cls.TestCase().runTest()
