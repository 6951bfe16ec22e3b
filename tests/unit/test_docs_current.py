"""The generated documents in docs/ match what the code generates now."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import gen_docs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
STALE = "docs/{} is out of date: run make docs and commit the result"


def _generated_files(root: Path) -> set[str]:
    files = {gen_docs.CONFIG_REFERENCE} if (root / gen_docs.CONFIG_REFERENCE).exists() else set()
    for directory in (gen_docs.ASYNCAPI_DIR, gen_docs.OPENAPI_DIR):
        files |= {f"{directory}/{p.name}" for p in (root / directory).glob("*.json")}
    return files


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("docs")
    gen_docs.write(target)
    return target


def test_the_same_documents_are_checked_in(regenerated: Path) -> None:
    assert _generated_files(DOCS) == _generated_files(regenerated), STALE.format("*")


def test_every_checked_in_document_is_current(regenerated: Path) -> None:
    for relative in sorted(_generated_files(regenerated)):
        checked_in = DOCS / relative
        assert checked_in.exists(), STALE.format(relative)
        assert checked_in.read_text() == (regenerated / relative).read_text(), STALE.format(
            relative
        )


def test_generation_is_deterministic(regenerated: Path) -> None:
    assert gen_docs.render() == {
        relative: (regenerated / relative).read_text() for relative in _generated_files(regenerated)
    }


def test_every_worker_has_an_asyncapi_document_and_the_gateway_an_openapi_one(
    regenerated: Path,
) -> None:
    for worker in ("audit", "conversations", "notifier"):
        assert (regenerated / "asyncapi" / f"{worker}.json").exists(), worker
    assert (regenerated / "openapi" / "gateway.json").exists()


def test_the_config_reference_names_every_setting_with_its_environment_variable(
    regenerated: Path,
) -> None:
    reference = (regenerated / gen_docs.CONFIG_REFERENCE).read_text()
    for expected in ("`RABBITMQ_URL`", "`AUDIT_PREFETCH`", "`GATEWAY_LINK_HASH_KEY`"):
        assert expected in reference
    assert "127.0.0.1:5672" in reference, "defaults are the code's own"
