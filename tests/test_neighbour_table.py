"""The neighbour table: known items' neighbours worked out once per version give exactly the searched answers, and a
missing, half-written, corrupt or foreign table is never read."""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule
from django_q.tasks import async_task, result

from registry import neighbour_tables
from registry.loader import loader
from routing_ml.schedules import ensure_schedules
from tests.cluster import cluster_env, gunicorn, http_json, qcluster, wait_for
from tests.fixtures_model import *  # noqa: F403
from training.engine import BundleError
from training.engine import neighbour_table as engine_table
from training.engine.neighbour_table import TableError


def _model():
    return loader.active()[1]


def _without_table(model, call):
    table = model.neighbour_table
    model.use_neighbour_table(None)
    try:
        return call()
    finally:
        model.use_neighbour_table(table)


@pytest.fixture
def tabled(trained_model):
    """The active model of `trained_model`, with its neighbour table built and attached."""
    assert neighbour_tables.ensure(trained_model, threads=2)["status"] == "built"
    model = _model()
    assert model.neighbour_table is not None  # the loader attached it at the next check
    return model


@pytest.fixture
def model_with_unrouted_items(demo_erp):
    """A model trained on the demo ERP with a tenth of its items' routings taken away (known, not indexed), with its table."""
    from erp.data import load_training_frames
    from training.engine import EngineConfig, train

    items, routings, actuals = load_training_frames()
    unrouted = set(items["ITEM_CD"].iloc[::10])
    routings = routings[~routings["ITEM_CD"].isin(unrouted)]
    model = train(items, routings, actuals, EngineConfig(seed=0, candidates=("baseline",), routing_candidates=("vote",))).model
    assert (model.known_index_row < 0).sum() == len(unrouted) and (model.known_index_row >= 0).any()
    model.use_neighbour_table(engine_table.build(model, "a bundle"))
    return model


def test_every_known_item_read_from_the_table_gets_exactly_the_searched_answer(model_with_unrouted_items):
    model = model_with_unrouted_items
    known = model.known_codes.tolist()
    searches = []
    real_search = model.neighbors.search
    model.neighbors.search = lambda *args, **kwargs: searches.append(args) or real_search(*args, **kwargs)
    try:
        with_table = model.predict(pd.DataFrame({"ITEM_CD": known}), decimals=4)
        assert searches == []  # all answered from the table
        searched = _without_table(model, lambda: model.predict(pd.DataFrame({"ITEM_CD": known}), decimals=4))
        assert with_table == searched
        # Searched otherwise than the build searched them: one at a time (the few-queries path) and in a shuffled batch.
        rng = np.random.default_rng(3)
        some = rng.choice(len(known), 40, replace=False)
        alone = _without_table(model, lambda: [model.predict(pd.DataFrame({"ITEM_CD": [known[i]]}), decimals=4)[0] for i in some])
        assert alone == [with_table[i] for i in some]
        shuffled = rng.permutation(len(known))
        assert model.predict(pd.DataFrame({"ITEM_CD": [known[i] for i in shuffled]}), decimals=4) == [with_table[i] for i in shuffled]
        # Fewer neighbours: the first of the table's. More than it holds: searched. Self included: searched.
        for options in ({"top_k": 3}, {"top_k": model.neighbour_table.k + 5}, {"exclude_self": False}):
            assert model.predict(pd.DataFrame({"ITEM_CD": known}), **options) == _without_table(
                model, lambda options=options: model.predict(pd.DataFrame({"ITEM_CD": known}), **options)
            )
    finally:
        model.neighbors.search = real_search


def test_a_batch_mixing_known_and_described_items_searches_only_for_the_described(tabled):
    model = tabled
    known = model.known_codes[:40].tolist()
    rows = [{"ITEM_CD": code} for code in known] + [
        {"ITEM_CD": None, "PART_TYPE": "ORING", "OUTDIAMETER": 40.0},
        {"ITEM_CD": known[0], "OUTDIAMETER": 12.0},
    ]
    searched = []
    real_search = model.neighbors.search
    model.neighbors.search = lambda queries, *args: searched.append(queries.shape[0]) or real_search(queries, *args)
    try:
        assert model.predict(rows) == _without_table(model, lambda: model.predict(rows))
    finally:
        model.neighbors.search = real_search
    assert searched[0] == 2  # with the table: the new item and the re-described known one only


def test_the_table_holds_each_known_items_search_and_its_first_rows_are_a_smaller_search(tabled):
    model, table = tabled, tabled.neighbour_table
    positions = np.arange(len(model.known_codes))
    for k in (1, 7, table.k):
        rows, sims = model.neighbors.search(model.stored_embeddings(positions), k, model.known_index_row[positions])
        assert np.array_equal(rows, table.rows[:, :k]) and np.array_equal(sims, table.sims[:, :k])


def test_a_table_is_refused_when_corrupt_half_written_or_another_bundles(trained_model, tabled):
    directory = engine_table.table_dir(trained_model.artifact_dir)
    digest, n = trained_model.manifest_sha256, len(tabled.known_codes)
    engine_table.load(trained_model.artifact_dir, digest, n)  # the good one reads

    with pytest.raises(TableError, match="another bundle"):
        engine_table.load(trained_model.artifact_dir, "0" * 64, n)
    with pytest.raises(TableError, match="items"):
        engine_table.load(trained_model.artifact_dir, digest, n + 1)
    sims = directory / "sims.npy"
    good = sims.read_bytes()
    sims.write_bytes(good[:-4] + bytes(4))
    with pytest.raises(TableError, match="sims.npy is missing or corrupt"):
        engine_table.load(trained_model.artifact_dir, digest, n)
    assert neighbour_tables.state(trained_model).startswith("unusable")
    sims.write_bytes(good)
    (directory / "table.json").write_text("{not json")
    with pytest.raises(TableError, match="unreadable header"):
        engine_table.load(trained_model.artifact_dir, digest, n)
    shutil.rmtree(directory)
    with pytest.raises(TableError, match="no neighbour table"):
        engine_table.load(trained_model.artifact_dir, digest, n)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: [h], "format"),  # not an object at all
        (lambda h: {**h, "format": 99}, "format"),
        (lambda h: {**h, "files": list(h["files"])}, "does not list"),
        (lambda h: {k: v for k, v in h.items() if k != "files"}, "does not list"),
        (lambda h: {**h, "files": {**h["files"], "extra.npy": "0" * 64}}, "does not list"),
        (lambda h: {**h, "k": h["k"] + 1}, "do not match its header"),
        (lambda h: {**h, "items": str(h["items"])}, "items"),
    ],
)
def test_every_kind_of_wrong_header_is_refused_by_the_loader_and_the_model_searches(trained_model, tabled, change, message, caplog):
    header = engine_table.table_dir(trained_model.artifact_dir) / "table.json"
    header.write_text(json.dumps(change(json.loads(header.read_text()))))
    with pytest.raises(TableError, match=message):
        engine_table.load(trained_model.artifact_dir, trained_model.manifest_sha256, len(tabled.known_codes))
    model = _model()  # the header changed: checked again and refused
    assert model.neighbour_table is None and "answers without its neighbour table" in caplog.text
    assert len(model.predict(pd.DataFrame({"ITEM_CD": model.known_codes[:3].tolist()}))) == 3


def test_arrays_of_another_type_are_refused_even_with_matching_checksums(trained_model, tabled):
    table = tabled.neighbour_table
    wide = engine_table.NeighbourTable(rows=table.rows.astype(np.int64), sims=table.sims, bundle=tabled.bundle_digest)
    engine_table.save(wide, trained_model.artifact_dir)
    with pytest.raises(TableError, match="rows.npy holds int64, not int32"):
        engine_table.load(trained_model.artifact_dir, trained_model.manifest_sha256, len(tabled.known_codes))
    assert _model().neighbour_table is None


def test_the_table_answers_only_queries_that_exclude_exactly_the_items_own_row(model_with_unrouted_items):
    model = model_with_unrouted_items
    positions = np.arange(len(model.known_codes))
    emb = model.stored_embeddings(positions)
    own = model.known_index_row[positions]
    other = np.roll(np.where(own >= 0, own, 0), 1)  # some other index row for every item
    for exclude in (own, other, np.full(positions.size, -1), None):
        assert all(
            np.array_equal(a, b)
            for a, b in zip(model.neighbours(emb, exclude, 5, positions), model.neighbors.search(emb, 5, exclude), strict=True)
        )


def test_a_build_that_fails_while_writing_leaves_no_table_and_the_model_searches(trained_model, monkeypatch):
    model = _model()
    real_save = np.save
    calls = []

    def failing_save(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(path, array, **kwargs)

    monkeypatch.setattr(engine_table.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        neighbour_tables.ensure(trained_model)
    parent = trained_model.artifact_dir / engine_table.DIRECTORY
    assert not engine_table.table_dir(trained_model.artifact_dir).exists()
    assert not [p for p in parent.iterdir() if p.is_dir()]  # no temporary directory left behind
    assert neighbour_tables.state(trained_model) == "absent"
    assert _model() is model and model.neighbour_table is None


def test_what_a_build_killed_mid_write_left_is_never_read_and_the_next_build_clears_it(trained_model):
    leftover = trained_model.artifact_dir / engine_table.DIRECTORY / f".{engine_table.NAME}-killed"
    leftover.mkdir(parents=True)
    (leftover / "rows.npy").write_bytes(b"half")
    assert neighbour_tables.state(trained_model) == "absent" and _model().neighbour_table is None
    assert neighbour_tables.ensure(trained_model)["status"] == "built"
    assert not leftover.exists() and _model().neighbour_table is not None


def test_a_corrupt_table_under_a_serving_process_is_dropped_and_the_minute_task_builds_it_again(trained_model, tabled, caplog):
    codes = tabled.known_codes[:30].tolist()
    before = tabled.predict(pd.DataFrame({"ITEM_CD": codes}))
    rows = engine_table.table_dir(trained_model.artifact_dir) / "rows.npy"
    data = bytearray(rows.read_bytes())
    data[-8:] = bytes(8)
    rows.write_bytes(bytes(data))

    model = _model()  # the next check sees the files changed and verifies them again
    assert model.neighbour_table is None and "answers without its neighbour table" in caplog.text
    assert model.predict(pd.DataFrame({"ITEM_CD": codes})) == before

    ensure_schedules()
    task = async_task(Schedule.objects.get(name="neighbour-table").func, sync=True)  # as the cluster runs it each minute
    assert neighbour_tables.state(trained_model) == "ready"
    assert result(task)["status"] == "built"
    assert _model().neighbour_table is not None and _model().predict(pd.DataFrame({"ITEM_CD": codes})) == before


def test_a_table_from_another_version_of_the_search_is_refused_and_built_again(trained_model, tabled, monkeypatch):
    assert engine_table.search_fingerprint() == engine_table.search_fingerprint()
    header = engine_table.table_dir(trained_model.artifact_dir) / "table.json"
    data = json.loads(header.read_text())
    header.write_text(json.dumps({**data, "search": "0" * 64}))  # as an upgrade that changed the search leaves it
    assert "another version of the neighbour search" in neighbour_tables.state(trained_model)
    assert _model().neighbour_table is None
    assert neighbour_tables.ensure(trained_model)["status"] == "built"
    assert json.loads(header.read_text())["search"] == engine_table.search_fingerprint()
    assert _model().neighbour_table is not None


def test_a_table_whose_rows_point_outside_the_index_is_never_served(trained_model, tabled, caplog):
    table = tabled.neighbour_table
    bad = engine_table.NeighbourTable(rows=table.rows + np.int32(tabled.neighbors.n_items), sims=table.sims, bundle=tabled.bundle_digest)
    with pytest.raises(BundleError, match="does not fit this model"):
        tabled.use_neighbour_table(bad)
    engine_table.save(bad, trained_model.artifact_dir)  # checksums that match: only the model's own check refuses it
    model = _model()  # its files changed: checked again, refused, and the model searches
    assert model.neighbour_table is None and "does not fit this model" in caplog.text
    assert model.predict(pd.DataFrame({"ITEM_CD": model.known_codes[:5].tolist()}))


def test_answers_rounded_in_bulk_are_those_of_round_value_by_value(tabled):
    codes = tabled.known_codes.tolist()
    raw = tabled.predict(pd.DataFrame({"ITEM_CD": codes}))
    rounded = tabled.predict(pd.DataFrame({"ITEM_CD": codes}), decimals=4)
    names = ("setup_minutes", "run_minutes_per_unit", "run_p10", "run_p90", "setup_p10", "setup_p90")
    checked = 0
    for before, after in zip(raw, rounded, strict=True):
        for op_before, op_after in zip(before["operations"], after["operations"], strict=True):
            for name in names:
                value = op_before[name]
                assert op_after[name] == (None if value is None or not math.isfinite(value) else round(value, 4))
                checked += value is not None
        assert [n["similarity"] for n in after["similar_items"]] == [round(float(n["similarity"]), 4) for n in before["similar_items"]]
    assert checked > 1000


def test_a_build_waits_for_nobody_when_another_process_holds_the_lock(trained_model):
    with neighbour_tables._build_lock(trained_model) as held:
        assert held
        assert neighbour_tables.ensure(trained_model) == {"status": "busy", "label": trained_model.label}
    assert neighbour_tables.ensure(trained_model)["status"] == "built"
    assert neighbour_tables.ensure(trained_model)["status"] == "present"


def test_an_index_too_small_for_k_neighbours_has_no_table_and_still_answers(trained_model):
    model = _model()
    with pytest.raises(TableError, match="no neighbour table for k="):
        engine_table.build(model, trained_model.manifest_sha256, k=model.neighbors.n_items)
    answers = model.predict(pd.DataFrame({"ITEM_CD": model.known_codes[:5].tolist()}), top_k=model.neighbors.n_items)
    assert len(answers) == 5 and all(len(a["similar_items"]) == model.neighbors.n_items - 1 for a in answers)


def test_the_command_builds_checks_and_names_what_is_wrong(trained_model, settings):
    out = io.StringIO()
    with pytest.raises(CommandError, match="no usable neighbour table \\(absent\\)"):
        call_command("neighbour_table", check=True, stdout=out)
    call_command("neighbour_table", stdout=out)
    assert "built in" in out.getvalue()
    call_command("neighbour_table", trained_model.label, check=True, stdout=out)
    assert out.getvalue().strip().endswith("neighbour table ready")
    call_command("neighbour_table", stdout=out)
    assert "there already" in out.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("neighbour_table", "no-such-version")
    with pytest.raises(CommandError, match="--threads must be at least 1"):
        call_command("neighbour_table", threads=0)
    settings.NEIGHBOUR_TABLE = False
    with pytest.raises(CommandError, match="NEIGHBOUR_TABLE is off"):
        call_command("neighbour_table", force=True)
    loader.clear()
    assert _model().neighbour_table is None  # switched off: a table on disk is not read


def test_the_minute_task_is_its_own_schedule_and_skips_without_an_active_version(db):
    ensure_schedules()
    ensure_schedules()
    schedule = Schedule.objects.get(name="neighbour-table")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "registry.tasks.ensure_neighbour_table",
        Schedule.MINUTES,
        1,
        -1,
    )
    assert Schedule.objects.filter(func="registry.tasks.ensure_neighbour_table").count() == 1
    from registry.tasks import ensure_neighbour_table

    assert ensure_neighbour_table() == {"status": "skipped", "reason": "no active version"}


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_the_cluster_builds_the_table_and_every_gunicorn_worker_then_answers_from_it_unchanged(trained_model, planner, tmp_path):
    codes = sorted(_model().known_codes.tolist())
    env = {**cluster_env(), "MODEL_RELOAD_INTERVAL": "0.2"}
    with gunicorn(tmp_path / "gunicorn.log", env) as base:
        status, tokens = http_json(
            "POST", f"{base}/api/v1/auth/token/", {"username": planner.username, "password": "pw-" + planner.username}
        )
        assert status == 200, tokens

        def answer() -> dict:
            status, body = http_json("POST", f"{base}/api/v1/predictions/", {"item_codes": codes}, tokens["access"], timeout=60)
            assert status == 200, body
            body.pop("duration_ms")
            return body

        def sources() -> set[str]:
            return {http_json("GET", f"{base}/health")[1]["checks"]["model"]["known_items_from"] for _ in range(6)}

        assert sources() == {"search"}
        searched = answer()
        async_task("registry.tasks.ensure_neighbour_table")
        with qcluster(tmp_path / "qcluster.log"):
            wait_for(lambda: neighbour_tables.state(trained_model) == "ready", timeout=120, message="the cluster to build the table")
        k = json.loads((engine_table.table_dir(trained_model.artifact_dir) / "table.json").read_text())["k"]
        wait_for(lambda: sources() == {f"table (k={k})"}, timeout=30, message="both workers to attach the table")
        for _ in range(2):  # each of the two workers
            assert answer() == searched
