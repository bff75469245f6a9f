"""Config validation, docs/agent.md example, checkpoint file durability and corruption."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import obshub_agent
from obshub_agent.checkpoints import Checkpoint, CheckpointStore
from obshub_agent.config import ConfigError, parse_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent.md"


def _base(**kw: object) -> dict:
    return {
        "hub": "http://127.0.0.1:8480",
        "token": "t",
        "state_dir": "/tmp/x",
        "inputs": [{"paths": ["/var/log/*.log"]}],
        **kw,
    }


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_base(hub=""), "hub: missing"),
        (_base(token=""), "token: missing"),
        (_base(inputs=[]), "inputs: missing"),
        (_base(inputs=[{"paths": ["/a"], "format": "jsn"}]), "inputs[0].format: unknown format 'jsn'"),
        (_base(inputs=[{"paths": ["/a"], "format": "regex"}]), "inputs[0].regex: required"),
        (_base(inputs=[{"paths": ["/a"], "format": "regex", "regex": "(?P<x>.*)"}]), "(?P<message>"),
        (_base(inputs=[{"paths": ["/a"], "multiline": {"start": "("}}]), "inputs[0].multiline.start: invalid regex"),
        (_base(inputs=[{"paths": ["/a"], "pathz": 1}]), "unknown key(s) ['pathz']"),
        (_base(batch_max_bytes="1MB"), "batch_max_bytes: expected int"),
        (_base(compression="lz4"), "compression: expected"),
        (_base(spol_max_bytes=1), "unknown key(s) ['spol_max_bytes']"),
        (_base(hub={"url": "http://a:1", "urls": ["http://b:1"]}), "hub.url and hub.urls: set one of them"),
        (_base(hub={"urls": []}), "hub.urls: empty"),
        (_base(hub={"urls": ["http://a:1", "b:1"]}), "hub.urls[1]: expected an http(s):// URL, got 'b:1'"),
        (_base(hub={"urls": ["http://a:1", 2]}), "hub.urls[1]: expected an http(s):// URL, got 2"),
        (_base(hub={"urls": ["http://a:1", "http://a:1/"]}), "hub.urls: a URL is listed twice"),
        (_base(hub={"url": "ftp://a"}), "hub.url: expected an http(s):// URL"),
        (_base(hub={}), "hub.url: missing"),
        (_base(hub={"uls": []}), "hub: unknown key(s) ['uls']"),
    ],
)
def test_config_errors_name_the_key(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    assert message in str(exc.value)


def test_env_overrides_token_and_defaults() -> None:
    cfg = parse_config(_base(token="file"), env={"OBSHUB_AGENT_TOKEN": "env"})
    assert cfg.token == "env" and cfg.host  # hostname by default
    assert cfg.inputs[0].format == "text" and cfg.metrics_address == "127.0.0.1:9480"


def test_hub_urls_and_the_single_url_forms() -> None:
    cfg = parse_config(_base(hub={"urls": ["http://a:8480/", "https://b:8480"]}), env={})
    assert cfg.urls == ("http://a:8480", "https://b:8480") and cfg.hub == "http://a:8480"
    for doc in (_base(hub="http://a:8480/"), _base(hub={"url": "http://a:8480"})):
        cfg = parse_config(doc, env={})
        assert cfg.urls == ("http://a:8480",) and cfg.hub == "http://a:8480"
    # the environment overrides the file, comma-separated for several hubs
    cfg = parse_config(_base(), env={"OBSHUB_AGENT_HUB": "http://x:1, http://y:2"})
    assert cfg.urls == ("http://x:1", "http://y:2")
    # TOML's dotted key, as the docs write it
    cfg = parse_config(
        tomllib.loads('hub.urls = ["http://a:1", "http://b:1"]\ntoken = "t"\n[[inputs]]\npaths = ["/a"]\n'), env={}
    )
    assert cfg.urls == ("http://a:1", "http://b:1")


def test_docs_example_is_valid_and_complete() -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks, "docs/agent.md has toml examples"
    full = tomllib.loads(max(blocks, key=len))
    cfg = parse_config(full, env={})
    assert {i.format for i in cfg.inputs} >= {"json", "python", "regex"}
    from obshub_agent import config as c

    for key in c._TOP_KEYS | c._INPUT_KEYS:  # every key is documented
        assert f"`{key}`" in text, key


def test_checkpoint_roundtrip_and_corruption(tmp_path: Path) -> None:
    cps = CheckpointStore(tmp_path)
    cps.entries["1:2"] = Checkpoint(path="/a", dev=1, ino=2, fp="ab", fp_len=10, gen=0, offset=42, seen=9e9)
    cps.save()
    again = CheckpointStore(tmp_path)
    again.load()
    assert again.entries["1:2"].offset == 42
    (tmp_path / "checkpoints.json").write_text('{"version": 1, "files": {"1:2": {"path": ')  # torn
    broken = CheckpointStore(tmp_path)
    broken.load()  # reported, moved aside, not raised
    assert broken.entries == {} and broken.corrupt_files == 1
    assert list(tmp_path.glob("checkpoints.json.corrupt-*"))
    assert not (tmp_path / "checkpoints.json").exists()


def test_checkpoint_fingerprints_persist_and_version_1_loads(tmp_path: Path) -> None:
    """`sig`, `uid` and the ended generations survive a restart (copies are recognised after
    one); a version 1 file (before fingerprints) still loads, its entries without a sig."""
    import json

    from obshub_agent.checkpoints import Ended

    cps = CheckpointStore(tmp_path)
    cps.entries["1:2"] = Checkpoint(
        path="/a", dev=1, ino=2, fp="ab", fp_len=10, gen=0, offset=42, seen=9e9, sig="cd", sig_len=42, uid="u1"
    )
    cps.ended.append(
        Ended(path="/a", fp="ab", fp_len=10, sig="ef", sig_len=30, offset=30, seen=9e9, uid="u0", head=b"x" * 30)
    )
    cps.save()
    doc = json.loads((tmp_path / "checkpoints.json").read_bytes())
    assert doc["version"] == 2 and "head" not in doc["ended"][0]  # in memory only
    again = CheckpointStore(tmp_path)
    again.load()
    assert (again.entries["1:2"].sig, again.entries["1:2"].sig_len, again.entries["1:2"].uid) == ("cd", 42, "u1")
    assert [(e.sig, e.offset, e.uid, e.head) for e in again.ended] == [("ef", 30, "u0", b"")]
    (tmp_path / "checkpoints.json").write_text(
        json.dumps(
            {
                "version": 1,
                "files": {
                    "1:2": {
                        "path": "/a",
                        "dev": 1,
                        "ino": 2,
                        "fp": "ab",
                        "fp_len": 10,
                        "gen": 0,
                        "offset": 42,
                        "seen": 9e9,
                    }
                },
            }
        )
    )
    v1 = CheckpointStore(tmp_path)
    v1.load()
    assert v1.corrupt_files == 0 and v1.entries["1:2"].offset == 42 and v1.entries["1:2"].sig is None
    assert v1.ended == []


def test_exported_names() -> None:
    assert obshub_agent.__all__ == ["__version__"]
    from obshub_agent import parse, ship, sources, spool

    assert sources.__all__ == ["FileSource", "file_uid"]
    assert spool.__all__ == ["Batch", "Spool"]
    assert ship.__all__ == ["Shipper"]
    assert "FileEncoder" in parse.__all__


def test_no_hub_or_sdk_imports() -> None:
    root = Path(obshub_agent.__file__).parent
    for py in root.rglob("*.py"):
        src = py.read_text()
        assert not re.search(r"^\s*(from|import)\s+(obshub|obshub_sdk)\b", src, re.M), py


def test_one_agent_per_state_dir(tmp_path: Path) -> None:
    from obshub_agent.agent import Agent, AgentLocked

    cfg = parse_config(_base(state_dir=str(tmp_path / "state"), metrics_address=""), env={})
    first = Agent(cfg)
    try:
        with pytest.raises(AgentLocked):
            Agent(cfg)
    finally:
        first.close()
    Agent(cfg).close()  # the lock is released with the process / on close


def test_cli_check_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from obshub_agent.__main__ import main

    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'hub = "http://127.0.0.1:1"\ntoken = "t"\nstate_dir = "{tmp_path / "s"}"\n'
        f'[[inputs]]\npaths = ["/nonexistent/*.log"]\nformat = "jsn"\n'
    )
    assert main(["--config", str(cfg)]) == 2
    assert "inputs[0].format: unknown format 'jsn'" in capsys.readouterr().err
    text = cfg.read_text().replace('"jsn"', '"json"')
    cfg.write_text(text)
    assert main(["--config", str(cfg), "--check"]) == 0
    with socket.socket() as busy:  # metrics port taken: a clear error, not a traceback
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg.write_text(f'metrics_address = "127.0.0.1:{busy.getsockname()[1]}"\n' + text)
        assert main(["--config", str(cfg)]) == 1
    assert "metrics_address: cannot listen" in capsys.readouterr().err
