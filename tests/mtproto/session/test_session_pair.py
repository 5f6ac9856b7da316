"""The session layer, both roles, joined directly: what a client and the gateway see of each other."""

from __future__ import annotations

import struct

import pytest

from mtproto.errors import RemoteProtocolError, TransportErrorCode
from mtproto.session import AuthKey, BadMsgCode, ClientSession, Plain, ServerSession, open_message, seal
from mtproto.session.client import RequestFailed, Result, RpcErrorReceived, SessionCreated, UpdateReceived
from mtproto.session.common import MSG_CONTAINER_ID, Inner, pack_container, parse_container
from mtproto.session.server import (
    Acked,
    DestroySessionRequested,
    DisconnectAfter,
    Rejected,
    RpcCall,
    RpcDropped,
)
from mtproto.tl import api, gzip_pack, mt
from mtproto.tl.runtime import Reader
from tests.helpers.session import NOW, Pair, drbg


def salted(pair: Pair) -> None:
    """Bring the client to the server's current salt the way real clients do: salt 0, bad_server_salt."""
    pair.client.invoke(mt.functions.Ping(ping_id=1))
    pair.up()
    pair.down()
    pair.up()
    pair.down()


def test_first_message_gets_new_session_created_and_bad_server_salt_then_resend_with_new_id(pair: Pair) -> None:
    request = pair.client.invoke(api.functions.help.GetConfig())
    events = pair.up()
    first_id = request.msg_id
    assert [type(e) for e in events] == [Rejected]
    assert events[0] == Rejected(first_id, BadMsgCode.BAD_SERVER_SALT)

    client_events = pair.down()
    assert any(isinstance(e, SessionCreated) and e.first_msg_id == first_id for e in client_events)
    assert pair.client.salt == pair.salts.current(pair.key.id, NOW)

    events = pair.up()  # the session resent it by itself
    calls = [e for e in events if isinstance(e, RpcCall)]
    assert len(calls) == 1
    assert request.msg_id != first_id and request.msg_id > first_id  # never the same msg_id twice
    assert calls[0].msg_id == request.msg_id
    assert Reader(calls[0].body).read_object() == api.functions.help.GetConfig()


def test_rpc_result_reaches_the_request_and_is_decoded_by_its_type(pair: Pair) -> None:
    salted(pair)
    request = pair.client.invoke(api.functions.InvokeWithLayer(layer=229, query=api.functions.help.GetConfig()))
    [call] = [e for e in pair.up() if isinstance(e, RpcCall)]
    config = api.types.Config(
        date=1, expires=2, test_mode=True, this_dc=2, dc_options=[], dc_txt_domain_name="", chat_size_max=1,
        megagroup_size_max=1, forwarded_count_max=1, online_update_period_ms=1, offline_blur_timeout_ms=1,
        offline_idle_timeout_ms=1, online_cloud_timeout_ms=1, notify_cloud_delay_ms=1, notify_default_delay_ms=1,
        push_chat_period_ms=1, push_chat_limit=1, edit_time_limit=1, revoke_time_limit=1, revoke_pm_time_limit=1,
        rating_e_decay=1, stickers_recent_limit=1, channels_read_media_period=1, call_receive_timeout_ms=1,
        call_ring_timeout_ms=1, call_connect_timeout_ms=1, call_packet_timeout_ms=1, me_url_prefix="",
        caption_length_max=1, message_length_max=1, webfile_dc_id=2,
    )
    pair.server.send_result(call.msg_id, gzip_pack(config.to_bytes()))  # a gzip_packed answer is unwrapped
    [result] = [e for e in pair.down() if isinstance(e, Result)]
    assert result.request is request
    assert result.value == config


def test_rpc_error_is_reported_for_its_request(pair: Pair) -> None:
    salted(pair)
    request = pair.client.invoke(api.functions.help.GetConfig())
    [call] = [e for e in pair.up() if isinstance(e, RpcCall)]
    pair.server.send_error(call.msg_id, 420, "FLOOD_WAIT_3")
    assert [e for e in pair.down() if not isinstance(e, Result)] == [RpcErrorReceived(request, 420, "FLOOD_WAIT_3")]


def test_several_queries_travel_in_one_container_and_acks_ride_along(pair: Pair) -> None:
    salted(pair)
    requests = [pair.client.invoke(mt.functions.Ping(ping_id=i)) for i in range(5)]
    payloads = pair.client.data_to_send(NOW)
    assert len(payloads) == 1
    msg = open_message(pair.key, payloads[0], from_client=True)
    assert struct.unpack_from("<I", msg.body)[0] == MSG_CONTAINER_ID
    pair.server.receive(msg, NOW)
    out = pair.server.data_to_send(NOW)
    body = open_message(pair.key, out[0], from_client=False).body
    inner_ids = [struct.unpack_from("<I", body, 8 + 16)[0]]
    assert struct.unpack_from("<I", body)[0] == MSG_CONTAINER_ID
    assert inner_ids == [mt.types.MsgsAck.CONSTRUCTOR_ID]  # the ack of the five pings comes first
    events = []
    for payload in out:
        events += pair.client.receive(payload, NOW)
    pongs = {e.request.query.ping_id: e.value for e in events if isinstance(e, Result)}
    assert pongs == {r.query.ping_id: mt.types.Pong(msg_id=r.msg_id, ping_id=r.query.ping_id) for r in requests}


def test_server_acks_queries_and_client_acks_server_messages(pair: Pair) -> None:
    salted(pair)
    pair.client.invoke(api.functions.help.GetConfig())
    assert len([e for e in pair.up() if isinstance(e, RpcCall)]) == 1
    assert pair.server.pending_acks >= 1
    pair.server.send_update(api.types.Null().to_bytes())
    events = pair.down()
    assert UpdateReceived(api.types.Null()) in events
    acked = [e for e in pair.up(flush_acks=True) if isinstance(e, Acked)]
    assert acked and acked[0].msg_ids  # the client acknowledged the server's content-related messages


def test_a_replayed_payload_is_dropped(pair: Pair) -> None:
    salted(pair)
    pair.client.invoke(api.functions.help.GetConfig())
    [payload] = pair.client.data_to_send(NOW)
    first = pair.server.receive(open_message(pair.key, payload, from_client=True), NOW)
    again = pair.server.receive(open_message(pair.key, payload, from_client=True), NOW)
    assert len([e for e in first if isinstance(e, RpcCall)]) == 1
    assert again == []


@pytest.mark.parametrize(("skew", "code"), [(-400, BadMsgCode.MSG_ID_TOO_LOW), (+60, BadMsgCode.MSG_ID_TOO_HIGH)])
def test_client_clock_skew_is_corrected_from_the_notification(pair: Pair, skew: int, code: BadMsgCode) -> None:
    # A new client whose clock is off by ``skew`` seconds (its first message travels alone, not in a container).
    salt = pair.salts.current(pair.key.id, NOW)
    pair.client = ClientSession(pair.key, session_id=77, salt=salt, randbytes=drbg(b"skew"), time_offset=skew)
    request = pair.client.invoke(api.functions.help.GetConfig())
    assert [e for e in pair.up() if isinstance(e, Rejected)] == [Rejected(request.msg_id, code)]
    pair.down()
    assert abs(pair.client.time_offset) <= 1
    assert pair.client.counters.time_corrections == 1
    assert [e.msg_id for e in pair.up() if isinstance(e, RpcCall)] == [request.msg_id]


def raw(pair: Pair, msg_id: int, seq_no: int, body: bytes, salt: int | None = None) -> list[object]:
    salt = pair.salts.current(pair.key.id, NOW) if salt is None else salt
    payload = seal(pair.key, Plain(salt, 77, msg_id, seq_no, body), drbg(b"x"), from_client=True)
    return pair.server.receive(open_message(pair.key, payload, from_client=True), NOW)


def mid(offset: int) -> int:
    return (int(NOW) << 32) + offset * 4


PING = mt.functions.Ping(ping_id=5).to_bytes()
ACK = mt.types.MsgsAck(msg_ids=[1]).to_bytes()
QUERY = api.functions.help.GetConfig().to_bytes()


@pytest.mark.parametrize(
    ("msg_id", "seq_no", "body", "code"),
    [
        (mid(1) + 1, 1, PING, BadMsgCode.MSG_ID_BAD_LOW_BITS),
        (mid(1), 2, QUERY, BadMsgCode.SEQ_NO_EXPECTED_ODD),  # an API query must be content-related
        (mid(1), 1, ACK, BadMsgCode.SEQ_NO_EXPECTED_EVEN),  # an ack never is
    ],
)
def test_bad_msg_notification_codes(pair: Pair, msg_id: int, seq_no: int, body: bytes, code: BadMsgCode) -> None:
    assert Rejected(msg_id, code) in raw(pair, msg_id, seq_no, body)
    answer = open_message(pair.key, pair.server.data_to_send(NOW)[0], from_client=False)
    notices = _bodies(answer.body)
    bad = [Reader(b).read_object() for b in notices if b[:4] == mt.types.BadMsgNotification._ID_BYTES]
    assert bad == [mt.types.BadMsgNotification(bad_msg_id=msg_id, bad_msg_seqno=seq_no, error_code=code)]


def _bodies(body: bytes) -> list[bytes]:
    if body[:4] != struct.pack("<I", MSG_CONTAINER_ID):
        return [body]
    return [m.body for m in parse_container(body, 2**63 - 1)]


def test_seq_no_order_against_neighbouring_ids(pair: Pair) -> None:
    assert not [e for e in raw(pair, mid(10), 5, PING) if isinstance(e, Rejected)]
    # a later message with a lower content seq_no, and an earlier one with a higher seq_no
    assert Rejected(mid(11), BadMsgCode.SEQ_NO_TOO_LOW) in raw(pair, mid(11), 3, PING)
    assert Rejected(mid(9), BadMsgCode.SEQ_NO_TOO_HIGH) in raw(pair, mid(9), 7, PING)
    assert Rejected(mid(12), BadMsgCode.SEQ_NO_TOO_LOW) in raw(pair, mid(12), 5, PING)  # equal and odd


def test_invalid_containers_are_refused_with_64(pair: Pair) -> None:
    nested = pack_container([Inner(mid(1), 1, pack_container([Inner(mid(0), 1, PING)]))])
    assert Rejected(mid(2), BadMsgCode.INVALID_CONTAINER) in raw(pair, mid(2), 0, nested)
    not_below = pack_container([Inner(mid(9), 1, PING)])
    assert Rejected(mid(5), BadMsgCode.INVALID_CONTAINER) in raw(pair, mid(5), 0, not_below)
    too_many = pack_container([Inner(mid(i), 2 * i + 1, PING) for i in range(20, 1045)])
    assert Rejected(mid(2000), BadMsgCode.INVALID_CONTAINER) in raw(pair, mid(2000), 0, too_many)
    truncated = pack_container([Inner(mid(3000), 1, PING)])[:-4]
    assert Rejected(mid(3001), BadMsgCode.INVALID_CONTAINER) in raw(pair, mid(3001), 0, truncated)
    # a container reusing a known msg_id
    raw(pair, mid(4000), 1, PING)
    assert Rejected(mid(4000), BadMsgCode.CONTAINER_MSG_ID_REUSED) in raw(pair, mid(4000), 0, not_below)


def test_salt_rotation_with_grace(pair: Pair) -> None:
    period = pair.salts.period
    start = (int(NOW) // period + 1) * period  # the start of a period
    old = pair.salts.current(pair.key.id, start - 1)
    new = pair.salts.current(pair.key.id, start)
    assert old != new
    assert pair.salts.is_valid(pair.key.id, old, start + pair.salts.grace - 1)
    assert not pair.salts.is_valid(pair.key.id, old, start + pair.salts.grace)
    future = pair.salts.future(pair.key.id, start, 3)
    assert future[0][2] == new
    assert future[0][:2] == (start, start + pair.salts.period + pair.salts.grace)


def test_wrong_salt_gets_bad_server_salt_with_the_current_one(pair: Pair) -> None:
    events = raw(pair, mid(1), 1, PING, salt=1234)
    assert Rejected(mid(1), BadMsgCode.BAD_SERVER_SALT) in events
    answer = open_message(pair.key, pair.server.data_to_send(NOW)[0], from_client=False)
    [bad] = [Reader(b).read_object() for b in _bodies(answer.body) if b[:4] == mt.types.BadServerSalt._ID_BYTES]
    assert bad.new_server_salt == pair.salts.current(pair.key.id, NOW)


def test_service_messages_answered_by_the_session(pair: Pair) -> None:
    salted(pair)
    c = pair.client
    ping = c.invoke(mt.functions.PingDelayDisconnect(ping_id=9, disconnect_delay=75))
    salts = c.invoke(mt.functions.GetFutureSalts(num=3))
    drop = c.invoke(mt.functions.RpcDropAnswer(req_msg_id=123))
    destroy = c.invoke(mt.functions.DestroySession(session_id=555))
    events = pair.up()
    assert DisconnectAfter(75) in events
    assert RpcDropped(123) in events
    assert DestroySessionRequested(destroy.msg_id, 555) in events
    pair.server.answer_destroy_session(destroy.msg_id, 555, existed=False)
    results = {e.request.msg_id: e.value for e in pair.down() if isinstance(e, Result)}
    assert results[ping.msg_id] == mt.types.Pong(msg_id=ping.msg_id, ping_id=9)
    assert [s.salt for s in results[salts.msg_id].salts] == [s for _, _, s in pair.salts.future(pair.key.id, NOW, 3)]
    assert results[drop.msg_id] == mt.types.RpcAnswerUnknown()
    assert results[destroy.msg_id] == mt.types.DestroySessionNone(session_id=555)


def test_msg_resend_req_resends_under_a_new_id(pair: Pair) -> None:
    salted(pair)
    pair.server.send_update(api.types.Null().to_bytes())
    [payload] = pair.server.data_to_send(NOW)
    first = open_message(pair.key, payload, from_client=False)
    raw(pair, mid(50), 1001, mt.types.MsgResendReq(msg_ids=[first.msg_id]).to_bytes())  # seq above salted()
    again = [open_message(pair.key, p, from_client=False) for p in pair.server.data_to_send(NOW)]
    bodies = [b for m in again for b in _bodies(m.body)]
    assert api.types.Null().to_bytes() in bodies
    assert all(m.msg_id != first.msg_id for m in again)


def test_unacked_answers_kept_for_resending_are_bounded_in_bytes(pair: Pair) -> None:
    """Answers of a megabyte (file chunks) the client has not acked yet are not all kept: the oldest go once the
    session keeps more than RESEND_BYTES, and a resend request for one gets its state instead."""
    salted(pair)
    chunk = api.types.upload.File(type=api.types.storage.FilePartial(), mtime=0, bytes=bytes(512 * 1024)).to_bytes()
    ids = []
    for _ in range(4):
        pair.server.send_update(chunk)
        ids += [open_message(pair.key, p, from_client=False).msg_id for p in pair.server.data_to_send(NOW)]
    raw(pair, mid(50), 1001, mt.types.MsgResendReq(msg_ids=[ids[0]]).to_bytes())
    answers = [Reader(b).read_object() for p in pair.server.data_to_send(NOW)
               for b in _bodies(open_message(pair.key, p, from_client=False).body)]
    assert any(isinstance(a, mt.types.MsgsStateInfo) for a in answers)  # the first chunk was not kept
    assert not any(isinstance(a, api.types.upload.File) for a in answers)
    raw(pair, mid(51), 1003, mt.types.MsgResendReq(msg_ids=[ids[-1]]).to_bytes())
    again = [Reader(b).read_object() for p in pair.server.data_to_send(NOW)
             for b in _bodies(open_message(pair.key, p, from_client=False).body)]
    assert any(isinstance(a, api.types.upload.File) for a in again)  # the newest one is


def test_gzip_packed_query_is_unwrapped(pair: Pair) -> None:
    body = gzip_pack(api.functions.help.GetConfig().to_bytes())
    [call] = [e for e in raw(pair, mid(1), 1, body) if isinstance(e, RpcCall)]
    assert call.body == api.functions.help.GetConfig().to_bytes()


def test_unrecoverable_notification_fails_the_request(pair: Pair) -> None:
    salted(pair)
    request = pair.client.invoke(api.functions.help.GetConfig())
    pair.client.data_to_send(NOW)
    notice = mt.types.BadMsgNotification(bad_msg_id=request.msg_id, bad_msg_seqno=1, error_code=64)
    pair.server.send_update(notice.to_bytes())
    assert RequestFailed(request, 64) in pair.down()


def test_decryption_failures_are_uniform(pair: Pair) -> None:
    payload = seal(pair.key, Plain(1, 77, mid(1), 1, PING), drbg(b"y"), from_client=True)
    other = AuthKey.from_bytes(bytes(range(256)))
    cases = [
        payload[:-16],
        payload[:30] + bytes([payload[30] ^ 1]) + payload[31:],
        payload[:-1] + bytes([payload[-1] ^ 0x80]),
        b"\0" * len(payload),
    ]
    errors = []
    for bad in cases:
        with pytest.raises(RemoteProtocolError) as info:
            open_message(pair.key, bad, from_client=True)
        errors.append((type(info.value), info.value.transport_error))
    with pytest.raises(RemoteProtocolError) as info:
        open_message(other, payload, from_client=True)
    errors.append((type(info.value), info.value.transport_error))
    with pytest.raises(RemoteProtocolError) as info:
        open_message(pair.key, payload, from_client=False)  # the wrong direction
    errors.append((type(info.value), info.value.transport_error))
    assert set(errors) == {(RemoteProtocolError, TransportErrorCode.NOT_FOUND)}


def test_bad_length_or_padding_after_a_valid_msg_key_fails_the_same_way(pair: Pair) -> None:
    from mtproto.crypto.message import encrypt_message

    header = struct.Struct("<qqqii")
    for length, padding in [(8, 4), (6, 14), (8, 1040), (9999, 16)]:
        plaintext = header.pack(1, 77, mid(1), 1, length) + bytes(8) + bytes(padding)
        plaintext += bytes(-len(plaintext) % 16)
        payload = encrypt_message(pair.key.key, plaintext, from_client=True)
        with pytest.raises(RemoteProtocolError) as info:
            open_message(pair.key, payload, from_client=True)
        assert type(info.value) is RemoteProtocolError
        assert info.value.transport_error == TransportErrorCode.NOT_FOUND


def test_client_rejects_a_message_for_another_session(pair: Pair) -> None:
    server = ServerSession(pair.key, 78, salts=pair.salts, randbytes=drbg(b"z"))
    server.send_update(api.types.Null().to_bytes())
    [payload] = server.data_to_send(NOW)
    with pytest.raises(RemoteProtocolError):
        pair.client.receive(payload, NOW)


def test_msg_ids_are_strictly_increasing_and_well_formed(pair: Pair) -> None:
    client = ClientSession(pair.key, session_id=1, salt=0, randbytes=drbg(b"w"))
    for i in range(300):
        client.invoke(mt.functions.Ping(ping_id=i))
    ids = []
    for payload in client.data_to_send(NOW):
        msg = open_message(pair.key, payload, from_client=True)
        inner = parse_container(msg.body, msg.msg_id)  # raises unless each inner id is below the container's
        ids += [m.msg_id for m in inner] + [msg.msg_id]
    assert len(ids) == 300 + 1  # one container
    assert [m for m in ids[:-1]] == sorted(set(ids[:-1]))
    server_ids = []
    for _ in range(50):
        pair.server.send_update(api.types.Null().to_bytes())
        server_ids += [open_message(pair.key, p, from_client=False).msg_id for p in pair.server.data_to_send(NOW)]
    assert all(i % 4 == 0 for i in ids)
    assert all(i % 4 == 3 for i in server_ids)  # not responses
    assert server_ids == sorted(set(server_ids))


SERVICE_WITH_EVEN_SEQ = [
    mt.functions.Ping(ping_id=1),
    mt.functions.PingDelayDisconnect(ping_id=1, disconnect_delay=75),
    mt.functions.GetFutureSalts(num=1),
    mt.types.MsgsStateReq(msg_ids=[mid(0)]),
    mt.functions.RpcDropAnswer(req_msg_id=mid(0)),
    mt.types.HttpWait(max_delay=0, wait_after=0, max_wait=0),
]


@pytest.mark.parametrize("query", SERVICE_WITH_EVEN_SEQ, ids=lambda q: q.TL_NAME)
def test_service_messages_may_carry_an_even_seq_no_as_tdlib_sends_them(pair: Pair, query: object) -> None:
    events = raw(pair, mid(1), 0, query.to_bytes())  # type: ignore[attr-defined]
    assert not [e for e in events if isinstance(e, Rejected)]
    assert pair.server.pending_acks == 0  # not marked content-related, so not acked


def test_pong_and_future_salts_are_not_content_related(pair: Pair) -> None:
    raw(pair, mid(1), 1, PING)
    raw(pair, mid(2), 3, mt.functions.GetFutureSalts(num=1).to_bytes())
    answer = open_message(pair.key, pair.server.data_to_send(NOW)[0], from_client=False)
    inner = parse_container(answer.body, answer.msg_id)
    seqs = {Reader(m.body).read_object().TL_NAME: m.seq_no for m in inner}
    assert seqs["pong"] % 2 == 0 and seqs["future_salts"] % 2 == 0
    assert seqs["new_session_created"] % 2 == 1  # this one must be acknowledged


def test_msgs_state_info_is_a_plain_answer_with_the_spec_status_bytes(pair: Pair) -> None:
    raw(pair, mid(10), 1, PING)
    raw(pair, mid(11), 2, ACK)
    asked = [mid(10), mid(11), mid(5), (int(NOW) - 400) << 32, (int(NOW) + 60) << 32]
    raw(pair, mid(20), 3, mt.types.MsgsStateReq(msg_ids=asked).to_bytes())
    answers = [Reader(b).read_object() for p in pair.server.data_to_send(NOW)
               for b in _bodies(open_message(pair.key, p, from_client=False).body)]
    [info] = [a for a in answers if isinstance(a, mt.types.MsgsStateInfo)]  # not wrapped in rpc_result
    assert info.req_msg_id == mid(20)
    # received (content), received (+16: no ack needed), not received within range, too old, too new
    assert list(info.info) == [4, 4 | 16, 2, 1, 3]


def test_msg_resend_req_for_something_forgotten_gets_the_state_instead(pair: Pair) -> None:
    raw(pair, mid(1), 1, mt.types.MsgResendReq(msg_ids=[mid(7) + 1]).to_bytes())
    answers = [Reader(b).read_object() for p in pair.server.data_to_send(NOW)
               for b in _bodies(open_message(pair.key, p, from_client=False).body)]
    assert [list(a.info) for a in answers if isinstance(a, mt.types.MsgsStateInfo)] == [[2]]


def test_an_old_message_may_come_again_inside_a_newer_container(pair: Pair) -> None:
    old = (int(NOW) - 350) << 32  # beyond the 300 s window on its own
    alone = raw(pair, old, 1, QUERY)
    assert Rejected(old, BadMsgCode.MSG_ID_TOO_LOW) in alone
    container = pack_container([Inner(old, 3, QUERY)])
    events = raw(pair, mid(5), 4, container)
    assert [e.msg_id for e in events if isinstance(e, RpcCall)] == [old]


def test_the_client_ignores_a_salt_for_a_message_it_never_sent(pair: Pair) -> None:
    salted(pair)
    salt = pair.client.salt
    pair.server.send_update(
        mt.types.BadServerSalt(bad_msg_id=12345 << 2, bad_msg_seqno=1, error_code=48, new_server_salt=99).to_bytes()
    )
    pair.down()
    assert pair.client.salt == salt


def test_a_forgotten_request_is_not_sent_and_its_late_answer_is_ignored(pair: Pair) -> None:
    salted(pair)
    queued = pair.client.invoke(mt.functions.Ping(ping_id=1))
    pair.client.forget(queued)
    assert pair.client.data_to_send(NOW) == []  # never left
    sent = pair.client.invoke(mt.functions.Ping(ping_id=2))
    pair.up()
    pair.client.forget(sent)
    assert not [e for e in pair.down() if isinstance(e, Result)]  # the pong arrives and is dropped
