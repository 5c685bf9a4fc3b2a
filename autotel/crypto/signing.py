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
    """Load the admin's key without OpenSSL's full consistency check of the RSA numbers.

    That check takes ~110 ms for a 3072-bit key (most of an idle push). It is not
    lost: every signature made here is verified against the key's public half
    before it is used (`sign`, `sign_deterministic`), which a damaged key fails.

    Raises: ConfigError when the file is missing or is not an unencrypted RSA private key.
    """
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
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
    """RSA-PSS with a random 32-byte salt, checked before it is returned.

    Raises: ConfigError when the signature does not verify (a damaged key).
    """
    signature = key.sign(
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH),
        hashes.SHA256(),
    )
    return _checked(key, message, signature)


def sign_deterministic(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """RSA-PSS (salt 32) whose salt is derived from the key and message, not drawn at random.

    Publish uses it so the same inputs give a byte-identical package.

    Raises: ConfigError when the signature does not verify (a damaged key).
    """
    return _checked(key, message, sign_pss_deterministic(key, message))


def _checked(key: rsa.RSAPrivateKey, message: bytes, signature: bytes) -> bytes:
    """Verify our own signature: a damaged key or a fault never ships a bad one."""
    if not verify([key.public_key()], message, signature):
        raise ConfigError(
            "the private key made a signature its own public key does not verify; the key "
            "file is damaged: restore it from a backup"
        )
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
