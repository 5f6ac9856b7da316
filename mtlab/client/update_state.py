"""The client's update state machine: which incoming update to apply now, which is a duplicate, and when a gap
must be filled (core.telegram.org/api/updates, "Update handling" and "Recovering gaps"). Sans-IO: it never
sends, sleeps or reads the clock; the caller hands it what arrived and the time, and asks it what to call.

The state it keeps, as the spec describes it:

- the **common box**: ``pts`` (private and basic-group messages, edits, deletes, read marks), ``qts`` (secret
  chats, per device), ``seq`` and ``date`` of the update containers;
- one ``pts`` per **channel**, with the channel's access hash (``updates.getChannelDifference`` names it).

The rules, for each update that carries a ``pts`` (and ``pts_count``), or a ``qts`` (which counts 1):

- ``local + pts_count == pts``: apply it, ``local = pts``;
- ``local + pts_count > pts``: applied before, a duplicate: ignore it;
- ``local + pts_count < pts``: a gap. The update waits in a short buffer: the missing one is often just behind
  it (two pushes crossing, an answer overtaking a push). If the gap is still there after ``gap_timeout``
  (0.5 s, as the spec suggests), ``next_request`` asks for ``updates.getDifference`` (or
  ``updates.getChannelDifference`` for a channel).

Containers (``updates``, ``updatesCombined``) with ``seq != 0`` follow the same rule on ``seq_start``/``seq``
(``local_seq + 1 == seq_start``) before their updates are looked at; ``seq == 0`` skips the check, as stock
clients do (mtlab always sends 0: every ordered update carries its own pts or qts). Updates with neither
(typing, presence, ``updateMessageID``) are passed through as they come.

getDifference is also asked for on ``need_difference()`` (the caller says: new_session_created, a reconnect, a
push dropped), after ``silence`` seconds without any update (15 minutes by default), on ``updatesTooLong``,
and first thing when started from a saved state; ``updates.getState`` when started afresh. While a difference
is being fetched for a box, updates for it are held and looked at again once the answer is in, so a push that
overtakes the answer is neither lost nor doubled.

Answers: ``difference`` (apply, take its state, done), ``differenceSlice`` (apply, take ``intermediate_state``,
ask again), ``differenceTooLong`` (ask ``updates.getState``, then report a ``Reset``: the application reloads its
chats), ``differenceEmpty`` (done). A difference lists new messages apart from the other updates, without their
pts; as each new message takes one pts, the pts the other updates leave free in the range are theirs, in order,
which puts the whole difference back in pts order (``_fill``).

Results of the application's own calls also move pts: ``updateShortSentMessage`` (rebuilt as ``updateNewMessage``
from the ``messages.sendMessage`` that produced it), ``updates`` answers, and ``messages.affectedMessages``
(``receive_affected``: rebuilt as the ``updateDeleteMessages`` the delete stands for; other calls' pts are only
accounted, and their update shows only if its push overtook the answer: the caller knows what it did). So the
push of the same update is a duplicate, not a second copy, and does not look like a gap.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mtproto.tl import api
from mtproto.tl.runtime import TLFunction

COMMON: Final = "common"  # the user's box: pts
QTS: Final = "qts"  # the device's secret-chat queue: qts
Entry = str | int  # COMMON, QTS, or a channel id

GAP_TIMEOUT = 0.5  # seconds a gap may wait for its missing update before getDifference (the spec's figure)
SILENCE = 15 * 60.0  # seconds without any update after which getDifference is asked anyway
CHANNEL_LIMIT = 100  # updates.getChannelDifference's limit


@dataclass(frozen=True, slots=True)
class Update:
    """One update for the application, in order. ``entry`` and ``pts`` say where it stands (``pts`` is the qts
    for QTS; both ``None`` for updates that are not ordered, 0 for a new message a difference could not
    place). ``users`` and ``chats`` are the objects its container or difference came with, by id."""

    update: api.types.TypeUpdate
    users: Mapping[int, api.types.TypeUser]
    chats: Mapping[int, api.types.TypeChat]
    entry: Entry | None = None
    pts: int | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """The state was too far behind to catch up update by update (differenceTooLong, channelDifferenceTooLong,
    or a channel that can no longer be read): reload the chats (``channel_id is None``) or that channel's
    history. Updates after it continue from the new state."""

    channel_id: int | None = None


Event = Update | Reset


@dataclass(slots=True)
class Outcome:
    """What one call of the machine decided: ``apply`` (in order), ``ignored`` (duplicates), and ``gap`` (some
    box is waiting for a missing update or a difference: see ``next_request`` and ``deadline``)."""

    apply: list[Event] = field(default_factory=list)
    ignored: list[api.types.TypeUpdate] = field(default_factory=list)
    gap: bool = False


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a restarted client needs to continue exactly where it stopped (kept in the session file)."""

    pts: int
    qts: int
    date: int
    seq: int
    channels: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # channel id -> (pts, access hash)

    def to_json(self) -> dict[str, Any]:
        return {"pts": self.pts, "qts": self.qts, "date": self.date, "seq": self.seq,
                "channels": {str(c): [p, h] for c, (p, h) in sorted(self.channels.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SavedState:
        channels = {int(c): (int(p), int(h)) for c, (p, h) in dict(data.get("channels", {})).items()}
        return cls(int(data["pts"]), int(data["qts"]), int(data["date"]), int(data["seq"]), channels)

    def advanced(self, entry: Entry, pts: int) -> SavedState:
        """This state with ``entry`` moved to ``pts`` (what an application has been handed so far)."""
        if entry == COMMON:
            return SavedState(pts, self.qts, self.date, self.seq, self.channels)
        if entry == QTS:
            return SavedState(self.pts, pts, self.date, self.seq, self.channels)
        if isinstance(entry, int) and entry in self.channels:
            return SavedState(self.pts, self.qts, self.date, self.seq,
                              {**self.channels, entry: (pts, self.channels[entry][1])})
        return self


@dataclass(slots=True)
class _Item:
    """An ordered update on its way: ``update`` is None for a pts known only from an own call's answer."""

    entry: Entry
    pts: int
    count: int
    update: api.types.TypeUpdate | None
    users: Mapping[int, api.types.TypeUser]
    chats: Mapping[int, api.types.TypeChat]

    @property
    def key(self) -> tuple[int, int]:
        return self.pts - self.count, self.update is None  # where it starts; the real update before a stand-in


@dataclass(slots=True)
class _Box:
    """One sequence: the common pts, the qts, or a channel's pts."""

    pts: int | None
    waiting: list[_Item] = field(default_factory=list)  # out of order, or held during a difference
    deadline: float | None = None  # when the gap in ``waiting`` becomes a difference
    need_difference: bool = False  # (channels; the common box and qts share the account's flags)
    in_flight: bool = False


@dataclass(slots=True)
class _Container:
    updates: list[api.types.TypeUpdate]
    users: Mapping[int, api.types.TypeUser]
    chats: Mapping[int, api.types.TypeChat]
    date: int
    seq_start: int
    seq: int


class UpdateState:
    """The state machine. ``start`` it once signed in, then feed it; ``self_id`` (the signed-in user) fills
    ``from_id`` in the messages it rebuilds from the short forms (``updateShortMessage`` names only the peer)."""

    def __init__(self, *, gap_timeout: float = GAP_TIMEOUT, silence: float = SILENCE,
                 self_id: int | None = None) -> None:
        self.gap_timeout = gap_timeout
        self.silence = silence
        self.self_id = self_id
        self.date = 0
        self.seq = 0
        self._common = _Box(None)
        self._secret = _Box(None)
        self._channels: dict[int, _Box] = {}
        self._hashes: dict[int, int] = {}  # channel id -> access hash, learned from the chats updates come with
        self._started = False
        self._need_state = True  # no state yet (or differenceTooLong): updates.getState
        self._reset_pending = False  # report a Reset once getState answers
        self._need_difference = False  # the account's (common pts and qts)
        self._account_in_flight = False
        self._seq_waiting: list[_Container] = []
        self._seq_deadline: float | None = None
        self._last = 0.0  # when the account last heard anything

    # -- state --------------------------------------------------------------------------------------------

    @property
    def pts(self) -> int | None:
        return self._common.pts

    @property
    def qts(self) -> int | None:
        return self._secret.pts

    @property
    def initialized(self) -> bool:
        return self._started and not self._need_state

    def channel_pts(self, channel_id: int) -> int | None:
        box = self._channels.get(channel_id)
        return None if box is None else box.pts

    def start(self, now: float, saved: SavedState | None = None) -> None:
        """Begin: from ``saved`` (then getDifference, and getChannelDifference for each channel), else from
        updates.getState. Updates received before this are held."""
        self._started = True
        self._last = now
        if saved is None:
            return
        self._need_state = False
        self._common.pts, self._secret.pts, self.date, self.seq = saved.pts, saved.qts, saved.date, saved.seq
        for channel_id, (pts, access_hash) in saved.channels.items():
            self._hashes[channel_id] = access_hash
            self._channels.setdefault(channel_id, _Box(pts)).pts = pts
        self.need_difference()

    def snapshot(self) -> SavedState | None:
        """The state to save, or None before the first getState answer."""
        if not self.initialized or self._common.pts is None:
            return None
        channels = {cid: (box.pts, self._hashes[cid]) for cid, box in self._channels.items()
                    if box.pts is not None and cid in self._hashes}
        return SavedState(self._common.pts, self._secret.pts or 0, self.date, self.seq, channels)

    def track_channel(self, channel_id: int, access_hash: int, pts: int | None = None) -> None:
        """A channel the application learned of elsewhere (joined, created, a dialog's ``pts``)."""
        self._hashes[channel_id] = access_hash
        box = self._channels.setdefault(channel_id, _Box(pts))
        if box.pts is None:
            box.pts = pts

    def need_difference(self) -> None:
        """Something may have been missed (new_session_created, a reconnect, a dropped push): ask the account's
        and every known channel's difference."""
        self._need_difference = True
        for channel_id, box in self._channels.items():
            if box.pts is not None and channel_id in self._hashes:
                box.need_difference = True

    # -- what to do next ----------------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When ``next_request`` may have something new to ask even if nothing arrives (a gap timing out, the
        silence running out); None: only when something arrives."""
        times = [b.deadline for b in self._boxes() if b.deadline is not None]
        if self._seq_deadline is not None:
            times.append(self._seq_deadline)
        if self.initialized and not self._account_in_flight:
            times.append(self._last + self.silence)
        return min(times, default=None)

    def next_request(self, now: float) -> TLFunction[Any] | None:
        """The call to make now (its answer goes to ``answer``, its error to ``failed``), or None. Each box has
        one call in flight at most; call again for the next box's."""
        if not self._started:
            return None
        self._expire(now)
        if not self._account_in_flight:
            if self._need_state:
                self._account_in_flight = True
                return api.functions.updates.GetState()
            if self._need_difference and self._common.pts is not None:
                self._account_in_flight = True
                return api.functions.updates.GetDifference(pts=self._common.pts, date=self.date,
                                                           qts=self._secret.pts or 0)
        for channel_id, box in self._channels.items():
            if box.need_difference and not box.in_flight and box.pts is not None and channel_id in self._hashes:
                box.in_flight = True
                return api.functions.updates.GetChannelDifference(
                    channel=api.types.InputChannel(channel_id=channel_id, access_hash=self._hashes[channel_id]),
                    filter=api.types.ChannelMessagesFilterEmpty(), pts=box.pts, limit=CHANNEL_LIMIT)
        return None

    def _expire(self, now: float) -> None:
        for entry, box in self._entries():
            if box.deadline is not None and now >= box.deadline:
                box.deadline = None
                if isinstance(entry, int):
                    box.need_difference = True
                else:
                    self._need_difference = True
        if self._seq_deadline is not None and now >= self._seq_deadline:
            self._seq_deadline = None
            self._need_difference = True
        if self.initialized and not self._account_in_flight and now >= self._last + self.silence:
            self.need_difference()  # every known channel too: its last post may have been the one missed

    # -- what arrived -------------------------------------------------------------------------------------

    def receive(self, updates: api.types.TypeUpdates, now: float, *,
                request: TLFunction[Any] | None = None) -> Outcome:
        """An Updates object: pushed, or the answer to ``request`` (the application's own call)."""
        out = Outcome()
        self._last = now
        if isinstance(updates, api.types.UpdatesTooLong):
            self._need_difference = True
        elif isinstance(updates, api.types.UpdateShortSentMessage):
            rebuilt = self._sent(updates, request)
            if rebuilt is None:
                self._offer(_Item(COMMON, updates.pts, updates.pts_count, None, {}, {}), out, now)
            else:
                self._container(_Container([rebuilt], {}, {}, updates.date, 0, 0), out, now)
        elif isinstance(updates, (api.types.UpdateShortMessage, api.types.UpdateShortChatMessage)):
            self._container(_Container([self._short(updates)], {}, {}, updates.date, 0, 0), out, now)
        elif isinstance(updates, api.types.UpdateShort):
            self._container(_Container([updates.update], {}, {}, updates.date, 0, 0), out, now)
        elif isinstance(updates, api.types.Updates):
            self._container(_Container(list(updates.updates), _by_id(updates.users), self._learn(updates.chats),
                                       updates.date, updates.seq, updates.seq), out, now)
        elif isinstance(updates, api.types.UpdatesCombined):
            self._container(_Container(list(updates.updates), _by_id(updates.users), self._learn(updates.chats),
                                       updates.date, updates.seq_start, updates.seq), out, now)
        out.gap = self.waiting
        return out

    def receive_affected(self, request: TLFunction[Any], pts: int, pts_count: int, now: float) -> Outcome:
        """``messages.affectedMessages``: pts moved by ``pts_count``. A delete (messages.deleteMessages,
        channels.deleteMessages) is surfaced as the update it stands for; for other calls (readHistory) only the
        pts is accounted, so the next update is no gap and their push is a duplicate."""
        out = Outcome()
        if pts_count > 0:
            channel = getattr(request, "channel", None)
            entry: Entry = channel.channel_id if isinstance(channel, api.types.InputChannel) else COMMON
            update: api.types.TypeUpdate | None = None
            if isinstance(request, api.functions.messages.DeleteMessages):
                update = api.types.UpdateDeleteMessages(messages=list(request.id), pts=pts, pts_count=pts_count)
            elif isinstance(request, api.functions.channels.DeleteMessages) and isinstance(entry, int):
                update = api.types.UpdateDeleteChannelMessages(channel_id=entry, messages=list(request.id), pts=pts,
                                                               pts_count=pts_count)
            self._offer(_Item(entry, pts, pts_count, update, {}, {}), out, now)
        out.gap = self.waiting
        return out

    @property
    def waiting(self) -> bool:
        """Some box waits for a missing update or a difference."""
        return (self._need_state or self._need_difference or bool(self._seq_waiting)
                or any(b.waiting or b.need_difference or b.in_flight for b in self._boxes()))

    def _container(self, c: _Container, out: Outcome, now: float) -> None:
        if c.seq != 0:
            start = c.seq_start or c.seq
            if self._account_busy or self.seq + 1 < start:
                self._seq_waiting.append(c)
                if not self._account_busy and self._seq_deadline is None:
                    self._seq_deadline = now + self.gap_timeout
                return
            if self.seq + 1 > start:
                out.ignored += c.updates  # the whole container was applied before
                return
        self._apply_container(c, out, now)
        self._drain_seq(out, now)

    def _apply_container(self, c: _Container, out: Outcome, now: float) -> None:
        items: list[_Item] = []
        for u in c.updates:
            if isinstance(u, api.types.UpdateChannelTooLong):
                self._channel_too_long(u)
                continue
            order = ordering(u)
            if order is None:
                out.apply.append(Update(u, c.users, c.chats))
            else:
                items.append(_Item(order[0], order[1], order[2], u, c.users, c.chats))
        # The spec: a container's updates are applied in pts order (they need not be listed in it).
        for item in sorted(items, key=lambda i: i.key):
            self._offer(item, out, now)
        if c.seq != 0:
            self.seq = c.seq
        self.date = max(self.date, c.date)

    def _drain_seq(self, out: Outcome, now: float) -> None:
        while self._seq_waiting and not self._account_busy:
            self._seq_waiting.sort(key=lambda c: c.seq_start or c.seq)
            c = self._seq_waiting[0]
            start = c.seq_start or c.seq
            if self.seq + 1 < start:
                if self._seq_deadline is None:
                    self._seq_deadline = now + self.gap_timeout
                return
            self._seq_waiting.pop(0)
            if self.seq + 1 > start:
                out.ignored += c.updates
            else:
                self._apply_container(c, out, now)
        self._seq_deadline = None

    def _channel_too_long(self, u: api.types.UpdateChannelTooLong) -> None:
        box = self._channels.setdefault(u.channel_id, _Box(u.pts))
        if box.pts is None:
            box.pts = u.pts
        box.need_difference = True

    @property
    def _account_busy(self) -> bool:
        return not self._started or self._need_state or self._account_in_flight

    def _offer(self, item: _Item, out: Outcome, now: float) -> None:
        box = self._box(item.entry)
        busy = box.in_flight if isinstance(item.entry, int) else self._account_busy
        if busy:
            box.waiting.append(item)  # looked at again once the difference (or state) is in
            return
        if box.pts is None:
            # A channel seen for the first time: its first update is taken as it comes (there is nothing to
            # compare it with); from then on its pts is followed.
            box.pts = item.pts - item.count
        self._try(item, box, out, now)
        self._drain(box, out, now)

    def _try(self, item: _Item, box: _Box, out: Outcome, now: float) -> bool:
        """Apply ``item`` if it is next, drop it if it is old; False if it must wait (a gap)."""
        if box.pts is not None and box.pts + item.count == item.pts:
            box.pts = item.pts
            if item.update is not None:
                out.apply.append(Update(item.update, item.users, item.chats, item.entry, item.pts))
            return True
        if box.pts is not None and box.pts + item.count > item.pts:
            if item.update is not None:
                out.ignored.append(item.update)
            return True
        box.waiting.append(item)
        if box.deadline is None:
            box.deadline = now + self.gap_timeout
        return False

    def _drain(self, box: _Box, out: Outcome, now: float) -> None:
        """Apply what waited and now fits, in pts order; what still does not fit keeps waiting."""
        if box.pts is None:
            return
        pending, box.waiting = sorted(box.waiting, key=lambda i: i.key), []
        for i, item in enumerate(pending):
            if not self._try(item, box, out, now):
                box.waiting += pending[i + 1:]
                return
        box.deadline = None

    @staticmethod
    def _surface(item: _Item, out: Outcome) -> None:
        if item.update is not None:
            out.apply.append(Update(item.update, item.users, item.chats, item.entry, item.pts))

    # -- answers to the calls next_request asked for ------------------------------------------------------

    def answer(self, request: TLFunction[Any], result: Any, now: float) -> Outcome:
        out = Outcome()
        if isinstance(request, api.functions.updates.GetState) and isinstance(result, api.types.updates.State):
            self._account_in_flight = False
            self._need_state = False
            self._need_difference = False
            self._set_state(result)
            if self._reset_pending:
                self._reset_pending = False
                out.apply.append(Reset(None))
            self._account_done(out, now)
        elif isinstance(request, api.functions.updates.GetDifference):
            self._account_in_flight = False
            self._difference(request, result, out, now)
        elif isinstance(request, api.functions.updates.GetChannelDifference) and isinstance(
                request.channel, api.types.InputChannel):
            self._channel_difference(request.channel.channel_id, request.pts, result, out, now)
        out.gap = self.waiting
        return out

    def failed(self, request: TLFunction[Any], message: str, now: float) -> Outcome:
        """The call failed with the rpc_error ``message``. The account's calls stay needed (the caller retries or
        gives up: a 401 means signed out); a channel that cannot be read any more is forgotten."""
        out = Outcome()
        if isinstance(request, api.functions.updates.GetChannelDifference):
            channel = request.channel
            channel_id = channel.channel_id if isinstance(channel, api.types.InputChannel) else None
            box = self._channels.get(channel_id) if channel_id is not None else None
            if box is not None and channel_id is not None:
                box.in_flight = False
                if message in ("PERSISTENT_TIMESTAMP_OUTDATED", "CHANNEL_PRIVATE", "CHANNEL_INVALID"):
                    # Too far behind, left, or banned: reload its history; its next update starts it anew.
                    del self._channels[channel_id]
                    out.apply.append(Reset(channel_id))
        else:
            self._account_in_flight = False
        out.gap = self.waiting
        return out

    def _set_state(self, state: api.types.updates.State) -> None:
        self._common.pts, self._secret.pts, self.date, self.seq = state.pts, state.qts, state.date, state.seq

    def _account_done(self, out: Outcome, now: float) -> None:
        """The account's state is settled: look again at what was held meanwhile."""
        self._last = now
        for box in (self._common, self._secret):
            box.deadline = None
            self._drain(box, out, now)
        self._drain_seq(out, now)

    def _difference(self, request: api.functions.updates.GetDifference, d: Any, out: Outcome, now: float) -> None:
        if isinstance(d, api.types.updates.DifferenceEmpty):
            self._need_difference = False
            self.date, self.seq = d.date, d.seq
        elif isinstance(d, api.types.updates.DifferenceTooLong):
            self._need_difference = False
            self._need_state = True  # then Reset: the application reloads its chats
            self._reset_pending = True
            return
        elif isinstance(d, (api.types.updates.Difference, api.types.updates.DifferenceSlice)):
            state = d.state if isinstance(d, api.types.updates.Difference) else d.intermediate_state
            users, chats = _by_id(d.users), self._learn(d.chats)
            pts_items: list[_Item] = []
            qts_items: list[_Item] = []
            channel_items: list[_Item] = []
            for u in d.other_updates:
                if isinstance(u, api.types.UpdateChannelTooLong):
                    self._channel_too_long(u)
                    continue
                order = ordering(u)
                item = _Item(*order, u, users, chats) if order is not None else None
                if item is None:
                    out.apply.append(Update(u, users, chats))
                elif item.entry == COMMON:
                    pts_items.append(item)
                elif item.entry == QTS:
                    qts_items.append(item)
                else:
                    channel_items.append(item)
            new = [_new_message(m) for m in d.new_messages]
            for item in _fill(COMMON, request.pts, state.pts, pts_items, new, users, chats):
                self._surface(item, out)
            encrypted = [api.types.UpdateNewEncryptedMessage(message=m, qts=0) for m in d.new_encrypted_messages]
            for item in _fill(QTS, request.qts, state.qts, qts_items, encrypted, users, chats):
                self._surface(item, out)
            self._set_state(state)
            self._need_difference = isinstance(d, api.types.updates.DifferenceSlice)
            for item in channel_items:
                self._offer(item, out, now)
        if not self._need_difference:
            self._account_done(out, now)

    def _channel_difference(self, channel_id: int, from_pts: int, d: Any, out: Outcome, now: float) -> None:
        box = self._channels.get(channel_id)
        if box is None:
            return
        box.in_flight = False
        box.need_difference = False
        if isinstance(d, api.types.updates.ChannelDifferenceEmpty):
            box.pts = d.pts
        elif isinstance(d, api.types.updates.ChannelDifferenceTooLong):
            self._learn(d.chats)
            dialog_pts = getattr(d.dialog, "pts", None)
            box.pts = dialog_pts if dialog_pts is not None else box.pts
            box.need_difference = not d.final
            out.apply.append(Reset(channel_id))
        elif isinstance(d, api.types.updates.ChannelDifference):
            users, chats = _by_id(d.users), self._learn(d.chats)
            items: list[_Item] = []
            for u in d.other_updates:
                order = ordering(u)
                if order is None or order[0] != channel_id:
                    out.apply.append(Update(u, users, chats))
                else:
                    items.append(_Item(*order, u, users, chats))
            new = [_new_message(m, channel=True) for m in d.new_messages]
            for item in _fill(channel_id, from_pts, d.pts, items, new, users, chats):
                self._surface(item, out)
            box.pts = d.pts
            box.need_difference = not d.final
        if not box.need_difference:
            box.deadline = None
            self._drain(box, out, now)

    # -- helpers ------------------------------------------------------------------------------------------

    def _box(self, entry: Entry) -> _Box:
        if entry == COMMON:
            return self._common
        if entry == QTS:
            return self._secret
        if not isinstance(entry, int):
            raise ValueError(f"no such update box: {entry!r}")
        return self._channels.setdefault(entry, _Box(None))

    def _boxes(self) -> Iterable[_Box]:
        return itertools.chain((self._common, self._secret), self._channels.values())

    def _entries(self) -> Iterable[tuple[Entry, _Box]]:
        return itertools.chain(((COMMON, self._common), (QTS, self._secret)), self._channels.items())

    def _learn(self, chats: Iterable[api.types.TypeChat]) -> dict[int, api.types.TypeChat]:
        """The chats by id; channels' access hashes are kept (getChannelDifference needs them)."""
        for c in chats:
            access_hash = getattr(c, "access_hash", None)
            if isinstance(c, (api.types.Channel, api.types.ChannelForbidden)) and access_hash is not None and not (
                    isinstance(c, api.types.Channel) and c.min):  # a min channel's hash is not usable
                self._hashes[c.id] = access_hash
        return _by_id(chats)

    def _short(self, s: api.types.UpdateShortMessage | api.types.UpdateShortChatMessage
               ) -> api.types.UpdateNewMessage:
        """The short forms as the updateNewMessage they stand for."""
        peer: api.types.TypePeer
        if isinstance(s, api.types.UpdateShortMessage):
            peer = api.types.PeerUser(user_id=s.user_id)
            sender = self.self_id if s.out else s.user_id
        else:
            peer, sender = api.types.PeerChat(chat_id=s.chat_id), s.from_id
        m = api.types.Message(
            id=s.id, peer_id=peer, date=s.date, message=s.message, out=s.out, mentioned=s.mentioned,
            media_unread=s.media_unread, silent=s.silent, from_id=None if sender is None else api.types.PeerUser(
                user_id=sender), fwd_from=s.fwd_from, via_bot_id=s.via_bot_id, reply_to=s.reply_to,
            entities=s.entities, ttl_period=s.ttl_period)
        return api.types.UpdateNewMessage(message=m, pts=s.pts, pts_count=s.pts_count)

    def _sent(self, s: api.types.UpdateShortSentMessage,
              request: TLFunction[Any] | None) -> api.types.UpdateNewMessage | None:
        """updateShortSentMessage with what the request said: the message this client just sent."""
        if not isinstance(request, (api.functions.messages.SendMessage, api.functions.messages.SendMedia)):
            return None
        peer = _peer(request.peer, self.self_id)
        if peer is None:
            return None
        reply_to = request.reply_to
        header = (api.types.MessageReplyHeader(reply_to_msg_id=reply_to.reply_to_msg_id)
                  if isinstance(reply_to, api.types.InputReplyToMessage) else None)
        m = api.types.Message(
            id=s.id, peer_id=peer, date=s.date, message=request.message, out=True, silent=request.silent,
            from_id=None if self.self_id is None else api.types.PeerUser(user_id=self.self_id),
            media=s.media, entities=s.entities if s.entities is not None else request.entities, reply_to=header,
            ttl_period=s.ttl_period)
        return api.types.UpdateNewMessage(message=m, pts=s.pts, pts_count=s.pts_count)


def ordering(u: Any) -> tuple[Entry, int, int] | None:
    """(entry, pts, pts_count) of an ordered update, or None for one applied as it comes. Generic over the
    schema: an update with ``pts`` is in its channel's sequence when it names a channel (``channel_id``, or its
    message's ``peer_id``), else in the common box; one with ``qts`` is in the secret-chat queue and counts 1."""
    if isinstance(u, api.types.UpdateChannelTooLong):
        return None
    pts = getattr(u, "pts", None)
    if isinstance(pts, int) and pts > 0:
        count = getattr(u, "pts_count", 0) or 0
        channel_id = getattr(u, "channel_id", None)
        peer = getattr(getattr(u, "message", None), "peer_id", None)
        if isinstance(peer, api.types.PeerChannel):
            channel_id = peer.channel_id
        return (channel_id if isinstance(channel_id, int) else COMMON), pts, count
    qts = getattr(u, "qts", None)
    if isinstance(qts, int) and qts > 0:
        return QTS, qts, 1
    return None


def _fill(entry: Entry, start: int, end: int, items: list[_Item], new: Sequence[api.types.TypeUpdate],
          users: Mapping[int, api.types.TypeUser], chats: Mapping[int, api.types.TypeChat]) -> list[_Item]:
    """A difference's updates in pts order. It lists the new messages apart, without their pts; each takes one,
    so the pts in (start, end] the other updates do not cover are theirs, in the order listed. When the counts
    do not match (a server that counts otherwise) the new messages go first, at pts 0."""
    taken: set[int] = set()
    for item in items:
        taken.update(range(item.pts - item.count + 1, item.pts + 1))
    free = [p for p in range(start + 1, end + 1) if p not in taken]
    placed: list[_Item] = []
    if len(free) == len(new):
        for p, u in zip(free, new, strict=True):
            placed.append(_Item(entry, p, 1, _with_pts(u, p), users, chats))
        return sorted(placed + items, key=lambda i: i.pts)
    return [_Item(entry, 0, 0, u, users, chats) for u in new] + sorted(items, key=lambda i: i.pts)


def _with_pts(u: api.types.TypeUpdate, pts: int) -> api.types.TypeUpdate:
    if isinstance(u, api.types.UpdateNewEncryptedMessage):
        return api.types.UpdateNewEncryptedMessage(message=u.message, qts=pts)
    if isinstance(u, api.types.UpdateNewChannelMessage):
        return api.types.UpdateNewChannelMessage(message=u.message, pts=pts, pts_count=1)
    if isinstance(u, api.types.UpdateNewMessage):
        return api.types.UpdateNewMessage(message=u.message, pts=pts, pts_count=1)
    return u


def _new_message(m: api.types.TypeMessage, *, channel: bool = False) -> api.types.TypeUpdate:
    if channel:
        return api.types.UpdateNewChannelMessage(message=m, pts=0, pts_count=0)
    return api.types.UpdateNewMessage(message=m, pts=0, pts_count=0)


def _peer(peer: Any, self_id: int | None) -> api.types.TypePeer | None:
    if isinstance(peer, api.types.InputPeerUser):
        return api.types.PeerUser(user_id=peer.user_id)
    if isinstance(peer, api.types.InputPeerChat):
        return api.types.PeerChat(chat_id=peer.chat_id)
    if isinstance(peer, api.types.InputPeerChannel):
        return api.types.PeerChannel(channel_id=peer.channel_id)
    if isinstance(peer, api.types.InputPeerSelf) and self_id is not None:
        return api.types.PeerUser(user_id=self_id)
    return None


def _by_id(objects: Iterable[Any]) -> dict[int, Any]:
    return {o.id: o for o in objects if isinstance(getattr(o, "id", None), int)}
