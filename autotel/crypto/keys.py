"""The admin's RSA key pair (`autotel keygen`)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from autotel.errors import ConfigError
from autotel.fsutil import atomic_write_bytes

KEY_BITS = 3072


def generate_keypair(out_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `private.pem` (mode 0600) and `public.pem` into `out_dir`.

    Raises:
        ConfigError: a private key is already there and `overwrite` is false; losing
            it would lock the admin out of every site that trusts it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / "private.pem", out_dir / "public.pem"
    if private_path.exists() and not overwrite:
        raise ConfigError(f"{private_path} already exists; sites trust it. Use another --out or --force")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write_bytes(private_path, private_pem, mode=0o600)
    atomic_write_bytes(public_path, public_pem, mode=0o644)
    return private_path, public_path
