"""The server's RSA key: storage, fingerprint, the raw private operation and both paddings of req_DH_params.

Spec: core.telegram.org/mtproto/auth_key, step 2 (resPQ: ``server_public_key_fingerprints``), step 4 and 4.1
(``encrypted_data := RSA_PAD(data, server_public_key)``) and step 5 (req_DH_params). The older padding,
``SHA1(data) + data + random bytes`` to 255 bytes under raw RSA, is not in the current page but is still sent
by common client libraries (Telethon among them), so the server accepts both.

MTProto uses *raw* RSA (no PKCS#1 v1.5 or OAEP from a library): the 256-byte big-endian block is raised to the
exponent directly, and the padding is MTProto's own. Hence the arithmetic here is done on integers with gmpy2
rather than through ``cryptography``'s padded RSA API; ``cryptography`` is used only to generate keys and to
read and write PEM files.

The client side (``rsa_pad_encrypt``, ``rsa_legacy_encrypt``) is here for the tests and the client SDK. Like
everything in mtproto it takes its randomness as a ``randbytes(n) -> bytes`` argument.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha1, sha256

import gmpy2  # type: ignore[import-untyped, unused-ignore]
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

from mtproto.crypto.ige import ige256_decrypt, ige256_encrypt
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

__all__ = [
    "RsaKey",
    "fingerprint",
    "generate_rsa_key",
    "load_private_pem",
    "load_public_pem",
    "private_pem",
    "public_pem_pkcs1",
    "rsa_legacy_encrypt",
    "rsa_legacy_unwrap",
    "rsa_pad_encrypt",
    "rsa_pad_unwrap",
    "rsa_private_raw",
]

RandBytes = Callable[[int], bytes]

RSA_SIZE = 256  # MTProto's RSA blocks are 2048 bits, big-endian, left-padded with zeros
RSA_PAD_MAX_DATA = 144  # auth_key 4.1: "One has to check that data is not longer than 144 bytes"
RSA_PAD_PADDED = 192  # data_with_padding is "precisely 192 bytes"
LEGACY_MAX_DATA = 255 - 20  # SHA1 (20) + data + padding fills 255 bytes


@dataclass(frozen=True)
class RsaKey:
    """An RSA private key as plain integers, with the CRT values the private operation uses.

    ``dp = d mod (p-1)``, ``dq = d mod (q-1)``, ``qinv = q^-1 mod p`` (PKCS#1's names: exponent1, exponent2,
    coefficient). The private parts stay out of ``repr`` so a stray log line cannot leak the key.
    """

    n: int
    e: int
    d: int = field(repr=False)
    p: int = field(repr=False)
    q: int = field(repr=False)
    dp: int = field(repr=False)
    dq: int = field(repr=False)
    qinv: int = field(repr=False)

    def __post_init__(self) -> None:
        # Cheap consistency checks: a key with a wrong CRT value would return garbage for every handshake,
        # which is far harder to diagnose than a refusal to load it.
        if (
            self.p * self.q != self.n
            or self.dp != self.d % (self.p - 1)
            or self.dq != self.d % (self.q - 1)
            or (self.qinv * self.q) % self.p != 1
        ):
            raise LocalProtocolError("inconsistent RSA key: n, p, q, d and the CRT values do not agree")


def _from_cryptography(key: _rsa.RSAPrivateKey) -> RsaKey:
    numbers = key.private_numbers()
    return RsaKey(
        n=numbers.public_numbers.n,
        e=numbers.public_numbers.e,
        d=numbers.d,
        p=numbers.p,
        q=numbers.q,
        dp=numbers.dmp1,
        dq=numbers.dmq1,
        qinv=numbers.iqmp,
    )


def _to_cryptography(key: RsaKey) -> _rsa.RSAPrivateKey:
    public = _rsa.RSAPublicNumbers(key.e, key.n)
    return _rsa.RSAPrivateNumbers(key.p, key.q, key.d, key.dp, key.dq, key.qinv, public).private_key()


def generate_rsa_key(bits: int = 2048) -> RsaKey:
    """Generate a fresh RSA key with public exponent 65537.

    The one place in mtproto that draws randomness itself: prime generation happens inside ``cryptography``
    (OpenSSL), seeded from the operating system's CSPRNG. That is deliberate; a key generator that took
    caller-supplied bytes would be an easy way to make weak keys. MTProto needs ``bits=2048``; other sizes load
    and store fine but are refused by the handshake operations below.
    """
    try:
        return _from_cryptography(_rsa.generate_private_key(public_exponent=65537, key_size=bits))
    except ValueError as exc:  # cryptography refuses sizes below 1024 bits
        raise LocalProtocolError(f"cannot generate a {bits}-bit RSA key: {exc}") from exc


def load_private_pem(data: bytes) -> RsaKey:
    """Read an unencrypted PEM private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY")."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # TypeError: the file is password-protected
        raise LocalProtocolError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, _rsa.RSAPrivateKey):
        raise LocalProtocolError(f"not an RSA key: {type(key).__name__}")
    return _from_cryptography(key)


def private_pem(key: RsaKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM; protecting the file on disk is the deployment's job."""
    return _to_cryptography(key).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem_pkcs1(key: RsaKey) -> bytes:
    """The public key in the ``-----BEGIN RSA PUBLIC KEY-----`` (PKCS#1) form client libraries embed."""
    return (
        _to_cryptography(key)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    )


def load_public_pem(data: bytes) -> tuple[int, int]:
    """Read a PEM public key (PKCS#1 "RSA PUBLIC KEY" or X.509 "PUBLIC KEY") and return ``(n, e)``."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise LocalProtocolError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, _rsa.RSAPublicKey):
        raise LocalProtocolError(f"not an RSA key: {type(key).__name__}")
    numbers = key.public_numbers()
    return numbers.n, numbers.e


def _tl_bytes(value: bytes) -> bytes:
    # TL `bytes`/`string` (core.telegram.org/mtproto/serialize): a 1-byte length below 254, else 0xFE and a
    # 3-byte little-endian length; then the data, zero-padded to a multiple of 4. Inlined here so the
    # fingerprint does not depend on the TL package.
    head = bytes((len(value),)) if len(value) < 254 else b"\xfe" + len(value).to_bytes(3, "little")
    body = head + value
    return body + bytes(-len(body) % 4)


def _minimal_be(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def fingerprint(n: int, e: int) -> int:
    """The key fingerprint of resPQ's ``server_public_key_fingerprints`` and req_DH_params.

    The 64 lower-order bits of SHA1 of the bare TL object ``rsa_public_key n:bytes e:bytes`` (no constructor
    id; n and e as minimal big-endian byte strings), returned as the signed int64 that a TL ``long`` carries:
    the last 8 digest bytes read little-endian. So ``fingerprint(n, e).to_bytes(8, "little", signed=True)``
    are the bytes on the wire.
    """
    digest = sha1(_tl_bytes(_minimal_be(n)) + _tl_bytes(_minimal_be(e))).digest()
    return int.from_bytes(digest[-8:], "little", signed=True)


def _check_modulus(n: int) -> None:
    if n.bit_length() != RSA_SIZE * 8:
        raise LocalProtocolError(f"MTProto needs a 2048-bit RSA modulus, this one has {n.bit_length()} bits")


def _reject(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad req_DH_params encrypted_data: {reason}", TransportErrorCode.NOT_FOUND)


def rsa_private_raw(key: RsaKey, encrypted: bytes) -> bytes:
    """Raw RSA decryption of req_DH_params' ``encrypted_data``: 256 bytes in, 256 bytes out (big-endian).

    Computed with the Chinese remainder theorem (two half-size exponentiations, about 4x faster than one
    full one). ``gmpy2.powmod_sec`` is GMP's constant-time ``mpz_powm_sec``: the ciphertext is chosen by anyone
    who can open a TCP connection, and the key lives for years, which is the setting of the classic remote
    timing attacks on RSA-CRT; its cost over plain ``powmod`` is about 13%. The result is checked by
    re-encrypting it (one cheap exponentiation with e = 65537) so a computation fault cannot hand a wrong
    CRT half, and with it the factorisation of n, to the client.
    """
    _check_modulus(key.n)
    if len(encrypted) != RSA_SIZE:
        raise _reject(f"{len(encrypted)} bytes, expected {RSA_SIZE}")
    c = int.from_bytes(encrypted, "big")
    if c >= key.n:
        raise _reject("the value is not below the modulus")
    m1 = gmpy2.powmod_sec(c, key.dp, key.p)
    m2 = gmpy2.powmod_sec(c, key.dq, key.q)
    m = int(m2 + ((key.qinv * (m1 - m2)) % key.p) * key.q)
    if gmpy2.powmod(m, key.e, key.n) != c:
        raise LocalProtocolError("RSA-CRT self-check failed: the key or the arithmetic is broken")
    return m.to_bytes(RSA_SIZE, "big")


def rsa_pad_unwrap(raw: bytes) -> bytes | None:
    """Undo RSA_PAD (auth_key 4.1) on a raw-decrypted block; return the 192-byte data_with_padding or None.

    raw = temp_key_xor (32) + aes_encrypted (224). The server reverses the client's steps::

        temp_key          = temp_key_xor XOR SHA256(aes_encrypted)
        data_with_hash    = AES256_IGE_decrypt(aes_encrypted, temp_key, iv = 32 zero bytes)
        data_with_padding = reverse(data_with_hash[0:192])
        valid iff data_with_hash[192:224] == SHA256(temp_key + data_with_padding)

    ``None`` (never an exception) for a block that is not RSA_PAD, so the caller can try the legacy padding
    next and then fail both the same way. The hash comparison is constant-time.
    """
    if len(raw) != RSA_SIZE:
        raise LocalProtocolError(f"rsa_pad_unwrap takes the {RSA_SIZE}-byte output of rsa_private_raw")
    temp_key_xor, aes_encrypted = raw[:32], raw[32:]
    temp_key = bytes(a ^ b for a, b in zip(temp_key_xor, sha256(aes_encrypted).digest(), strict=True))
    data_with_hash = ige256_decrypt(aes_encrypted, temp_key, bytes(32))
    data_with_padding = data_with_hash[RSA_PAD_PADDED - 1 :: -1]
    expected = sha256(temp_key + data_with_padding).digest()
    if not hmac.compare_digest(data_with_hash[RSA_PAD_PADDED:], expected):
        return None
    return data_with_padding


def rsa_legacy_unwrap(raw: bytes) -> tuple[bytes, bytes] | None:
    """Split a raw-decrypted legacy block into ``(sha1_of_data, data_with_padding)``, or None.

    The legacy block is the 255-byte ``SHA1(data) + data + random padding`` under raw RSA, so its 256-byte
    decryption starts with a zero byte. Where ``data`` ends is only known once the TL inside is parsed, so the
    caller (the handshake) parses ``data_with_padding``, then checks ``hmac.compare_digest(sha1(data).digest(),
    sha1_of_data)``.
    """
    if len(raw) != RSA_SIZE:
        raise LocalProtocolError(f"rsa_legacy_unwrap takes the {RSA_SIZE}-byte output of rsa_private_raw")
    if raw[0] != 0:
        return None
    return raw[1:21], raw[21:]


def _random(randbytes: RandBytes, n: int) -> bytes:
    out = randbytes(n)
    if len(out) != n:
        raise LocalProtocolError(f"randbytes({n}) returned {len(out)} bytes")
    return out


def rsa_pad_encrypt(n: int, e: int, data: bytes, randbytes: RandBytes) -> bytes:
    """Client side of RSA_PAD (auth_key 4.1): the 256-byte ``encrypted_data`` of req_DH_params.

    Follows the spec step by step: pad ``data`` (at most 144 bytes) with random bytes to 192, reverse it, draw
    a random 32-byte temp_key, append SHA256(temp_key + data_with_padding), AES-256-IGE it under temp_key with a
    zero IV, prepend temp_key XOR SHA256(ciphertext); if that 256-byte number is not below n, draw a new
    temp_key and repeat (the padding is kept); finally raise it to e modulo n.
    """
    _check_modulus(n)
    if len(data) > RSA_PAD_MAX_DATA:
        raise LocalProtocolError(f"RSA_PAD data must be at most {RSA_PAD_MAX_DATA} bytes, got {len(data)}")
    data_with_padding = data + _random(randbytes, RSA_PAD_PADDED - len(data))
    data_pad_reversed = data_with_padding[::-1]
    while True:
        temp_key = _random(randbytes, 32)
        data_with_hash = data_pad_reversed + sha256(temp_key + data_with_padding).digest()
        aes_encrypted = ige256_encrypt(data_with_hash, temp_key, bytes(32))
        temp_key_xor = bytes(a ^ b for a, b in zip(temp_key, sha256(aes_encrypted).digest(), strict=True))
        value = int.from_bytes(temp_key_xor + aes_encrypted, "big")
        if value < n:
            return int(gmpy2.powmod(value, e, n)).to_bytes(RSA_SIZE, "big")


def rsa_legacy_encrypt(n: int, e: int, data: bytes, randbytes: RandBytes) -> bytes:
    """The older padding still sent by common clients: raw RSA of ``SHA1(data) + data + random`` (255 bytes).

    255 bytes is always below a 2048-bit modulus, so no retry is needed. ``data`` is at most 235 bytes.
    """
    _check_modulus(n)
    if len(data) > LEGACY_MAX_DATA:
        raise LocalProtocolError(f"legacy RSA data must be at most {LEGACY_MAX_DATA} bytes, got {len(data)}")
    block = sha1(data).digest() + data + _random(randbytes, LEGACY_MAX_DATA - len(data))
    return int(gmpy2.powmod(int.from_bytes(block, "big"), e, n)).to_bytes(RSA_SIZE, "big")
