"""The vector files themselves: reproducible, lowercase hex, and the agreed field names."""

import importlib.util
import re
from types import ModuleType

import pytest

from .vectors import VECTORS_DIR, load

GENERATED = ["frames.json", "commands.json", "adverts.json", "invalid.json"]
PUBLISHED = ["rfc4231_hmac_sha256.json", "rfc4493_aes_cmac.json", "an12196_sun.json"]
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_reproduces_files_byte_for_byte():
    rendered = _generator().render()
    assert sorted(rendered) == sorted(GENERATED)
    for name, text in rendered.items():
        assert (VECTORS_DIR / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run .venv/bin/python tests/vectors/generate.py"
        )


def _hex_strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _hex_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _hex_strings(value, f"{path}[{i}]")
    elif isinstance(node, str) and (path.endswith(("_hex", ".hex", ".key")) or "key" in path):
        yield path, node


@pytest.mark.parametrize("name", GENERATED + PUBLISHED)
def test_hex_is_lowercase_and_even(name):
    for path, value in _hex_strings(load(name)):
        if path.endswith((".source", ".encoding", ".name")):
            continue
        assert _HEX.fullmatch(value), f"{name}{path}: {value!r}"


def test_frames_schema():
    for case in load("frames.json")["vectors"]:
        assert list(case) == ["name", "key", "header", "body", "body_hex", "frame_hex"]
        assert list(case["header"]) == [
            "kind",
            "key_id",
            "flags",
            "device_id",
            "seq",
            "time_s",
            "time_ms",
        ]


def test_commands_schema():
    doc = load("commands.json")
    assert list(doc) == ["commands", "acks", "status"]
    for case in doc["commands"]:
        assert list(case) == ["name", "key", "header", "body", "body_hex", "frame_hex"]
        assert list(case["header"]) == [
            "kind",
            "key_id",
            "device_id",
            "cmd_seq",
            "issued_s",
            "valid_for_s",
        ]
        assert list(case["body"]) in (["time_s", "time_ms"], ["entries"], ["duration_s"])
    assert all(list(a) == ["device_id", "acked_seq", "frame_hex"] for a in doc["acks"])
    assert all(list(s) == ["device_id", "state", "frame_hex"] for s in doc["status"])


def test_adverts_schema():
    for case in load("adverts.json")["vectors"]:
        assert list(case) == [
            "name",
            "company_id",
            "key",
            "fields",
            "payload_hex",
            "advertisement_hex",
        ]
        assert list(case["fields"])[:2] == ["type", "key_id"]


def test_invalid_schema_and_unique_names():
    doc = load("invalid.json")
    assert list(doc) == ["frames", "commands", "acks", "status", "adverts"]
    for section, cases in doc.items():
        names = [c["name"] for c in cases]
        assert len(names) == len(set(names)), section
        for case in cases:
            assert (
                {"name", "hex", "error"}
                <= set(case)
                <= {
                    "name",
                    "hex",
                    "key",
                    "error",
                    "company_id",
                }
            )


@pytest.mark.parametrize("name", GENERATED + PUBLISHED)
def test_names_unique(name):
    doc = load(name)
    for section in ("vectors", "commands"):
        if section in doc:
            names = [c["name"] for c in doc[section]]
            assert len(names) == len(set(names))
