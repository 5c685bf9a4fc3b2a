"""RSA-PSS with a deterministic 32-byte salt (RFC 8017, EMSA-PSS with SHA-256/MGF1-SHA-256).

`cryptography` always draws the PSS salt at random, so two signatures of the same
manifest differ and two publishes of the same inputs could never give the same
package bytes. Here the salt is an HMAC of the message under a key derived from
the private key: unpredictable to anyone without the key, yet the same for the
same message. The result is an ordinary PSS signature with salt length 32, which
`openssl dgst -sigopt rsa_pss_saltlen:digest` (or `auto`) verifies.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import rsa

HASH_LEN = 32
SALT_LEN = 32


def sign_pss_deterministic(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    mod_bits = n.bit_length()
    m_hash = hashlib.sha256(message).digest()
    salt_key = hashlib.sha256(b"autotel-pss-salt-v1" + _i2osp(numbers.d, (mod_bits + 7) // 8)).digest()
    salt = hmac.new(salt_key, m_hash, hashlib.sha256).digest()[:SALT_LEN]
    encoded = _emsa_pss_encode(m_hash, salt, mod_bits - 1)
    m = int.from_bytes(encoded, "big")
    s1 = pow(m, numbers.dmp1, numbers.p)
    s2 = pow(m, numbers.dmq1, numbers.q)
    s = s2 + numbers.q * ((numbers.iqmp * (s1 - s2)) % numbers.p)
    return _i2osp(s, (mod_bits + 7) // 8)


def _emsa_pss_encode(m_hash: bytes, salt: bytes, em_bits: int) -> bytes:
    em_len = (em_bits + 7) // 8
    h = hashlib.sha256(b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - len(salt) - HASH_LEN - 2) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, _mgf1(h, len(db)), strict=True))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return bytes(masked) + h + b"\xbc"


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b"".join(
        hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        for counter in range((length + HASH_LEN - 1) // HASH_LEN)
    )
    return out[:length]


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")
