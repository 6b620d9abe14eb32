"""Fixtures: a small demo ERP (`demo_erp`) and a trained, registered, active model on it (`trained_model`).

Use them with `from tests.fixtures_model import *  # noqa` in a test module.

The demo ERP is seeded once per module (`seed_demo_erp`, committed outside the tests'
transactions and removed at the end of the module); a transactional test (live server) flushes
the tables when it ends, so `demo_erp` seeds again when it finds them empty. The bundle is
trained once per session on that deterministic data and copied into each test's own
MODEL_ROOT, where a ready ModelVersion row points at it and is activated.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

__all__ = ["_demo_erp_module", "DEMO_ITEMS", "DEMO_SEED", "MODEL_LABEL", "demo_erp", "register_bundle", "trained_model"]

DEMO_ITEMS = 600
DEMO_SEED = 11
MODEL_LABEL = "demo-v1"

# The trained bundle of this session, keyed by the data it was trained on.
_BUNDLES: dict[tuple[int, int], Path] = {}


@dataclass(frozen=True)
class DemoERP:
    items: int
    seed: int


def _seed_demo_erp() -> None:
    call_command("seed_demo_erp", items=DEMO_ITEMS, seed=DEMO_SEED, replace=True, stdout=io.StringIO())


def _wipe_demo_erp() -> None:
    from erp import data
    from erp.models import Item, RoutingOperation, WorkResult

    for model in (WorkResult, RoutingOperation, Item):
        data.delete_rows(model)


@pytest.fixture(scope="module")
def _demo_erp_module(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        _seed_demo_erp()
    yield
    with django_db_blocker.unblock():
        _wipe_demo_erp()


@pytest.fixture
def demo_erp(_demo_erp_module, db) -> DemoERP:
    """A seeded demo ERP of DEMO_ITEMS items (seed DEMO_SEED) visible to the test.

    Works in transactional tests too: pytest-django gives a test that also asks for
    `transactional_db` or `live_server` a transactional database even though this asks for `db`.
    """
    from erp.models import Item

    if not Item.objects.exists():  # a transactional test before this one flushed the tables
        _seed_demo_erp()
    return DemoERP(items=DEMO_ITEMS, seed=DEMO_SEED)


def _trained_bundle(tmp_path_factory) -> Path:
    """Train once per session on the demo data (the same seed gives the same data, hence the same model)."""
    key = (DEMO_ITEMS, DEMO_SEED)
    if key not in _BUNDLES:
        from erp.data import load_training_frames
        from training.engine import EngineConfig, train

        items, routings, actuals = load_training_frames()
        # The neighbour vote ships (the page and service tests check its semantics); the routing
        # classifier candidate is tested in test_engine_learning.
        result = train(items, routings, actuals, EngineConfig(seed=0, candidates=("baseline",), routing_candidates=("vote",)))
        directory = tmp_path_factory.mktemp("bundle") / MODEL_LABEL
        directory.mkdir()
        result.model.save(directory)
        (directory / "metrics.json").write_text("{}")
        _BUNDLES[key] = directory
    return _BUNDLES[key]


def register_bundle(source: Path, label: str, activate: bool = False):
    """Copy a bundle under MODEL_ROOT/<label>/ and register it as a ready ModelVersion (activated if asked)."""
    from registry.models import ModelVersion, manifest_digest

    target = Path(settings.MODEL_ROOT) / label
    if not target.exists():
        shutil.copytree(source, target)
    version = ModelVersion.objects.create(
        label=label,
        status=ModelVersion.Status.READY,
        artifact_path=label,
        manifest_sha256=manifest_digest(target),
        description="test fixture",
    )
    if activate:
        version.activate(reason="test fixture")
    return version


@pytest.fixture
def trained_model(demo_erp, tmp_path_factory):
    """The active ModelVersion, trained on `demo_erp` (the lead may swap this body for the real training pipeline)."""
    return register_bundle(_trained_bundle(tmp_path_factory), MODEL_LABEL, activate=True)
