"""Password protection of an export archive, applied in the gateway so the password never
leaves its process (conversations builds the plain zip)."""

from __future__ import annotations

import io
import zipfile

import pyzipper  # type: ignore[import-untyped]


def protect(archive: bytes, password: str) -> bytes:
    """The same entries in a WinZip AES-256 zip that opens only with `password`."""
    protected = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as plain,
        pyzipper.AESZipFile(
            protected, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
        ) as encrypted,
    ):
        encrypted.setpassword(password.encode())
        for entry in plain.infolist():
            encrypted.writestr(entry.filename, plain.read(entry))
    return protected.getvalue()
