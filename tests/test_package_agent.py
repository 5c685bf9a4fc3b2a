"""`POST /update` end to end: a real agent (TLS on 127.0.0.1) and a real runner
receive packages built in the test; the answers are DESIGN's status codes."""

from __future__ import annotations

from pathlib import Path

import httpx

from autotel.config import Config
from autotel.package.pending import read_pending
from tests.agent_support import RunningAgent, login, running_agent
from tests.package_support import craft, sha, signature_b64, tree

APP = {"portal/main.py": b"print('1.2.0')\n"}


def post_update(
    agent: RunningAgent,
    client: httpx.Client,
    token: str,
    package: Path,
    version: str = "1.2.0",
    signature: str | None = None,
) -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/zip",
        "X-Update-Version": version,
        "X-Manifest-Signature": signature if signature is not None else signature_b64(package),
    }
    return client.post("/update", content=package.read_bytes(), headers=headers)


def test_update_answers(bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    key = admin_keys[0]
    good = craft(tmp_path / "good.zip", key, APP)
    state = bare_site.state
    with running_agent(bare_site, migrate=False) as agent, agent.client() as client:
        token = login(agent, client, key)

        answer = post_update(agent, client, token, good)
        assert (answer.status_code, answer.json()) == (200, {"status": "queued"})
        pending = read_pending(state, verify_sha256=True)
        assert pending is not None and pending.sha256 == sha(good.read_bytes())
        accepted = tree(state.pending)

        again = post_update(agent, client, token, good)
        assert (again.status_code, again.json()) == (200, {"status": "queued"})
        assert tree(state.pending) == accepted

        refusals = [
            (craft(tmp_path / "a.zip", key, {**APP, "x.py": b"x"}), "1.2.0", 409, "same_version"),
            (
                craft(tmp_path / "b.zip", key, APP, manifest={"version": "1.0.0"}),
                "1.0.0",
                409,
                "same_version",
            ),
            (
                craft(tmp_path / "c.zip", key, APP, manifest={"version": "0.9.0"}),
                "0.9.0",
                409,
                "same_version",
            ),
            (
                craft(
                    tmp_path / "d.zip",
                    key,
                    APP,
                    manifest={"version": "1.3.0"},
                    entries={"files/portal/main.py": b"print('evil!')\n"},
                ),
                "1.3.0",
                400,
                "invalid_sig",
            ),
            (
                craft(
                    tmp_path / "e.zip", key, {"license.dat": b"x"}, manifest={"version": "1.3.0"}
                ),
                "1.3.0",
                400,
                "invalid_package",
            ),
            (
                craft(
                    tmp_path / "f.zip", key, {"../../evil.py": b"x"}, manifest={"version": "1.3.0"}
                ),
                "1.3.0",
                400,
                "invalid_package",
            ),
            (
                craft(
                    tmp_path / "g.zip", key, APP, manifest={"version": "1.3.0", "product": "other"}
                ),
                "1.3.0",
                400,
                "invalid_package",
            ),
            (
                craft(
                    tmp_path / "h.zip",
                    key,
                    {"big.bin": bytes(32 << 20)},
                    manifest={"version": "1.3.0"},
                ),
                "1.3.0",
                400,
                "invalid_package",
            ),
        ]
        for package, version, status, word in refusals:
            answer = post_update(agent, client, token, package, version)
            assert answer.status_code == status, (package.name, answer.text)
            assert answer.json()["status"] == word, (package.name, answer.text)
            if status == 400:
                assert answer.json()["error"]
            assert not answer.json().get("error", "").startswith("step "), answer.text
            assert tree(state.pending) == accepted, package.name

        header = post_update(agent, client, token, good, signature=signature_b64(refusals[0][0]))
        assert (header.status_code, header.json()["status"]) == (400, "invalid_sig")

        newer = craft(tmp_path / "n.zip", key, APP, manifest={"version": "1.3.0"})
        answer = post_update(agent, client, token, newer, "1.3.0")
        assert (answer.status_code, answer.json()) == (200, {"status": "queued"})
        assert sorted(tree(state.pending)) == ["meta.json", "update_v1.3.0.zip"]
    assert not [p for p in state.incoming.iterdir()]
