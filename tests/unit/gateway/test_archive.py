"""The gateway's password protection of an export archive."""

from __future__ import annotations

import io
import zipfile

import pytest
import pyzipper  # type: ignore[import-untyped]

from sotto_gateway.adapters.archive import protect

ENTRIES = {"export.json": b'{"conversations": []}', "transcripts/conv1.txt": b"See you Tuesday."}


def _plain() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in ENTRIES.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_protected_archive_holds_the_same_entries_and_opens_only_with_its_password() -> None:
    protected = protect(_plain(), "correct horse")
    assert b"See you Tuesday." not in protected
    with pyzipper.AESZipFile(io.BytesIO(protected)) as archive:
        assert archive.namelist() == list(ENTRIES)
        assert all(entry.flag_bits & 0x1 for entry in archive.infolist())
        with pytest.raises(RuntimeError):
            archive.read("export.json")
        archive.setpassword(b"wrong horse")
        with pytest.raises(RuntimeError):
            archive.read("export.json")
        archive.setpassword(b"correct horse")
        assert {name: archive.read(name) for name in ENTRIES} == ENTRIES
