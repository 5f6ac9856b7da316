"""Signing in with a phone number, the way every client does it (core.telegram.org/api/auth).

``sign_in_or_up`` is the whole flow for a code the caller already knows (a Telegram test number 99966XYYYY gets
the code X five times, as on Telegram's test servers): auth.sendCode, auth.signIn with the code, and auth.signUp
with the given name when the number has no account yet. ``invoke`` is anything that sends one query and returns
its answer (``Client.invoke``, or a test's hand-made client); an rpc_error is raised as that invoke raises it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mtproto.tl import api
from mtproto.tl.runtime import TLFunction

Invoke = Callable[[TLFunction[Any]], Awaitable[Any]]


async def sign_in_or_up(invoke: Invoke, phone: str, code: str, *, first_name: str,
                        last_name: str = "") -> api.types.User:
    """The signed-in user: an existing account's, or a new one named ``first_name last_name``."""
    sent = await invoke(api.functions.auth.SendCode(phone_number=phone, api_id=1, api_hash="lab",
                                                    settings=api.types.CodeSettings()))
    result = await invoke(api.functions.auth.SignIn(phone_number=phone, phone_code_hash=sent.phone_code_hash,
                                                    phone_code=code))
    if isinstance(result, api.types.auth.AuthorizationSignUpRequired):
        result = await invoke(api.functions.auth.SignUp(phone_number=phone, phone_code_hash=sent.phone_code_hash,
                                                        first_name=first_name, last_name=last_name))
    if not isinstance(result, api.types.auth.Authorization) or not isinstance(result.user, api.types.User):
        raise TypeError(f"signing in {phone} answered {type(result).__name__}")
    return result.user
