"""The update state machine (mtlab/client/update_state.py) on synthetic input: no network, no clock.

The property test generates a server's logs (the common box, a channel, the device's qts queue), delivers each
entry zero, one or two times, late or early, as a push or as the answer to the client's own call, and answers
getDifference / getChannelDifference from the log as it stands at that moment (``FakeServer``, a deterministic
stand-in for services/updates/difference.py, slices included). Whatever the deliveries, the application must get
every entry exactly once, in pts order. The unit tests below it pin the single rules: the 0.5 s wait, seq,
differenceTooLong, channelDifferenceTooLong, ephemeral updates, the saved state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlab.client.update_state import (
    COMMON,
    QTS,
    Event,
    Reset,
    SavedState,
    Update,
    UpdateState,
)
from mtproto.tl import api
from mtproto.tl.runtime import TLFunction

ME, PEER, CHANNEL, CHANNEL_HASH = 1, 2, 500, 777
T = api.types


def message(i: int, text: str = "", *, channel: bool = False, out: bool = False) -> T.Message:
    peer: Any = T.PeerChannel(channel_id=CHANNEL) if channel else T.PeerUser(user_id=PEER)
    return T.Message(id=i, peer_id=peer, date=1000 + i, message=text or f"m{i}", out=out,
                     from_id=T.PeerUser(user_id=ME if out else PEER))


def channel_object() -> T.Channel:
    return T.Channel(id=CHANNEL, access_hash=CHANNEL_HASH, title="news", photo=T.ChatPhotoEmpty(), date=0,
                     broadcast=True)


def key(u: Any) -> tuple[Any, ...]:
    """What an update is, whichever shape it came in (a pushed short message and the difference's copy match)."""
    if isinstance(u, (T.UpdateNewMessage, T.UpdateNewChannelMessage)):
        return ("chan" if isinstance(u, T.UpdateNewChannelMessage) else "msg", u.message.id, u.message.message)
    if isinstance(u, T.UpdateEditMessage):
        return "edit", u.message.id, u.message.message
    if isinstance(u, T.UpdateDeleteMessages):
        return "del", tuple(u.messages)
    if isinstance(u, T.UpdateNewEncryptedMessage):
        return "enc", u.message.random_id
    return ("other", type(u).__name__)


@dataclass
class Entry:
    box: Any  # COMMON, QTS or CHANNEL
    update: Any  # as logged, with its pts (qts)
    own: bool = False  # this client made it: the answer to its call is a delivery too

    @property
    def pts(self) -> int:
        return int(self.update.qts if self.box == QTS else self.update.pts)


@dataclass
class FakeServer:
    """The logs, and getState / getDifference / getChannelDifference answered from what is committed so far."""

    entries: list[Entry]
    limit: int = 3  # entries per difference: small, so slices happen
    too_long: int = 10_000
    committed: int = 0  # entries[:committed] exist
    calls: list[str] = field(default_factory=list)

    def log(self, box: Any) -> list[Entry]:
        return [e for e in self.entries[:self.committed] if e.box == box]

    def head(self, box: Any) -> int:
        log = self.log(box)
        return log[-1].pts if log else 0

    def state(self, pts: int | None = None) -> T.updates.State:
        return T.updates.State(pts=self.head(COMMON) if pts is None else pts, qts=self.head(QTS), date=5, seq=0,
                               unread_count=0)

    def answer(self, request: TLFunction[Any]) -> Any:
        self.calls.append(type(request).__name__)
        if isinstance(request, api.functions.updates.GetState):
            return self.state()
        if isinstance(request, api.functions.updates.GetDifference):
            head = self.head(COMMON)
            if head - request.pts > self.too_long:
                return T.updates.DifferenceTooLong(pts=head)
            rows = [e for e in self.log(COMMON) if e.pts > request.pts][:self.limit]
            secret = [e for e in self.log(QTS) if e.pts > request.qts]
            if not rows and not secret:
                return T.updates.DifferenceEmpty(date=5, seq=0)
            new = [e.update.message for e in rows if isinstance(e.update, T.UpdateNewMessage)]
            others = [e.update for e in rows if not isinstance(e.update, T.UpdateNewMessage)]
            reached = rows[-1].pts if rows else request.pts
            state = self.state(reached)
            common: dict[str, Any] = dict(new_messages=new, new_encrypted_messages=[e.update.message for e in secret],
                                          other_updates=others, chats=[], users=[])
            if reached < head:
                return T.updates.DifferenceSlice(intermediate_state=state, **common)
            return T.updates.Difference(state=state, **common)
        if isinstance(request, api.functions.updates.GetChannelDifference):
            assert request.channel == T.InputChannel(channel_id=CHANNEL, access_hash=CHANNEL_HASH)
            head = self.head(CHANNEL)
            if request.pts >= head:
                return T.updates.ChannelDifferenceEmpty(final=True, pts=head)
            rows = [e for e in self.log(CHANNEL) if e.pts > request.pts][:self.limit]
            return T.updates.ChannelDifference(final=rows[-1].pts >= head, pts=rows[-1].pts,
                                               new_messages=[e.update.message for e in rows], other_updates=[],
                                               chats=[channel_object()], users=[])
        raise AssertionError(f"unexpected call {request}")


class Driver:
    """Plays the client's part: feeds the machine, makes the calls it asks for, keeps what it applies."""

    def __init__(self, server: FakeServer, machine: UpdateState | None = None) -> None:
        self.server = server
        self.machine = machine or UpdateState(self_id=ME)
        self.now = 0.0
        self.events: list[Event] = []
        self.ignored = 0

    def take(self, outcome: Any) -> None:
        self.events += outcome.apply
        self.ignored += len(outcome.ignored)
        self.pump()

    def pump(self) -> None:
        while (request := self.machine.next_request(self.now)) is not None:
            outcome = self.machine.answer(request, self.server.answer(request), self.now)
            self.events += outcome.apply
            self.ignored += len(outcome.ignored)

    def settle(self) -> None:
        """Let every deadline pass (gap timeouts, then the long silence) until nothing is left to ask."""
        quiet = self.now + self.machine.silence
        for _ in range(1000):
            deadline = self.machine.deadline()
            if deadline is None or (not self.machine.waiting and self.now >= quiet):
                break
            self.now = max(self.now, deadline)
            self.pump()
        assert not self.machine.waiting

    def applied(self, box: Any) -> list[Update]:
        return [e for e in self.events if isinstance(e, Update) and e.entry == box]


def push(entry: Entry, shape: int) -> T.TypeUpdates:
    """An entry as the server pushes it: short when it can be, else a container."""
    u = entry.update
    if entry.box == CHANNEL:
        return T.Updates(updates=[u], users=[], chats=[channel_object()], date=9, seq=0)
    if isinstance(u, T.UpdateNewMessage) and shape == 0:
        m = u.message
        return T.UpdateShortMessage(id=m.id, user_id=PEER, message=m.message, pts=u.pts, pts_count=u.pts_count,
                                    date=m.date, out=m.out)
    if shape == 1:
        return T.UpdatesCombined(updates=[u], users=[], chats=[], date=9, seq_start=0, seq=0)
    return T.Updates(updates=[u], users=[], chats=[], date=9, seq=0)


def build_log(kinds: list[int], own: list[bool]) -> list[Entry]:
    """0: a new message, 1: an edit, 2: a delete of 1-3 messages (pts_count 1-3), 3: a channel post,
    4: a secret-chat message (qts)."""
    pts = channel_pts = qts = 0
    entries: list[Entry] = []
    for i, (kind, mine) in enumerate(zip(kinds, own, strict=True)):
        if kind == 0:
            pts += 1
            entries.append(Entry(COMMON, T.UpdateNewMessage(message=message(i, out=mine), pts=pts, pts_count=1),
                                 mine))
        elif kind == 1:
            pts += 1
            entries.append(Entry(COMMON, T.UpdateEditMessage(message=message(i, f"edited {i}"), pts=pts,
                                                             pts_count=1)))
        elif kind == 2:
            count = i % 3 + 1
            pts += count
            ids = list(range(10_000 + i * 10, 10_000 + i * 10 + count))
            entries.append(Entry(COMMON, T.UpdateDeleteMessages(messages=ids, pts=pts, pts_count=count), mine))
        elif kind == 3:
            channel_pts += 1
            entries.append(Entry(CHANNEL, T.UpdateNewChannelMessage(message=message(i, channel=True),
                                                                     pts=channel_pts, pts_count=1)))
        else:
            qts += 1
            encrypted = T.EncryptedMessage(random_id=i, chat_id=9, date=0, bytes=b"x", file=T.EncryptedFileEmpty())
            entries.append(Entry(QTS, T.UpdateNewEncryptedMessage(message=encrypted, qts=qts)))
    return entries


def own_answer(driver: Driver, entry: Entry) -> None:
    """The answer to the call that made ``entry``, as the services give it."""
    u = entry.update
    if isinstance(u, T.UpdateNewMessage):
        request = api.functions.messages.SendMessage(peer=T.InputPeerUser(user_id=PEER, access_hash=0),
                                                     message=u.message.message, random_id=u.message.id)
        answer = T.UpdateShortSentMessage(out=True, id=u.message.id, pts=u.pts, pts_count=1, date=u.message.date)
        driver.take(driver.machine.receive(answer, driver.now, request=request))
    else:
        request_ = api.functions.messages.DeleteMessages(id=list(u.messages), revoke=True)
        driver.take(driver.machine.receive_affected(request_, u.pts, u.pts_count, driver.now))


deliveries = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.integers(0, 2)), min_size=40, max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.integers(0, 4), min_size=1, max_size=40), own=st.lists(st.booleans(), min_size=40,
       max_size=40), plan=deliveries, steps=st.lists(st.sampled_from([0.0, 0.1, 0.6]), min_size=80, max_size=80),
       reconnects=st.sets(st.integers(0, 80), max_size=3), limit=st.integers(1, 5))
def test_every_update_exactly_once_in_pts_order(kinds: list[int], own: list[bool], plan: list[tuple[int, int, int]],
                                                steps: list[float], reconnects: set[int], limit: int) -> None:
    mine = [o and k in (0, 2) for k, o in zip(kinds, own, strict=False)]
    entries = build_log(kinds, mine)
    server = FakeServer(entries, limit=limit)
    driver = Driver(server)
    driver.machine.start(driver.now)
    driver.machine.track_channel(CHANNEL, CHANNEL_HASH, pts=0)  # a channel it is in (known from its dialogs)
    driver.pump()
    # Each entry is committed at its index and delivered `copies` times, `delay` slots later (0 copies: dropped;
    # the answer to an own call is one more delivery, at commit time). Same slot: deliveries in a drawn order.
    schedule: list[tuple[int, int, int, int]] = []
    for i, entry in enumerate(entries):
        copies, delay, shape = plan[i]
        schedule += [(i + delay + c, (i * 7 + c * 3) % 5, i, shape) for c in range(copies)]
        if entry.own:
            schedule.append((i, -1, i, -1))
    schedule.sort()
    for step, (slot, _, i, shape) in enumerate(schedule):
        server.committed = max(server.committed, min(slot + 1, len(entries)), i + 1)
        driver.now += steps[step % len(steps)]
        if step in reconnects:
            driver.machine.need_difference()  # new_session_created, a reconnect
        if shape < 0:
            own_answer(driver, entries[i])
        else:
            driver.take(driver.machine.receive(push(entries[i], shape), driver.now))
    server.committed = len(entries)
    driver.settle()  # the long silence: getDifference even without a visible gap

    assert not [e for e in driver.events if isinstance(e, Reset)]
    for box in (COMMON, CHANNEL, QTS):
        got = driver.applied(box)
        want = [e for e in entries if e.box == box]
        assert [key(u.update) for u in got] == [key(e.update) for e in want], box
        assert [u.pts for u in got] == [e.pts for e in want], box


# -- the single rules ---------------------------------------------------------------------------------------


def new(pts: int, i: int | None = None) -> T.Updates:
    m = T.UpdateNewMessage(message=message(i or pts), pts=pts, pts_count=1)
    return T.Updates(updates=[m], users=[], chats=[], date=9, seq=0)


def started(pts: int = 10) -> tuple[UpdateState, list[str]]:
    machine = UpdateState(self_id=ME)
    machine.start(0.0, SavedState(pts=pts, qts=0, date=5, seq=0))
    request = machine.next_request(0.0)
    assert isinstance(request, api.functions.updates.GetDifference) and request.pts == pts
    machine.answer(request, T.updates.DifferenceEmpty(date=5, seq=0), 0.0)
    return machine, []


def test_a_gap_waits_half_a_second_for_the_missing_update() -> None:
    machine, _ = started()
    out = machine.receive(new(12), 1.0)
    assert out.apply == [] and out.gap
    assert machine.deadline() == pytest.approx(1.5)
    assert machine.next_request(1.4) is None  # not yet: the missing one may be on its way
    out = machine.receive(new(11), 1.45)
    assert [u.pts for u in out.apply if isinstance(u, Update)] == [11, 12]
    assert not out.gap
    assert machine.next_request(1.6) is None


def test_a_gap_not_filled_in_time_asks_for_the_difference() -> None:
    machine, _ = started()
    machine.receive(new(12), 1.0)
    assert machine.next_request(1.49) is None
    request = machine.next_request(1.5)
    assert isinstance(request, api.functions.updates.GetDifference) and request.pts == 10
    missing = message(11)
    # While it is fetched a push comes that the difference also holds: it must not come twice.
    assert machine.receive(new(13), 1.6).apply == []
    out = machine.answer(request, T.updates.Difference(
        new_messages=[missing, message(12), message(13)], new_encrypted_messages=[], other_updates=[], chats=[],
        users=[], state=T.updates.State(pts=13, qts=0, date=6, seq=0, unread_count=0)), 1.7)
    assert [(u.pts, key(u.update)) for u in out.apply if isinstance(u, Update)] == [
        (11, ("msg", 11, "m11")), (12, ("msg", 12, "m12")), (13, ("msg", 13, "m13"))]
    assert len(out.ignored) == 2  # 12 (buffered) and 13 (held) were in the difference
    assert machine.pts == 13 and not machine.waiting


def test_duplicates_are_ignored() -> None:
    machine, _ = started()
    assert len(machine.receive(new(11), 1.0).apply) == 1
    out = machine.receive(new(11), 1.1)
    assert out.apply == [] and len(out.ignored) == 1 and not out.gap


def test_own_sent_message_then_its_push_is_one_update() -> None:
    machine, _ = started()
    request = api.functions.messages.SendMessage(peer=T.InputPeerUser(user_id=PEER, access_hash=3), message="hi",
                                                 random_id=1)
    out = machine.receive(T.UpdateShortSentMessage(out=True, id=7, pts=11, pts_count=1, date=100), 1.0,
                          request=request)
    [applied] = out.apply
    assert isinstance(applied, Update) and isinstance(applied.update, T.UpdateNewMessage)
    m = applied.update.message
    assert isinstance(m, T.Message)
    assert (m.id, m.message, m.out, m.peer_id, m.from_id) == (7, "hi", True, T.PeerUser(user_id=PEER),
                                                               T.PeerUser(user_id=ME))
    pushed = T.UpdateShortMessage(id=7, user_id=PEER, message="hi", pts=11, pts_count=1, date=100, out=True)
    assert machine.receive(pushed, 1.1).apply == []
    read = api.functions.messages.ReadHistory(peer=T.InputPeerUser(user_id=PEER, access_hash=3), max_id=0)
    assert machine.receive_affected(read, 12, 1, 1.2).apply == []  # accounted, nothing to show
    assert machine.pts == 12 and not machine.waiting


def test_ephemeral_updates_pass_through_even_during_a_difference() -> None:
    machine, _ = started()
    machine.need_difference()
    assert isinstance(machine.next_request(1.0), api.functions.updates.GetDifference)
    typing = T.UpdateShort(update=T.UpdateUserTyping(user_id=PEER, action=T.SendMessageTypingAction()), date=9)
    [applied] = machine.receive(typing, 1.1).apply
    assert isinstance(applied, Update) and applied.entry is None


def test_seq_orders_containers_when_it_is_not_zero() -> None:
    machine = UpdateState()
    machine.start(0.0, SavedState(pts=0, qts=0, date=5, seq=4))
    machine.answer(machine.next_request(0.0) or api.functions.updates.GetState(),
                   T.updates.DifferenceEmpty(date=5, seq=4), 0.0)

    def container(seq_start: int, seq: int) -> T.UpdatesCombined:
        typing = [T.UpdateUserTyping(user_id=PEER + n, action=T.SendMessageTypingAction())
                  for n in range(seq_start, seq + 1)]
        return T.UpdatesCombined(updates=list(typing), users=[], chats=[], date=9, seq_start=seq_start, seq=seq)

    assert machine.receive(container(7, 7), 1.0).apply == []  # 5 and 6 missing: waits
    out = machine.receive(container(5, 6), 1.1)
    assert [a.update.user_id for a in out.apply if isinstance(a, Update)] == [7, 8, 9]  # type: ignore[union-attr]
    assert machine.seq == 7
    assert len(machine.receive(container(6, 6), 1.2).ignored) == 1  # old
    machine.receive(container(9, 9), 2.0)
    assert machine.next_request(2.4) is None
    request = machine.next_request(2.5)  # the seq gap was not filled in time
    assert isinstance(request, api.functions.updates.GetDifference)
    out = machine.answer(request, T.updates.DifferenceEmpty(date=10, seq=9), 2.6)
    assert out.apply == [] and machine.seq == 9 and not machine.waiting  # container 9 came with the difference


def test_difference_too_long_gets_the_state_and_reports_a_reset() -> None:
    server = FakeServer(build_log([0] * 30, [False] * 30), too_long=5)
    server.committed = 30
    machine = UpdateState(self_id=ME)
    machine.start(0.0, SavedState(pts=2, qts=0, date=5, seq=0))
    driver = Driver(server, machine)
    driver.pump()
    assert server.calls == ["GetDifference", "GetState"]
    assert driver.events == [Reset(None)]
    assert machine.pts == 30
    server.entries += build_log([0] * 31, [False] * 31)[30:]
    server.committed = 31
    driver.take(machine.receive(push(server.entries[30], 2), 1.0))
    assert [u.pts for u in driver.applied(COMMON)] == [31]


def test_channel_difference_too_long_and_a_lost_channel_report_resets() -> None:
    machine, _ = started()
    machine.track_channel(CHANNEL, CHANNEL_HASH, pts=3)
    machine.need_difference()
    account = machine.next_request(1.0)
    assert isinstance(account, api.functions.updates.GetDifference)
    machine.answer(account, T.updates.DifferenceEmpty(date=5, seq=0), 1.0)
    request = machine.next_request(1.0)
    assert isinstance(request, api.functions.updates.GetChannelDifference) and request.pts == 3
    dialog = T.Dialog(peer=T.PeerChannel(channel_id=CHANNEL), top_message=90, read_inbox_max_id=0,
                      read_outbox_max_id=0, unread_count=0, unread_mentions_count=0, unread_reactions_count=0,
                      unread_poll_votes_count=0, notify_settings=T.PeerNotifySettings(), pts=90)
    out = machine.answer(request, T.updates.ChannelDifferenceTooLong(final=True, dialog=dialog, messages=[],
                                                                     chats=[], users=[]), 1.1)
    assert out.apply == [Reset(CHANNEL)] and machine.channel_pts(CHANNEL) == 90
    machine.need_difference()
    account = machine.next_request(2.0)
    assert isinstance(account, api.functions.updates.GetDifference)
    request = machine.next_request(2.0)
    assert isinstance(request, api.functions.updates.GetChannelDifference) and request.pts == 90
    assert machine.failed(request, "CHANNEL_PRIVATE", 2.1).apply == [Reset(CHANNEL)]
    assert machine.channel_pts(CHANNEL) is None


def test_silence_asks_for_the_difference() -> None:
    machine = UpdateState(silence=60.0)
    machine.start(0.0, SavedState(pts=1, qts=0, date=5, seq=0))
    request = machine.next_request(0.0)
    assert request is not None
    machine.answer(request, T.updates.DifferenceEmpty(date=5, seq=0), 0.0)
    machine.receive(new(2), 30.0)
    assert machine.deadline() == 90.0
    assert machine.next_request(89.0) is None
    assert isinstance(machine.next_request(90.0), api.functions.updates.GetDifference)


def test_saved_state_round_trips_and_starts_with_a_difference() -> None:
    machine, _ = started(pts=4)
    machine.receive(T.Updates(updates=[T.UpdateNewChannelMessage(message=message(1, channel=True), pts=8,
                                                                  pts_count=1)],
                              users=[], chats=[channel_object()], date=9, seq=0), 1.0)
    saved = machine.snapshot()
    assert saved == SavedState(pts=4, qts=0, date=9, seq=0, channels={CHANNEL: (8, CHANNEL_HASH)})
    again = SavedState.from_json(saved.to_json())
    assert again == saved
    restarted = UpdateState()
    restarted.start(0.0, again)
    asked = [restarted.next_request(0.0), restarted.next_request(0.0)]
    assert isinstance(asked[0], api.functions.updates.GetDifference) and asked[0].pts == 4
    assert isinstance(asked[1], api.functions.updates.GetChannelDifference) and asked[1].pts == 8
