"""MTProto 2.0 cryptography, sans-IO: pure functions from bytes and ints to bytes and ints.

Nothing here opens a socket, reads the clock or draws randomness (the one exception is RSA key generation,
see rsa.py). Where randomness is needed, the caller passes the bytes or a ``randbytes(n) -> bytes`` function.

Where each piece of the specification lives:

============================================  ==========================================================
core.telegram.org page, section               module: names
============================================  ==========================================================
/mtproto/description, "Defining AES Key and   ige: ``ige256_encrypt``, ``ige256_decrypt`` (cryptg, fast);
Initialization Vector" (AES-256-IGE)          ``ige256_encrypt_reference``, ``ige256_decrypt_reference``
/mtproto/description, "Message Key",          kdf: ``msg_key_large``, ``msg_key``, ``message_key_iv``,
"Key Identifier", "Defining AES Key..."       ``auth_key_id``
/mtproto/description, "Protocol description"  message: ``encrypt_message``, ``decrypt_message``
+ /mtproto/security_guidelines (msg_key)
/mtproto/auth_key step 2 (resPQ)              pq: ``generate_pq``; rsa: ``fingerprint``
/mtproto/auth_key step 3 (client factors pq)  pq: ``factorize_pq``, ``factorize_pq_reference``
/mtproto/auth_key step 4.1 (RSA_PAD) and the  rsa: ``rsa_private_raw``, ``rsa_pad_unwrap``,
legacy SHA1 padding of common clients         ``rsa_legacy_unwrap``; client side ``rsa_pad_encrypt``,
                                              ``rsa_legacy_encrypt``
/mtproto/auth_key step 6 (encrypted_answer)   kdf: ``tmp_aes_key_iv``
/mtproto/auth_key steps 6-8 + security        dh: ``DEFAULT_DH_PRIME``, ``DEFAULT_G``,
guidelines (DH checks)                        ``check_dh_params``, ``validate_dh_config``,
                                              ``check_dh_value``, ``dh_value_ok``, ``dh_secret``,
                                              ``dh_public``, ``dh_shared``
/mtproto/auth_key step 9 (dh_gen_*)           kdf: ``auth_key_aux_hash``, ``new_nonce_hash``,
                                              ``server_salt``
/mtproto/mtproto-transports, "Quick ack"      kdf: ``quick_ack_token``
/mtproto/description_v1 (MTProto 1.0, only    kdf: ``msg_key_v1``, ``message_key_iv_v1``
for auth.bindTempAuthKey's binding message)   (the message itself: ``mtproto.pfs``)
/mtproto/mtproto-transports, "Transport       ctr: ``AesCtr``
obfuscation" (AES-256-CTR)
============================================  ==========================================================

The server's RSA key itself (``RsaKey``, ``generate_rsa_key``, PEM loading and writing) is in rsa.py.
"""

from mtproto.crypto.ctr import AesCtr
from mtproto.crypto.dh import (
    DEFAULT_DH_PRIME,
    DEFAULT_G,
    check_dh_params,
    check_dh_value,
    dh_public,
    dh_secret,
    dh_shared,
    dh_value_ok,
    validate_dh_config,
)
from mtproto.crypto.ige import (
    ige256_decrypt,
    ige256_decrypt_reference,
    ige256_encrypt,
    ige256_encrypt_reference,
)
from mtproto.crypto.kdf import (
    auth_key_aux_hash,
    auth_key_id,
    message_key_iv,
    message_key_iv_v1,
    msg_key,
    msg_key_large,
    msg_key_v1,
    new_nonce_hash,
    quick_ack_token,
    server_salt,
    tmp_aes_key_iv,
)
from mtproto.crypto.message import decrypt_message, encrypt_message
from mtproto.crypto.pq import factorize_pq, factorize_pq_reference, generate_pq
from mtproto.crypto.rsa import (
    RsaKey,
    fingerprint,
    generate_rsa_key,
    load_private_pem,
    load_public_pem,
    private_pem,
    public_pem_pkcs1,
    rsa_legacy_encrypt,
    rsa_legacy_unwrap,
    rsa_pad_encrypt,
    rsa_pad_unwrap,
    rsa_private_raw,
)

__all__ = [
    "DEFAULT_DH_PRIME",
    "DEFAULT_G",
    "AesCtr",
    "RsaKey",
    "auth_key_aux_hash",
    "auth_key_id",
    "check_dh_params",
    "check_dh_value",
    "decrypt_message",
    "dh_public",
    "dh_secret",
    "dh_shared",
    "dh_value_ok",
    "encrypt_message",
    "factorize_pq",
    "factorize_pq_reference",
    "fingerprint",
    "generate_pq",
    "generate_rsa_key",
    "ige256_decrypt",
    "ige256_decrypt_reference",
    "ige256_encrypt",
    "ige256_encrypt_reference",
    "load_private_pem",
    "load_public_pem",
    "message_key_iv",
    "message_key_iv_v1",
    "msg_key",
    "msg_key_large",
    "msg_key_v1",
    "new_nonce_hash",
    "private_pem",
    "public_pem_pkcs1",
    "quick_ack_token",
    "rsa_legacy_encrypt",
    "rsa_legacy_unwrap",
    "rsa_pad_encrypt",
    "rsa_pad_unwrap",
    "rsa_private_raw",
    "server_salt",
    "tmp_aes_key_iv",
    "validate_dh_config",
]
