"""A deployed gateway (links to anywhere but this machine) starts only with secrets of its own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sotto_gateway.config import GatewaySettings

DEPLOYED = "https://portal.calm-waters.example"
DEPLOYMENT = {
    "public_base_url": DEPLOYED,
    "jwt_jwks_url": "https://idp.example/jwks",
    "link_hash_key": "k" * 32,
    "verification_hash_key": "v" * 32,
}


def test_development_runs_on_the_published_keys_and_its_own_signing_key() -> None:
    assert GatewaySettings(public_base_url="http://localhost:8000").jwt_jwks_url is None
    assert GatewaySettings(public_base_url="http://127.0.0.1:8000").jwt_public_key is None


def test_a_deployment_without_any_of_its_secrets_names_them_all() -> None:
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(public_base_url=DEPLOYED)
    message = str(refused.value)
    assert "GATEWAY_LINK_HASH_KEY" in message
    assert "GATEWAY_VERIFICATION_HASH_KEY" in message
    assert "GATEWAY_JWT_JWKS_URL or GATEWAY_JWT_PUBLIC_KEY" in message


@pytest.mark.parametrize(
    "weak",
    [
        {"link_hash_key": "change-me-32-random-bytes-base64"},
        {"verification_hash_key": "short"},
    ],
    ids=["placeholder", "short"],
)
def test_a_deployment_refuses_placeholder_or_short_keys(weak: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="at least 32 random characters"):
        GatewaySettings.model_validate({**DEPLOYMENT, **weak})


def test_a_deployment_with_its_own_secrets_starts() -> None:
    settings = GatewaySettings.model_validate(DEPLOYMENT)
    assert settings.link_hash_key.get_secret_value() == "k" * 32
