"""What the gateway answers itself and where it sends the rest (services/gateway/router.py, pure functions)."""

from __future__ import annotations

import pytest

from mtproto.tl import api, mt
from mtproto.tl.runtime import Reader
from services.common.rpc import error_label
from services.gateway import router
from services.gateway.router import Answer, KeyState

SIGNED_IN = KeyState(user_id=42)
ANONYMOUS = KeyState()
REVOKED = KeyState(revoked=True)
UNKNOWN = KeyState(known=False, user_id=42)  # the auth service could not be asked; 42 is a stale copy


def edge(query: bytes, key: KeyState, *, routed: bool = True) -> Answer | None:
    return router.answer_at_edge(query, 1234, key, routed=routed, dc_id=2, port=4430, now=1_700_000_000)


def err(answer: Answer | None) -> tuple[int, str] | None:
    return None if answer is None else (answer.error_code, answer.error_message)


@pytest.mark.parametrize(
    ("name", "service"),
    [("auth.sendCode", "auth"), ("account.resetAuthorization", "auth"), ("users.getFullUser", "auth"),
     ("help.getConfig", "auth"), ("updates.getState", "updates"), ("updates.getDifference", "updates"),
     ("updates.getChannelDifference", "updates"), ("messages.sendMessage", "messages"),
     ("channels.joinChannel", "messages"), ("contacts.importContacts", "messages"), ("ping", None),
     ("0x12345678", None)],
)
def test_methods_route_by_namespace_with_exceptions_by_name(name: str, service: str | None) -> None:
    assert router.service_for(name) == service


def test_a_method_falls_back_while_its_owner_is_not_in_the_stack() -> None:
    assert router.service_for("updates.getState", {"auth", "messages", "updates"}) == "updates"
    assert router.service_for("updates.getState", {"auth", "messages"}) == "messages"
    assert router.service_for("updates.getState", {"auth"}) == "auth"  # a gateway started with auth alone
    assert router.service_for("updates.getDifference", {"auth", "messages"}) == "auth"
    assert router.service_for("messages.sendMessage", {"auth"}) == "messages"  # no fallback: 500 at forward


def test_a_ping_is_answered_at_the_edge_even_before_sign_in() -> None:
    answer = edge(mt.functions.Ping(ping_id=9).to_bytes(), ANONYMOUS)
    assert answer is not None and answer.result is not None
    assert Reader(answer.result).read_object() == mt.types.Pong(msg_id=1234, ping_id=9)


def test_methods_that_need_a_signed_in_key_are_refused_before_routing() -> None:
    me = api.functions.users.GetUsers(id=[api.types.InputUserSelf()]).to_bytes()
    assert err(edge(me, ANONYMOUS)) == (401, "AUTH_KEY_UNREGISTERED")
    assert err(edge(me, REVOKED)) == (401, "SESSION_REVOKED")
    assert err(edge(me, UNKNOWN)) == (500, "SERVICE_UNAVAILABLE")  # never trust a copy nobody can confirm
    assert edge(me, SIGNED_IN) is None  # -> the auth service
    # auth.* and help.* are for keys that are not signed in yet: routed whatever the key's state
    send_code = api.functions.auth.SendCode(phone_number="1", api_id=1, api_hash="", settings=api.types.CodeSettings())
    for key in (ANONYMOUS, REVOKED, UNKNOWN):
        assert edge(send_code.to_bytes(), key) is None
        assert edge(api.functions.help.GetConfig().to_bytes(), key) is None


def test_an_unbound_temporary_key_may_only_bind_and_fetch_the_config() -> None:
    # core.telegram.org/api/pfs: "An unbound temp_auth_key_id may only be used with" these three methods.
    unbound = KeyState(unbound_temporary=True)
    bind = api.functions.auth.BindTempAuthKey(perm_auth_key_id=1, nonce=2, expires_at=3, encrypted_message=b"")
    assert edge(bind.to_bytes(), unbound) is None  # -> the auth service, which checks the binding
    assert edge(api.functions.help.GetConfig().to_bytes(), unbound) is None
    assert edge(mt.functions.Ping(ping_id=1).to_bytes(), unbound) is not None  # pong: a session-level message
    send_code = api.functions.auth.SendCode(phone_number="1", api_id=1, api_hash="", settings=api.types.CodeSettings())
    me = api.functions.users.GetUsers(id=[api.types.InputUserSelf()]).to_bytes()
    for query in (send_code.to_bytes(), me, api.functions.auth.LogOut().to_bytes()):
        assert err(edge(query, unbound)) == (401, "AUTH_KEY_PERM_EMPTY")
    # once bound, a temporary key is whatever its permanent key is: here, signed in
    assert edge(me, KeyState(user_id=42)) is None
    assert "auth.bindTempAuthKey" in router.CHANGES_OWN_KEY  # its own record changes: the cached copy is dropped


def test_unknown_methods_name_themselves_and_come_after_the_401() -> None:
    unknown = (0x12345678).to_bytes(4, "little") + bytes(8)
    assert err(edge(unknown, SIGNED_IN)) == (400, "INPUT_METHOD_INVALID_0X12345678")
    assert err(edge(unknown, ANONYMOUS)) == (401, "AUTH_KEY_UNREGISTERED")  # a client learns nothing before sign-in
    assert err(edge(b"\x01", SIGNED_IN)) == (400, "INPUT_METHOD_INVALID")


def test_a_gateway_alone_answers_get_config_and_nothing_else() -> None:
    answer = edge(api.functions.help.GetConfig().to_bytes(), ANONYMOUS, routed=False)
    assert answer is not None and answer.result is not None
    config = Reader(answer.result).read_object()
    assert isinstance(config, api.types.Config) and (config.this_dc, config.dc_options[0].port) == (2, 4430)
    send_code = api.functions.auth.SendCode(phone_number="1", api_id=1, api_hash="", settings=api.types.CodeSettings())
    assert err(edge(send_code.to_bytes(), ANONYMOUS, routed=False)) == (400, "INPUT_METHOD_INVALID_AUTH_SENDCODE")


def test_error_labels_are_a_bounded_set() -> None:
    assert error_label("FLOOD_WAIT_37") == error_label("FLOOD_WAIT_5") == "FLOOD_WAIT_X"
