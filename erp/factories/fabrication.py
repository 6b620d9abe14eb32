"""The `fabrication` demo profile: sheet-metal parts and welded assemblies (see `erp.generator`)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from .common import (
    DAY_S,
    ITEM_COLUMNS,
    Drift,
    Orders,
    Plant,
    Revisions,
    _blank,
    _choice,
    _choice_rows,
    _codes,
    _dt,
    build_history,
    opt_text,
    perturb_masks,
    res_plan,
    res_table,
    size_class,
    text,
)

PREFIX = "FB"

STEEL, GALVANISED, STAINLESS, ALU = range(4)
MATERIALS = [
    # code, description, class, process factor
    ("DC01", "Cold-rolled steel sheet DC01", STEEL, 1.00),
    ("S235JR", "Hot-rolled structural steel S235JR", STEEL, 1.00),
    ("S355MC", "High-strength steel S355MC", STEEL, 1.15),
    ("DX51D+Z275", "Pre-galvanised steel sheet DX51D+Z275", GALVANISED, 1.00),
    ("1.4301", "Stainless steel 1.4301 (304) 2B", STAINLESS, 1.40),
    ("1.4404", "Stainless steel 1.4404 (316L) 2B", STAINLESS, 1.50),
    ("EN AW-5754", "Aluminium AlMg3 H22", ALU, 0.90),
]
M = {m[0]: i for i, m in enumerate(MATERIALS)}
MAT_CODE = np.array([m[0] for m in MATERIALS], dtype=object)
MAT_DESC = np.array([m[1] for m in MATERIALS], dtype=object)
MAT_CLASS = np.array([m[2] for m in MATERIALS])
MAT_FACTOR = np.array([m[3] for m in MATERIALS])

ITEM_TYPES = np.array(["PART", "WELDMENT", "ASSY"], dtype=object)
PART, WELDMENT, ASSY = range(3)
SEGMENTS = np.array(["MACHINE", "FOOD", "RAIL", "ENERGY", "HVAC", "AGRI"], dtype=object)  # ITEM_GRP1
SEGMENT_P = [0.30, 0.15, 0.12, 0.13, 0.18, 0.12]
FOOD = 1
COATINGS = np.array(["NONE", "POWDER", "WET-PAINT", "HDG", "BRUSHED"], dtype=object)  # GROUP2
C_NONE, C_POWDER, C_WET, C_HDG, C_BRUSHED = range(5)
WELD_CLASSES = np.array(["ISO 5817-D", "ISO 5817-C", "ISO 5817-B"], dtype=object)  # GROUP1 (weldments only)
RAW_KINDS = np.array(["SHEET", "PLATE", "TUBE", "PROFILE"], dtype=object)
SHEET, PLATE, TUBE, PROFILE = range(4)
GAUGES = np.array([0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0])

FAMILIES = [
    # PART_TYPE, PartNm, share, item type p (PART, WELDMENT, ASSY), thickness median mm, sigma,
    # blank length median mm, sigma, width/length, bends mean, inserts mean, qty median,
    # materials {code: p}, coating p (NONE, POWDER, WET, HDG, BRUSHED), tube/profile share
    ("PANEL", "Panel", 0.14, (.90, .05, .05), 1.5, 0.30, 900, 0.5, 0.6, 4, 4, 40,
     {"DC01": .40, "DX51D+Z275": .25, "1.4301": .15, "EN AW-5754": .20}, (.30, .55, .05, .0, .10), 0.0),
    ("BRACKET", "Bracket", 0.14, (.90, .10, .0), 4.0, 0.45, 250, 0.5, 0.5, 2, 1, 80,
     {"S235JR": .35, "DC01": .25, "S355MC": .15, "1.4301": .15, "EN AW-5754": .10}, (.30, .40, .05, .20, .05), 0.05),
    ("ENCLOSURE", "Enclosure", 0.11, (.10, .60, .30), 1.5, 0.25, 700, 0.4, 0.7, 10, 8, 10,
     {"DC01": .50, "1.4301": .25, "1.4404": .05, "EN AW-5754": .20}, (.20, .65, .05, .0, .10), 0.0),
    ("CABINET", "Control cabinet", 0.07, (.05, .55, .40), 2.0, 0.20, 1800, 0.3, 0.5, 14, 12, 4,
     {"DC01": .65, "1.4301": .25, "1.4404": .10}, (.10, .75, .10, .0, .05), 0.0),
    ("FRAME", "Welded frame", 0.12, (.05, .90, .05), 5.0, 0.40, 1600, 0.5, 0.6, 0.3, 1, 6,
     {"S235JR": .55, "S355MC": .25, "1.4301": .10, "EN AW-5754": .10}, (.15, .25, .35, .25, .0), 0.8),
    ("COVER", "Cover", 0.12, (.95, .0, .05), 1.5, 0.35, 600, 0.5, 0.6, 4, 2, 40,
     {"DC01": .35, "DX51D+Z275": .30, "1.4301": .15, "EN AW-5754": .20}, (.35, .50, .05, .0, .10), 0.0),
    ("CHASSIS", "Chassis", 0.08, (.10, .85, .05), 8.0, 0.40, 2200, 0.4, 0.4, 4, 2, 5,
     {"S355MC": .60, "S235JR": .40}, (.10, .30, .45, .15, .0), 0.2),
    ("DUCT", "Duct section", 0.08, (.60, .40, .0), 1.25, 0.30, 1200, 0.4, 0.5, 2, 0, 20,
     {"DX51D+Z275": .50, "1.4301": .30, "EN AW-5754": .20}, (.75, .15, .0, .0, .10), 0.0),
    ("GUARD", "Machine guard", 0.08, (.30, .50, .20), 2.0, 0.30, 1000, 0.4, 0.7, 5, 3, 12,
     {"DC01": .45, "S235JR": .35, "1.4301": .20}, (.10, .75, .10, .0, .05), 0.3),
    ("TRAY", "Tray", 0.06, (.60, .40, .0), 1.5, 0.25, 600, 0.4, 0.7, 4, 0, 30,
     {"1.4301": .55, "1.4404": .15, "EN AW-5754": .30}, (.70, .0, .0, .0, .30), 0.0),
]  # fmt: skip
F = {f[0]: i for i, f in enumerate(FAMILIES)}
FAM_TYPE = np.array([f[0] for f in FAMILIES], dtype=object)
FAM_NAME = np.array([f[1] for f in FAMILIES], dtype=object)
FAM_SHARE = np.array([f[2] for f in FAMILIES])
FAM_ITYPE_P = np.array([f[3] for f in FAMILIES])
FAM_THICK = np.array([f[4] for f in FAMILIES])
FAM_THICK_SIGMA = np.array([f[5] for f in FAMILIES])
FAM_LEN = np.array([f[6] for f in FAMILIES], dtype=float)
FAM_LEN_SIGMA = np.array([f[7] for f in FAMILIES])
FAM_WIDTH_RATIO = np.array([f[8] for f in FAMILIES])
FAM_BENDS = np.array([f[9] for f in FAMILIES], dtype=float)
FAM_INSERTS = np.array([f[10] for f in FAMILIES], dtype=float)
FAM_QTY = np.array([f[11] for f in FAMILIES], dtype=float)
FAM_MAT_P = np.zeros((len(FAMILIES), len(MATERIALS)))
for _f, _fam in enumerate(FAMILIES):
    for _m, _p in _fam[12].items():
        FAM_MAT_P[_f, M[_m]] = _p
FAM_COAT_P = np.array([f[13] for f in FAMILIES])
FAM_TUBE = np.array([f[14] for f in FAMILIES])

# slots: key, JOB_CD, JOB_NM, setup min, run min/unit, exponents (length, width, thickness, bends,
# inserts), material-sensitive, vendor lead days
SLOTS = [
    ("LASER", "LASER", "Laser cutting", 10, 1.2, 0.8, 0.5, 0.7, 0, 0.2, True, 0),
    ("PLASMA", "PLASMA", "Plasma cutting", 15, 2.5, 0.8, 0.5, 0.5, 0, 0, True, 0),
    ("PUNCH", "PUNCH", "Turret punching", 25, 0.9, 0.6, 0.4, 0.3, 0, 0.6, True, 0),
    ("SAW", "SAW", "Saw cutting", 10, 1.5, 0.2, 0.3, 0.6, 0, 0, True, 0),
    ("DEBURR", "DEBURR", "Deburring", 5, 0.6, 0.7, 0.4, 0.2, 0, 0, False, 0),
    ("BEVEL", "BEVEL", "Weld bevel preparation", 15, 3.0, 0.8, 0.2, 0.8, 0, 0, True, 0),
    ("INSERT", "INSERT", "Press-fit inserts", 10, 0.25, 0.0, 0.0, 0.0, 0, 1.0, False, 0),
    ("BEND_1", "BEND", "Press brake bending", 20, 0.45, 0.4, 0.1, 0.4, 0.9, 0, True, 0),
    ("BEND_2", "BEND", "Press brake bending", 30, 0.90, 0.4, 0.1, 0.4, 0.9, 0, True, 0),
    ("ROLL", "ROLL", "Plate rolling", 30, 4.0, 0.8, 0.3, 0.6, 0, 0, True, 0),
    ("TACK", "TACK", "Fit-up and tack welding", 15, 6.0, 0.6, 0.4, 0.2, 0, 0, True, 0),
    ("WELD_1", "WELD", "Welding", 20, 14.0, 0.8, 0.4, 0.8, 0, 0, True, 0),
    ("WELD_2", "WELD", "Welding", 15, 8.0, 0.8, 0.4, 0.9, 0, 0, True, 0),
    ("STRAIGHTEN", "STRAIGHTEN", "Straightening", 10, 5.0, 0.7, 0.3, 0.3, 0, 0, False, 0),
    ("GRIND", "GRIND", "Weld seam grinding", 5, 4.0, 0.8, 0.4, 0.3, 0, 0, True, 0),
    ("NDT", "NDT", "Weld inspection (NDT)", 0, 3.0, 0.7, 0.3, 0.3, 0, 0, False, 5),
    ("MACHINE", "MACHINE", "Post-weld machining", 60, 18.0, 0.6, 0.4, 0.2, 0, 0, True, 10),
    ("PICKLE", "PICKLE", "Pickling and passivation", 0, 2.0, 0.8, 0.8, 0.0, 0, 0, False, 6),
    ("BRUSH", "BRUSH", "Surface brushing", 10, 1.5, 0.9, 0.9, 0.0, 0, 0, False, 0),
    ("BLAST", "BLAST", "Shot blasting", 10, 1.8, 0.9, 0.9, 0.0, 0, 0, False, 0),
    ("PRETREAT", "PRETREAT", "Pretreatment (phosphating)", 5, 0.8, 0.9, 0.9, 0.0, 0, 0, False, 0),
    ("POWDER", "POWDER", "Powder coating", 15, 2.0, 0.9, 0.9, 0.0, 0, 0, False, 0),
    ("PAINT", "PAINT", "Wet painting", 20, 3.5, 0.9, 0.9, 0.0, 0, 0, False, 0),
    ("GALV", "GALV", "Hot-dip galvanising", 0, 1.2, 0.9, 0.9, 0.3, 0, 0, False, 8),
    ("WASH", "WASH", "Degreasing wash", 5, 0.5, 0.8, 0.8, 0.0, 0, 0, False, 0),
    ("ASSY", "ASSY", "Assembly", 15, 12.0, 0.5, 0.3, 0.0, 0.2, 0.4, False, 0),
    ("INSPECT", "INSPECT", "Final inspection", 5, 1.5, 0.5, 0.3, 0.0, 0.1, 0.1, False, 0),
    ("PACK", "PACK", "Packing", 5, 1.0, 0.6, 0.5, 0.0, 0, 0, False, 0),
]
S = {s[0]: i for i, s in enumerate(SLOTS)}
N_SLOTS = len(SLOTS)
SLOT_SETUP = np.array([s[3] for s in SLOTS], dtype=float)
SLOT_RUN = np.array([s[4] for s in SLOTS], dtype=float)
SLOT_EXP = np.array([s[5:10] for s in SLOTS], dtype=float)  # length, width, thickness, bends, inserts
SLOT_MAT = np.array([s[10] for s in SLOTS])
_droppable = np.ones(N_SLOTS, dtype=bool)
_droppable[[S["LASER"], S["PLASMA"], S["PUNCH"], S["SAW"], S["WELD_1"], S["INSPECT"]]] = False
_extra = np.zeros(N_SLOTS, dtype=bool)
_extra[[S["DEBURR"], S["STRAIGHTEN"], S["GRIND"], S["PACK"], S["BRUSH"], S["WASH"]]] = True

WORK_CENTRES = [
    ("LAS-01", "Fibre laser 3015"), ("LAS-02", "Fibre laser 4020"), ("PLS-01", "Plasma table"),
    ("PUN-01", "Turret punch press"), ("SAW-01", "Band saw"), ("SAW-02", "Cold saw"),
    ("DB-01", "Deburring machine"), ("DB-02", "Manual deburring large"), ("BV-01", "Bevelling machine"),
    ("PEM-01", "Insert press"), ("PB-01", "Press brake 100 t"), ("PB-02", "Press brake 220 t"),
    ("PB-03", "Press brake 400 t"), ("PB-04", "Panel bender"), ("RL-01", "Plate rolls"),
    ("WT-01", "Welding table 1"), ("WT-02", "Welding table 2 (large)"), ("WR-01", "Welding robot cell"),
    ("WS-01", "TIG welding stainless/aluminium"), ("ST-01", "Straightening press"), ("GR-01", "Grinding booth"),
    ("V-NDT01", "NDT vendor"), ("MC-01", "Machining centre"), ("V-MC01", "Machining vendor"),
    ("V-PK01", "Pickling vendor"), ("BR-01", "Brushing machine"), ("BL-01", "Shot blast cabinet"),
    ("BL-02", "Shot blast room"), ("PT-01", "Pretreatment line"), ("PC-01", "Powder coating line"),
    ("PC-02", "Powder booth large"), ("PN-01", "Paint booth"), ("WS-02", "Washing cabinet"), ("V-GV01", "Galvanising vendor"),
    ("AS-01", "Assembly bench"), ("AS-02", "Assembly bay large"), ("QC-01", "Inspection"),
    ("QC-02", "Inspection large"), ("PK-01", "Packing"), ("PK-02", "Crating large"),
]  # fmt: skip
W, RES_CODE, RES_NAME, RES_OUT = res_table(WORK_CENTRES)
_one = lambda code: ((code, None),) * 3  # noqa: E731
RES_PRIMARY, RES_ALT = res_plan(
    [s[0] for s in SLOTS],
    {
        "LASER": (("LAS-01", "LAS-02"), ("LAS-01", "LAS-02"), ("LAS-02", None)),
        "PLASMA": _one("PLS-01"),
        "PUNCH": _one("PUN-01"),
        "SAW": (("SAW-01", "SAW-02"), ("SAW-01", "SAW-02"), ("SAW-01", None)),
        "DEBURR": (("DB-01", None), ("DB-01", None), ("DB-02", None)),
        "BEVEL": _one("BV-01"),
        "INSERT": _one("PEM-01"),
        "BEND_1": (("PB-01", "PB-04"), ("PB-02", None), ("PB-03", None)),
        "BEND_2": (("PB-01", None), ("PB-02", "PB-03"), ("PB-03", None)),
        "ROLL": _one("RL-01"),
        "TACK": (("WT-01", "WT-02"), ("WT-01", "WT-02"), ("WT-02", None)),
        "WELD_1": (("WR-01", "WT-01"), ("WT-01", "WT-02"), ("WT-02", None)),
        "WELD_2": (("WT-01", "WT-02"), ("WT-02", "WT-01"), ("WT-02", None)),
        "STRAIGHTEN": _one("ST-01"),
        "GRIND": _one("GR-01"),
        "NDT": _one("V-NDT01"),
        "MACHINE": (("MC-01", None), ("MC-01", None), ("V-MC01", None)),
        "PICKLE": _one("V-PK01"),
        "BRUSH": _one("BR-01"),
        "BLAST": (("BL-01", None), ("BL-01", "BL-02"), ("BL-02", None)),
        "PRETREAT": _one("PT-01"),
        "POWDER": (("PC-01", None), ("PC-01", "PC-02"), ("PC-02", None)),
        "PAINT": _one("PN-01"),
        "GALV": _one("V-GV01"),
        "WASH": _one("WS-02"),
        "ASSY": (("AS-01", None), ("AS-01", "AS-02"), ("AS-02", None)),
        "INSPECT": (("QC-01", None), ("QC-01", None), ("QC-02", None)),
        "PACK": (("PK-01", None), ("PK-01", None), ("PK-02", None)),
    },
    W,
)
SIZE_BOUNDS = (800.0, 2500.0)  # blank length (OUTDIAMETER) mm
SIZE_SETUP_FACTOR = np.array([0.8, 1.0, 1.6])
ALT_SHARE = 0.2
PLANT = Plant(
    slot_job=np.array([s[1] for s in SLOTS], dtype=object),
    slot_name=np.array([s[2] for s in SLOTS], dtype=object),
    slot_lead_days=np.array([s[11] for s in SLOTS], dtype=float),
    droppable=_droppable,
    extra_ok=_extra,
    res_code=RES_CODE,
    res_name=RES_NAME,
    res_out=RES_OUT,
)

DRIFT_RUN_FACTOR_BY_RES = {"PB-02": 1.7, "LAS-01": 1.5, "WT-01": 1.6}
DRIFT_RUN_FACTOR_BY_MATERIAL = {"EN AW-5754": 1.4}


def operation_mask(
    fam: np.ndarray,
    itype: np.ndarray,
    mat: np.ndarray,
    raw: np.ndarray,
    thick: np.ndarray,
    bends: np.ndarray,
    inserts: np.ndarray,
    coat: np.ndarray,
    weld_class: np.ndarray,
    segment: np.ndarray,
    standard: np.ndarray,
) -> np.ndarray:
    """The rule-based routing (item x slot) from the true attributes; blank size picks no step."""
    n = len(fam)
    cls = MAT_CLASS[mat]
    steel = cls == STEEL
    stainless = cls == STAINLESS
    weld = itype == WELDMENT
    food = segment == FOOD
    saw = np.isin(raw, [TUBE, PROFILE])
    laser_max = np.select([np.isin(cls, [STEEL, GALVANISED]), stainless], [15.0, 10.0], 8.0)
    punch = ~saw & (thick <= 2.5) & (inserts >= 4)
    mask = np.zeros((n, N_SLOTS), dtype=bool)
    mask[:, S["SAW"]] = saw
    mask[:, S["PUNCH"]] = punch
    mask[:, S["LASER"]] = ~saw & ~punch & (thick <= laser_max)
    mask[:, S["PLASMA"]] = ~saw & ~punch & (thick > laser_max)
    mask[:, S["DEBURR"]] = ~saw | (thick >= 3)
    mask[:, S["BEVEL"]] = weld & (thick >= 8)
    mask[:, S["INSERT"]] = (inserts > 0) & ~saw
    mask[:, S["BEND_1"]] = bends >= 1
    mask[:, S["BEND_2"]] = (bends >= 7) | ((thick >= 10) & (bends >= 3))
    mask[:, S["ROLL"]] = fam == F["DUCT"]
    mask[:, S["TACK"]] = weld
    mask[:, S["WELD_1"]] = weld
    mask[:, S["WELD_2"]] = weld & ((thick >= 8) | (weld_class == 2))
    mask[:, S["STRAIGHTEN"]] = weld & (thick < 4) & np.isin(fam, [F["FRAME"], F["CHASSIS"], F["CABINET"], F["ENCLOSURE"]])
    mask[:, S["GRIND"]] = weld & ((weld_class >= 1) | food)
    mask[:, S["NDT"]] = weld & (weld_class == 2)
    mask[:, S["MACHINE"]] = weld & (weld_class >= 1) & np.isin(fam, [F["FRAME"], F["CHASSIS"]])
    mask[:, S["PICKLE"]] = stainless & (weld | food)
    mask[:, S["BRUSH"]] = stainless & ((coat == C_BRUSHED) | (food & ~weld))
    painted = np.isin(coat, [C_POWDER, C_WET])
    mask[:, S["BLAST"]] = steel & (painted | (coat == C_HDG)) & (thick >= 3)
    mask[:, S["PRETREAT"]] = painted & ~mask[:, S["BLAST"]]
    mask[:, S["POWDER"]] = coat == C_POWDER
    mask[:, S["PAINT"]] = coat == C_WET
    mask[:, S["GALV"]] = coat == C_HDG
    mask[:, S["WASH"]] = ~painted & (coat != C_HDG) & (cls != STEEL) & ((bends >= 1) | (inserts > 0))
    mask[:, S["ASSY"]] = (itype == ASSY) | (weld & np.isin(fam, [F["CABINET"], F["ENCLOSURE"]]))
    mask[:, S["INSPECT"]] = True
    mask[:, S["PACK"]] = painted | (itype == ASSY) | standard
    return mask


def generate(n: int, seed: int, drift_from: date | None, today: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng([seed, 3])
    today_s = int(np.datetime64(today, "s").astype(np.int64))

    # ---------------------------------------------------------------- items
    fam = _choice(rng, n, FAM_SHARE)
    itype = _choice_rows(rng, FAM_ITYPE_P[fam])
    segment = _choice(rng, n, SEGMENT_P)
    mat = _choice_rows(rng, FAM_MAT_P[fam])
    food_ss = (segment == FOOD) & (rng.random(n) < 0.8)
    mat = np.where(food_ss, np.where(rng.random(n) < 0.7, M["1.4301"], M["1.4404"]), mat)
    cls = MAT_CLASS[mat]
    raw = np.where(rng.random(n) < FAM_TUBE[fam], np.where(rng.random(n) < 0.5, TUBE, PROFILE), SHEET)
    thick_draw = np.exp(np.log(FAM_THICK[fam]) + FAM_THICK_SIGMA[fam] * rng.standard_normal(n))
    thick = GAUGES[np.abs(np.log(GAUGES)[None, :] - np.log(thick_draw)[:, None]).argmin(axis=1)]
    raw = np.where((raw == SHEET) & (thick >= 6), PLATE, raw)
    length = np.round(np.exp(np.log(FAM_LEN[fam]) + FAM_LEN_SIGMA[fam] * rng.standard_normal(n)).clip(40, 12000))
    width = np.round((length * FAM_WIDTH_RATIO[fam] * np.exp(rng.normal(0, 0.3, n))).clip(20, 3000))
    bends = np.where(raw >= TUBE, 0, rng.poisson(FAM_BENDS[fam]))
    inserts = np.where(rng.random(n) < 0.5, rng.poisson(FAM_INSERTS[fam]), 0)
    coat = _choice_rows(rng, FAM_COAT_P[fam])
    coat = np.where((cls == STAINLESS) & ~np.isin(coat, [C_NONE, C_BRUSHED]), np.where(rng.random(n) < 0.5, C_NONE, C_BRUSHED), coat)
    coat = np.where((cls != STAINLESS) & (coat == C_BRUSHED), C_NONE, coat)
    coat = np.where((cls == ALU) & np.isin(coat, [C_WET, C_HDG]), C_POWDER, coat)
    coat = np.where((cls == GALVANISED) & (coat == C_HDG), C_NONE, coat)
    coat = np.where((coat == C_HDG) & (thick < 2), C_WET, coat)
    heavy_duty = np.isin(segment, [2, 3])  # rail and energy ask for better welds
    weld_class = _choice_rows(rng, np.where(heavy_duty[:, None], [[0.15, 0.45, 0.40]], [[0.45, 0.45, 0.10]]))
    size = size_class(length, SIZE_BOUNDS)
    standard = rng.random(n) < 0.3

    mask = operation_mask(fam, itype, mat, raw, thick, bends, inserts, coat, weld_class, segment, standard)
    perturb_masks(rng, mask, PLANT, np.full(n, 0.025), np.full(n, 0.025))

    std_item = np.exp(rng.normal(0, 0.12, n))
    item_insrt = today_s - rng.integers(30 * DAY_S, 8 * 365 * DAY_S, n)

    def rows(it: np.ndarray, sl: np.ndarray):
        m = len(it)
        sc = size[it]
        primary = RES_PRIMARY[sl, sc]
        alt = RES_ALT[sl, sc]
        use_alt = (alt >= 0) & (rng.random(m) < ALT_SHARE)
        res = np.where(use_alt, alt, primary)
        alt = np.where(use_alt, primary, alt)
        heavy_bend = np.isin(sl, [S["BEND_1"], S["BEND_2"]]) & (thick[it] >= 8)
        tig = np.isin(sl, [S["TACK"], S["WELD_1"], S["WELD_2"]]) & np.isin(MAT_CLASS[mat[it]], [STAINLESS, ALU])
        res = np.where(heavy_bend, W["PB-03"], np.where(tig, W["WS-01"], res))
        alt = np.where(heavy_bend | tig, -1, alt)
        exps = SLOT_EXP[sl]
        bend_count = np.where(sl == S["BEND_2"], np.maximum(bends[it] - 6, 1), np.minimum(np.maximum(bends[it], 1), 6))
        run = SLOT_RUN[sl] * (length[it] / 1000.0) ** exps[:, 0] * (width[it] / 500.0) ** exps[:, 1]
        run = run * (thick[it] / 3.0) ** exps[:, 2] * bend_count ** exps[:, 3] * np.maximum(inserts[it], 1) ** exps[:, 4]
        mat_f = np.where(SLOT_MAT[sl], MAT_FACTOR[mat[it]], 1.0)
        run = run * mat_f * std_item[it]
        setup = SLOT_SETUP[sl] * SIZE_SETUP_FACTOR[sc] * mat_f**0.5
        return res, alt, setup, run

    item_codes = _codes(np.full(n, PREFIX), np.arange(1, n + 1), max(6, len(str(n))))
    res_f = np.ones(len(WORK_CENTRES))
    for code, factor in DRIFT_RUN_FACTOR_BY_RES.items():
        res_f[W[code]] = factor
    mat_f_d = np.ones(len(MATERIALS))
    for code, factor in DRIFT_RUN_FACTOR_BY_MATERIAL.items():
        mat_f_d[M[code]] = factor
    qty_median = FAM_QTY[fam] * np.array([1.5, 1.0, 0.3])[size] * np.where(standard, 2.0, 1.0)
    routings, work_results = build_history(
        rng,
        today_s=today_s,
        item_codes=item_codes,
        item_insrt=item_insrt,
        mask=mask,
        plant=PLANT,
        row_fn=rows,
        revisions=Revisions(share=0.30, three_share=0.25, scenario_p=(0.50, 0.25, 0.15, 0.10)),
        orders=Orders(
            produced_share=0.6,
            n_orders_p=(0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1),
            qty_median=qty_median,
            qty_sigma=0.9,
            tail_share=0.03,
            max_qty=20_000.0,
        ),
        drift=Drift(res_factor=res_f, item_factor=mat_f_d[mat]),
        drift_from=drift_from,
    )

    # ---------------------------------------------------------------- item master frame
    def opt(values: np.ndarray, share: float) -> np.ndarray:
        return _blank(rng, values, share)

    name = np.strings.add(np.strings.add(FAM_NAME[fam].astype(str), " "), MAT_CODE[mat].astype(str))
    name = np.strings.add(np.strings.add(name, " t"), np.char.mod("%g", thick))
    name = np.strings.add(np.strings.add(name, " "), np.strings.add(length.astype(np.int64).astype(str), "x"))
    name = np.strings.add(name, width.astype(np.int64).astype(str))
    idx, zeros = np.arange(n), np.zeros(n, dtype=np.int64)
    none = text(np.array([None]), zeros)
    items = pd.DataFrame(
        {
            "ITEM_CD": text(item_codes),
            "ITEM_NM": opt_text(rng, name, idx, 0.01),
            "PART_TYPE": text(FAM_TYPE, fam),
            "PartNm": opt_text(rng, FAM_NAME, fam, 0.05),
            "ITEM_TYPE": opt_text(rng, ITEM_TYPES, itype, 0.02),
            "ITEM_ACCT": text(np.array(["30", "20"]), standard),
            "ITEM_UNIT": text(np.array(["EA"]), zeros),
            "ITEM_MATERIAL": opt_text(rng, MAT_CODE, mat, 0.02),
            "MATERIAL_DESC": opt_text(rng, MAT_DESC, mat, 0.08),
            "RAW_MATL_KIND": opt_text(rng, RAW_KINDS, raw, 0.05),
            "ITEM_GRP1": opt_text(rng, SEGMENTS, segment, 0.04),
            "GROUP1": opt_text(rng, WELD_CLASSES, np.where(itype == WELDMENT, weld_class, -1), 0.04),
            "GROUP2": opt_text(rng, COATINGS, coat, 0.05),
            "STANDARD_YN": text(np.array(["N", "Y"]), standard),
            "DRAW_NO": opt_text(rng, _codes(np.full(n, "FD"), rng.permutation(n) + 300000, 7), idx, 0.05),
            "DRAW_REV": opt_text(rng, np.array(list("ABCDEF")), _choice(rng, n, [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]), 0.08),
            "SealTypeGrup": none,
            "IN_SEALTYPE_CD": none,
            "MID_SEALTYPE_CD": none,
            "OUT_SEALTYPE_CD": none,
            "OUTDIAMETER": opt(length, 0.03),
            "INDIAMETER": opt(width, 0.05),
            "OUTTHICKNESS": opt(thick, 0.03),
            "IN_SEALSIZE": np.full(n, np.nan),
            "MID_SEALSIZE": np.full(n, np.nan),
            "OUT_SEALSIZE": np.full(n, np.nan),
            "ROTATE_CLOCKWISE": opt(bends.astype(float), 0.05),
            "ROTATE_CTRCLOCKWISE": opt(inserts.astype(float), 0.05),
            "INSRT_DT": _dt(item_insrt),
        },
        columns=ITEM_COLUMNS,
    )
    return items, routings, work_results
