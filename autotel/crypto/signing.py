"""RSA-PSS signatures: the one place autotel signs and verifies.

Signing uses SHA-256, MGF1-SHA-256 and a 32-byte salt (what `openssl dgst -sigopt
rsa_pss_saltlen:digest` makes); verifying accepts any salt length (`auto`), so
signatures made by other tools interoperate.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from autotel.crypto.pss import sign_pss_deterministic
from autotel.errors import ConfigError

SALT_LENGTH = 32


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Raises: ConfigError when the file is missing or is not an unencrypted RSA private key."""
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"{path}: not a PEM RSA private key without a password ({e})") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{path}: expected an RSA private key, found {type(key).__name__}")
    return key


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    """Raises: ConfigError when the file is missing or is not a PEM RSA public key."""
    return public_key_from_pem(_read_key_file(path, "public key"), str(path))


def public_key_from_pem(data: bytes, source: str = "public key") -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"{source}: not a PEM RSA public key ({e})") from e
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{source}: expected an RSA public key, found {type(key).__name__}")
    return key


def load_public_keys(paths: Iterable[Path]) -> list[rsa.RSAPublicKey]:
    return [load_public_key(p) for p in paths]


def sign(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    return key.sign(
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH),
        hashes.SHA256(),
    )


def sign_deterministic(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """RSA-PSS (salt 32) whose salt is derived from the key and message, not drawn at random.

    Publish uses it so the same inputs give a byte-identical package. The signature
    is checked before it is returned, so a fault in the arithmetic never ships.
    """
    signature = sign_pss_deterministic(key, message)
    if not verify([key.public_key()], message, signature):
        raise RuntimeError("deterministic RSA-PSS signature failed its own verification")
    return signature


def verify(keys: Iterable[rsa.RSAPublicKey], message: bytes, signature: bytes) -> bool:
    """True if any of `keys` (several during a key rotation) signed `message`."""
    for key in keys:
        try:
            key.verify(
                signature,
                message,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                hashes.SHA256(),
            )
        except InvalidSignature:
            continue
        return True
    return False


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: {what} file not found; check the path (`autotel keygen` makes a key pair)") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what}: {e.strerror}") from e
