"""A download the link cut goes on where it broke, at the next push.

Real agent, real TLS, real TCP relay on 127.0.0.1 that cuts the stream
(`tests.push_support.Relay`); the agent's own `Range`/`If-Range` handling is also
asked directly over HTTPS.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from autotel.admin.push import push
from autotel.admin.session import Timeouts
from autotel.admin.storage import ClientStorage
from autotel.config import Config
from autotel.crypto.keys import generate_keypair
from autotel.errors import TransferError
from tests.agent_support import login, running_agent, settle_archives
from tests.foundation_support import assert_one_line_error
from tests.push_support import (
    CLIENT,
    Relay,
    archived_sensors,
    busy,
    insert_rows,
    push_request,
    run_push_cli,
)

TIMEOUTS = Timeouts(connect_s=5, stall_s=2.0, wait_s=30)
ROWS = 60_000


def sessions(config: Config) -> list[dict[str, Any]]:
    lines = config.state.sessions.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def cut_push(tmp_path: Path, keys: tuple[Path, Path], relay: Relay, storage: str = "data") -> None:
    """A push whose export breaks a third of the way into the archive."""
    relay.arm(cut_after=300_000)
    with pytest.raises(TransferError, match="export"):
        push(push_request(tmp_path, keys, relay.port, timeouts=TIMEOUTS,
                          storage=tmp_path / storage))
    assert relay.broke.is_set()
    relay.arm()


def test_a_cut_download_goes_on_where_it_broke(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS))  # pins, cursor
        cursor = (tmp_path / "data" / CLIENT / "cursor.json").read_text()
        insert_rows(busy_site, ROWS)
        cut_push(tmp_path, admin_keys, relay)
        kept = ClientStorage(tmp_path / "data", CLIENT).partial.stat().st_size
        assert kept > 100_000
        assert (tmp_path / "data" / CLIENT / "cursor.json").read_text() == cursor
        assert [p.name for p in (tmp_path / "data" / CLIENT).iterdir()] == ["cursor.json"]

        insert_rows(busy_site, 10, start=ROWS)  # arrives with the push after
        notices: list[str] = []
        relay.arm()
        resumed = push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS),
                       notices.append)
        sent_again = relay.downstream
        last = sessions(busy_site)[-1]
        after = push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS))

    assert resumed.export.records == ROWS and after.export.records == 10
    assert any("resuming the download the link cut" in n for n in notices), notices
    assert last["status"] == "ok" and last["resumed_from"] == kept
    assert sent_again < resumed.export.size - kept + 100_000  # the rest, not the whole again
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(f"s{i}" for i in range(ROWS + 10))
    assert sorted(p.name for p in (tmp_path / "data" / ".incoming").iterdir()) == []


def test_a_cut_download_the_site_no_longer_has_is_exported_anew(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS))
        insert_rows(busy_site, ROWS)
        cut_push(tmp_path, admin_keys, relay)
        for archive in busy_site.state.exports.glob("*.jsonl.gz"):
            archive.unlink()  # as if a newer export had superseded it
        notices: list[str] = []
        again = push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS),
                     notices.append)
    assert again.export.records == ROWS
    assert not any("resuming" in n for n in notices)
    assert "resumed_from" not in sessions(busy_site)[-1]
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(f"s{i}" for i in range(ROWS))


def test_two_admins_breaking_in_turn_each_resume_their_own_download(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Another admin's push in between does not throw this admin's broken download away."""
    busy_site = busy(site)
    insert_rows(busy_site, ROWS)
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        for admin in ("first", "second"):
            cut_push(tmp_path, admin_keys, relay, storage=admin)
            settle_archives(busy_site)
        notices: list[str] = []
        for admin in ("first", "second"):
            result = push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS,
                                       storage=tmp_path / admin), notices.append)
            assert result.export.records == ROWS
    assert sum("resuming the download" in n for n in notices) == 2, notices
    for admin in ("first", "second"):
        assert sorted(archived_sensors(tmp_path / admin)) == sorted(f"s{i}" for i in range(ROWS))


def export(client: httpx.Client, token: str, **headers: str) -> httpx.Response:
    return client.get("/data/export", headers={"Authorization": f"Bearer {token}", **headers})


@pytest.mark.parametrize(("changes", "why"), [
    ({"If-Range": None}, "no If-Range: the range alone names no archive"),
    ({"Range": "bytes=0-"}, "from the start is the whole archive"),
    ({"Range": "bytes=10-20"}, "only open ranges are served"),
    ({"Range": "bytes=99999999-"}, "beyond the archive"),
    ({"If-Range": '"../../etc/passwd.' + "0" * 64 + '"'}, "no path in a job id"),
    ({"If-Range": "sha"}, "not an ETag the agent gave"),
    ({"sha": "f" * 64}, "another archive"),
    ({"cursor": True}, "another request"),
])
def test_the_agent_answers_the_rest_only_of_the_same_archive(
    site: Config, admin_keys: tuple[Path, Path], changes: dict[str, Any], why: str
) -> None:
    busy_site = busy(site)
    insert_rows(busy_site, 2_000)
    with running_agent(busy_site) as agent, agent.client() as client:
        token = login(agent, client, admin_keys[0])
        whole = export(client, token)
        assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
        body, tag = whole.content, whole.headers["ETag"]
        rest = export(client, token, Range="bytes=1000-", **{"If-Range": tag})
        assert rest.status_code == 206
        assert rest.headers["Content-Range"] == f"bytes 1000-{len(body) - 1}/{len(body)}"
        assert rest.content == body[1000:]
        assert {k: rest.headers[k] for k in ("X-Cursor", "X-Record-Count", "X-Content-SHA256",
                                             "ETag")} == \
            {k: whole.headers[k] for k in ("X-Cursor", "X-Record-Count", "X-Content-SHA256",
                                           "ETag")}
        assert hashlib.sha256(body).hexdigest() == whole.headers["X-Content-SHA256"]

        asked = {"Range": "bytes=1000-", "If-Range": tag}
        if "sha" in changes:
            asked["If-Range"] = tag[: tag.index(".") + 1] + changes["sha"] + '"'
        for name in ("Range", "If-Range"):
            if name in changes:
                asked.pop(name) if changes[name] is None else asked.update({name: changes[name]})
        params = {"cursor": whole.headers["X-Cursor"]} if "cursor" in changes else {}
        answer = client.get("/data/export", params=params,
                            headers={"Authorization": f"Bearer {token}", **asked})
    assert answer.status_code == 200, why
    assert "Content-Range" not in answer.headers
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert hashlib.sha256(answer.content).hexdigest() == answer.headers["X-Content-SHA256"]


def test_a_kept_download_of_another_cursor_is_dropped(tmp_path: Path) -> None:
    storage = ClientStorage(tmp_path, CLIENT)
    with storage.locked():
        storage.partial.write_bytes(b"x" * 100)
        storage.partial_meta.write_text(json.dumps(
            {"etag": '"j.' + "0" * 64 + '"', "cursor": "v2.old", "length": 1000,
             "sha256": "0" * 64}))
        assert storage.resume_point("v2.old") is not None
        assert storage.resume_point("v2.newer") is None
        assert not storage.partial.exists() and not storage.partial_meta.exists()


def test_push_with_retries_rides_out_a_broken_link(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    storage = tmp_path / "data"
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        assert run_push_cli(storage, admin_keys[0], relay.port).returncode == 0
        insert_rows(busy_site, ROWS)
        relay.arm(cut_after=300_000, once=True)
        result = run_push_cli(storage, admin_keys[0], relay.port, "--retries", "2",
                              "--retry-wait", "0.2")
    assert result.returncode == 0, result.stderr
    assert "export broken" in result.stdout and "trying again in 0.2 s (1 of 2 retries)" in result.stdout
    assert "resuming the download the link cut last time" in result.stdout
    assert f"{ROWS} records" in result.stdout
    assert sorted(archived_sensors(storage)) == sorted(f"s{i}" for i in range(ROWS))


def test_push_does_not_retry_what_the_network_did_not_cause(
    site: Config, tmp_path: Path
) -> None:
    stranger = generate_keypair(tmp_path / "stranger")
    with running_agent(busy(site)) as agent:
        result = run_push_cli(tmp_path / "data", stranger[0], agent.port, "--retries", "3")
    assert result.returncode == 13
    assert_one_line_error(result, "401")
    assert "trying again" not in result.stdout


@pytest.mark.parametrize("etag", ["\u00e9t\u00e9", '"a\nb"'])
def test_a_kept_download_whose_description_is_damaged_is_downloaded_anew(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, etag: str
) -> None:
    """An ETag no header can carry (a damaged .json beside the kept bytes) would fail
    every later push before anything arrived: the admin would never get its data."""
    busy_site = busy(site)
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS))
        insert_rows(busy_site, ROWS)
        cut_push(tmp_path, admin_keys, relay)
        meta = ClientStorage(tmp_path / "data", CLIENT).partial_meta
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"etag": etag}))
        again = push(push_request(tmp_path, admin_keys, relay.port, timeouts=TIMEOUTS))
    assert again.export.records == ROWS
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(f"s{i}" for i in range(ROWS))
