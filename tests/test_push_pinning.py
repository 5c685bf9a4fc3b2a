"""Pinning decisions and the known_agents.json store (no network)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from autotel.admin.pinning import (
    KnownAgents,
    PinAction,
    PinnedCert,
    address_of,
    client_mismatch,
    decide,
    normalize_fingerprint,
)
from autotel.crypto.tls import agent_common_name, fingerprint_pem, make_certificate
from autotel.errors import CertificateChangedError, ConfigError

OLD = "a" * 64
NEW = "b" * 64
PINNED = PinnedCert(sha256=OLD, pem="-")


@pytest.mark.parametrize(
    ("pinned", "presented", "accept", "expected"),
    [
        (None, NEW, None, PinAction.FIRST_CONTACT),
        (None, NEW, NEW, PinAction.FIRST_CONTACT),
        (PINNED, OLD, None, PinAction.TRUSTED),
        (PINNED, OLD, NEW, PinAction.TRUSTED),  # an --accept-cert for a change that did not happen
        (PINNED, NEW, NEW, PinAction.REPINNED),
    ],
)
def test_decide_allows(
    pinned: PinnedCert | None, presented: str, accept: str | None, expected: PinAction
) -> None:
    assert decide("h:1", pinned, presented, accept) is expected


@pytest.mark.parametrize(
    ("pinned", "accept"),
    [(PINNED, None), (PINNED, "c" * 64), (None, "c" * 64)],
)
def test_decide_refuses_a_change_not_accepted_exactly(
    pinned: PinnedCert | None, accept: str | None
) -> None:
    with pytest.raises(CertificateChangedError) as caught:
        decide("h:1", pinned, NEW, accept)
    assert NEW in str(caught.value)
    if pinned is not None:
        assert OLD in str(caught.value)


def test_changed_message_says_how_to_accept() -> None:
    with pytest.raises(CertificateChangedError, match=f"--accept-cert {NEW}") as caught:
        decide("h:1", PINNED, NEW, None)
    assert "autotel status shows it" in str(caught.value)  # where the admin checks it


@pytest.mark.parametrize(
    "text",
    [NEW, NEW.upper(), "SHA256:" + NEW, ":".join(NEW[i : i + 2] for i in range(0, 64, 2)).upper()],
)
def test_normalize_fingerprint_forms(text: str) -> None:
    assert normalize_fingerprint(text) == NEW


@pytest.mark.parametrize("text", ["", "abc", "g" * 64, NEW + "b"])
def test_normalize_fingerprint_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        normalize_fingerprint(text)


def test_client_mismatch_compares_the_site_named_by_an_autotel_certificate() -> None:
    site_a = make_certificate(agent_common_name("plant_A"), ["localhost"], ["127.0.0.1"])[0].decode()
    foreign = make_certificate("someone else", ["localhost"], ["127.0.0.1"])[0].decode()
    assert client_mismatch("h:1", site_a, "plant_A") is None
    assert client_mismatch("h:1", foreign, "plant_B") is None  # not made by autotel: no site named
    warning = client_mismatch("h:1", site_a, "plant_B")
    assert warning is not None and "'plant_A'" in warning and "'plant_B'" in warning
    assert "--client-id" in warning


def test_address_of_brackets_ipv6() -> None:
    assert address_of("10.0.0.5", 9876) == "10.0.0.5:9876"
    assert address_of("::1", 9876) == "[::1]:9876"


def test_store_pins_and_repins_without_temp_files(tmp_path: Path) -> None:
    incoming = tmp_path / ".incoming"
    incoming.mkdir()
    store = KnownAgents(tmp_path / "known_agents.json", incoming)
    first, _ = make_certificate("a", ["localhost"], ["127.0.0.1"])
    second, _ = make_certificate("a", ["localhost"], ["127.0.0.1"])
    assert store.get("h:1") is None
    store.pin("h:1", first.decode())
    store.pin("h:2", second.decode())
    assert store.get("h:1") == PinnedCert(fingerprint_pem(first), first.decode())
    store.pin("h:1", second.decode())
    repinned, other = store.get("h:1"), store.get("h:2")
    assert repinned is not None and other is not None
    assert repinned.sha256 == other.sha256 == fingerprint_pem(second)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".incoming", "known_agents.json", "known_agents.lock"]
    assert list(incoming.iterdir()) == []


@pytest.mark.parametrize("content", ["{not json", "[]", '{"h:1": {"sha256": 1}}'])
def test_store_refuses_a_damaged_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "known_agents.json").write_text(content)
    with pytest.raises(ConfigError, match="known_agents.json"):
        KnownAgents(tmp_path / "known_agents.json", tmp_path).get("h:1")


def test_store_file_is_plain_json(tmp_path: Path) -> None:
    pem, _ = make_certificate("a", [], ["127.0.0.1"])
    KnownAgents(tmp_path / "known_agents.json", tmp_path).pin("h:1", pem.decode())
    entry = json.loads((tmp_path / "known_agents.json").read_text())["h:1"]
    assert entry["sha256"] == fingerprint_pem(pem) and entry["pem"] == pem.decode()


def test_concurrent_pins_of_different_agents_all_survive(tmp_path: Path) -> None:
    """Two pushes of different clients pinning at once must not lose each other's pin."""
    pem, _ = make_certificate("a", [], ["127.0.0.1"])
    store = KnownAgents(tmp_path / "known_agents.json", tmp_path / ".incoming")

    def pin_many(prefix: str) -> None:
        for n in range(25):
            store.pin(f"{prefix}:{n}", pem.decode())

    threads = [threading.Thread(target=pin_many, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    known = json.loads((tmp_path / "known_agents.json").read_text())
    assert sorted(known) == sorted(f"{p}:{n}" for p in "ab" for n in range(25))
