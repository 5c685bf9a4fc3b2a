"""RSA-PSS signatures interoperate with the openssl command line, both ways, and rotate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import (
    load_private_key,
    load_public_key,
    load_public_keys,
    sign,
    sign_deterministic,
    verify,
)
from autotel.errors import ConfigError

MESSAGE = b"autotel-auth-v1\n2026-02-22T10:00:00Z\nnonce\n" + bytes(range(256))


@pytest.fixture(scope="module")
def second_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("second"))


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], check=False, capture_output=True, timeout=60)


def test_openssl_verifies_our_signature(tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    data, sig = tmp_path / "data.bin", tmp_path / "sig.bin"
    data.write_bytes(MESSAGE)
    sig.write_bytes(sign(load_private_key(admin_keys[0]), MESSAGE))
    for saltlen in ("auto", "digest"):  # we sign with a 32-byte salt, what `digest` expects
        result = openssl("dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                         f"rsa_pss_saltlen:{saltlen}", "-verify", admin_keys[1], "-signature", sig, data)
        assert result.returncode == 0 and b"Verified OK" in result.stdout, result
    data.write_bytes(MESSAGE + b"x")
    tampered = openssl("dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                       "rsa_pss_saltlen:auto", "-verify", admin_keys[1], "-signature", sig, data)
    assert tampered.returncode == 1


@pytest.mark.parametrize("saltlen", ["digest", "max"])
def test_we_verify_an_openssl_signature(tmp_path: Path, admin_keys: tuple[Path, Path],
                                        saltlen: str) -> None:
    data, sig = tmp_path / "data.bin", tmp_path / "sig.bin"
    data.write_bytes(MESSAGE)
    result = openssl("dgst", "-sha256", "-sign", admin_keys[0], "-sigopt", "rsa_padding_mode:pss",
                     "-sigopt", f"rsa_pss_saltlen:{saltlen}", "-out", sig, data)
    assert result.returncode == 0, result
    keys = [load_public_key(admin_keys[1])]
    assert verify(keys, MESSAGE, sig.read_bytes())
    assert not verify(keys, MESSAGE + b"x", sig.read_bytes())
    signature = sig.read_bytes()
    assert not verify(keys, MESSAGE, signature[:-1] + bytes([signature[-1] ^ 1]))  # one bit off


def test_any_of_several_trusted_keys_verifies_during_a_rotation(
        admin_keys: tuple[Path, Path], second_keys: tuple[Path, Path]) -> None:
    old = sign(load_private_key(admin_keys[0]), MESSAGE)
    new = sign(load_private_key(second_keys[0]), MESSAGE)
    both = load_public_keys([admin_keys[1], second_keys[1]])
    assert verify(both, MESSAGE, old) and verify(both, MESSAGE, new)
    assert verify(load_public_keys([second_keys[1]]), MESSAGE, new)
    assert not verify(load_public_keys([second_keys[1]]), MESSAGE, old)  # the old key, retired
    assert not verify([], MESSAGE, old)


def test_signatures_are_salted(admin_keys: tuple[Path, Path]) -> None:
    key = load_private_key(admin_keys[0])
    assert sign(key, MESSAGE) != sign(key, MESSAGE)


def test_deterministic_signatures_repeat_and_keep_the_32_byte_salt(
        tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    key = load_private_key(admin_keys[0])
    first = sign_deterministic(key, MESSAGE)
    assert first == sign_deterministic(key, MESSAGE)
    assert first != sign_deterministic(key, MESSAGE + b"x")
    data, sig = tmp_path / "data.bin", tmp_path / "sig.bin"
    data.write_bytes(MESSAGE)
    sig.write_bytes(first)
    for saltlen in ("digest", "32", "auto"):  # a salt of exactly 32 bytes, as DESIGN.md says
        result = openssl("dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt",
                         f"rsa_pss_saltlen:{saltlen}", "-verify", admin_keys[1], "-signature", sig, data)
        assert result.returncode == 0 and b"Verified OK" in result.stdout, result


@pytest.mark.parametrize(("content", "message"), [
    (None, "public key file not found"),
    (b"not a key", "not a PEM RSA public key"),
])
def test_a_bad_public_key_file_is_a_config_error(tmp_path: Path, content: bytes | None,
                                                  message: str) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_public_key(path)


def test_a_public_key_is_not_a_private_key(admin_keys: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="not a PEM RSA private key"):
        load_private_key(admin_keys[1])


def test_a_damaged_key_never_ships_a_bad_signature(tmp_path: Path,
                                                   admin_keys: tuple[Path, Path]) -> None:
    """Keys load without OpenSSL's slow consistency check; the self-check takes its place."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = load_private_key(admin_keys[0]).private_numbers()
    damaged = rsa.RSAPrivateNumbers(numbers.p, numbers.q, numbers.d, numbers.dmp1 + 2,
                                    numbers.dmq1, numbers.iqmp, numbers.public_numbers)
    path = tmp_path / "damaged.pem"
    path.write_bytes(damaged.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key = load_private_key(path)
    with pytest.raises(ConfigError, match="damaged"):
        sign_deterministic(key, MESSAGE)
    public = [load_public_key(admin_keys[1])]
    assert verify(public, MESSAGE, sign(key, MESSAGE))  # OpenSSL falls back; never a bad one
