"""The session file: an auth key kept between runs, so a client does not create a new one each time.

A JSON object, written atomically (a new file, fsynced, then renamed over the old one) with owner-only
permissions (0600): whoever reads the auth key can read and send the account's messages, exactly as the
gateway's own key files are protected. Fields:

    {"format": "mtlab-client-session", "version": 1, "dc_id": 2,
     "auth_key": "<256 bytes, base64>", "auth_key_id": "<8 bytes, hex: for humans and logs>",
     "server_salt": <signed 64-bit int>, "time_offset": <seconds: server clock - local clock>,
     "updates": {"user_id": 42, "pts": 17, "qts": 0, "date": 1700000000, "seq": 0,
                 "channels": {"<channel id>": [<pts>, <access hash>]}}}

``updates`` (optional) is the update state as far as the application had read the ordered stream
(``Client.ordered_updates``), for the user it belongs to: a restarted client asks ``updates.getDifference`` from
there and gets exactly what it had not read. It is written when the client closes; after a crash the file holds
the state of the last clean close, and what came after is handed out again.

What is not kept: the session id. A session id belongs with the msg_id and seq_no counters of the session
(core.telegram.org/mtproto/description, "Session"); ``mtproto.session.ClientSession`` starts those at zero and
has no way to resume them, and a gateway that still holds the old session refuses a restarted seq_no with
bad_msg_notification 32 (too low) until the counter catches up (16 per round trip). So each connection opens a
fresh session under the kept key, as Telethon and Pyrogram do; the server says ``new_session_created``.

These functions block on the disk; the client calls them through ``anyio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mtlab.client.errors import SessionFileError
from mtlab.client.update_state import SavedState
from mtproto.errors import LocalProtocolError
from mtproto.session import AuthKey

FORMAT = "mtlab-client-session"
VERSION = 1


@dataclass(frozen=True, slots=True)
class StoredSession:
    dc_id: int
    auth_key: AuthKey
    server_salt: int
    time_offset: int
    updates: tuple[int, SavedState] | None = None  # (user id, the state as far as the application had read)


def load(path: Path) -> StoredSession | None:
    """The stored session, or ``None`` when there is no file. A file that is not one raises SessionFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SessionFileError(f"{path}: cannot read: {exc}") from exc
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise SessionFileError(f"{path}: not a {FORMAT} file of version {VERSION}")
        key = AuthKey.from_bytes(base64.b64decode(data["auth_key"], validate=True))
        stored = data.get("updates")
        updates = None if stored is None else (int(stored["user_id"]), SavedState.from_json(stored))
        return StoredSession(int(data["dc_id"]), key, int(data["server_salt"]), int(data["time_offset"]), updates)
    except SessionFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SessionFileError(f"{path}: malformed session file: {exc!r}") from exc
    except LocalProtocolError as exc:  # AuthKey refuses a key that is not 256 bytes
        raise SessionFileError(f"{path}: unusable auth key: {exc}") from exc


def save(path: Path, session: StoredSession, unique: str) -> None:
    """Write ``session`` to ``path`` atomically, readable by the owner only.

    ``unique`` names the temporary file (two writers never share one); it is renamed over ``path`` once its
    contents are on disk, so a crash leaves either the old file or the new one, never half of either.
    """
    data = {
        "format": FORMAT,
        "version": VERSION,
        "dc_id": session.dc_id,
        "auth_key": base64.b64encode(session.auth_key.key).decode("ascii"),
        "auth_key_id": session.auth_key.id.hex(),
        "server_salt": session.server_salt,
        "time_offset": session.time_offset,
    }
    if session.updates is not None:
        user_id, state = session.updates
        data["updates"] = {"user_id": user_id, **state.to_json()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{unique}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def delete(path: Path) -> None:
    """Forget the stored key (the server no longer knows it)."""
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
