"""Staff tokens: the local mint command signs what the verifier accepts, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from sotto_gateway.__main__ import main
from sotto_gateway.adapters.tokens import InvalidStaffTokenError, StaffTokenVerifier
from sotto_gateway.config import GatewaySettings


async def test_minted_token_verifies_with_the_development_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path))
    main(["mint-staff-token", "--practice", "p1", "--staff", "s1"])
    token = capsys.readouterr().out.strip()
    claims = await StaffTokenVerifier(GatewaySettings(state_dir=tmp_path)).verify(token)
    assert (claims.practice_id, claims.staff_id) == ("p1", "s1")
    assert oct((tmp_path / "staff-signing-key.pem").stat().st_mode & 0o777) == "0o600"

    other_audience = StaffTokenVerifier(GatewaySettings(state_dir=tmp_path, jwt_audience="x"))
    with pytest.raises(InvalidStaffTokenError):
        await other_audience.verify(token)
    other_key = StaffTokenVerifier(GatewaySettings(state_dir=tmp_path / "elsewhere"))
    with pytest.raises(InvalidStaffTokenError):
        await other_key.verify(token)
