"""The `jobshop` demo profile: a machining job shop (see `erp.generator` for what a model can learn)."""

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

PREFIX = "JS"

# --- materials: code, description, class, machinability factor, heat-treat spec probabilities ---------
STEEL, STRUCTURAL, STAINLESS, TOOL, ALU, COPPER, PLASTIC, TITANIUM = range(8)
HEAT_SPECS = np.array(["NONE", "QT", "CASE-HARD", "INDUCTION", "NITRIDE", "THROUGH-HARD"], dtype=object)
H = {h: i for i, h in enumerate(HEAT_SPECS)}
MATERIALS = [
    ("C45", "Carbon steel C45 (1.0503)", STEEL, 1.00, {"NONE": 0.50, "INDUCTION": 0.35, "QT": 0.15}),
    ("42CrMo4", "Alloy steel 42CrMo4 (1.7225)", STEEL, 1.20, {"QT": 0.50, "NITRIDE": 0.30, "INDUCTION": 0.10, "NONE": 0.10}),
    ("16MnCr5", "Case-hardening steel 16MnCr5 (1.7131)", STEEL, 1.10, {"CASE-HARD": 0.85, "NONE": 0.15}),
    ("S355J2", "Structural steel S355J2+N", STRUCTURAL, 0.90, {"NONE": 1.0}),
    ("1.4301", "Stainless steel X5CrNi18-10 (304)", STAINLESS, 1.45, {"NONE": 1.0}),
    ("1.4404", "Stainless steel X2CrNiMo17-12-2 (316L)", STAINLESS, 1.55, {"NONE": 1.0}),
    ("1.2379", "Tool steel X153CrMoV12 (D2)", TOOL, 1.70, {"THROUGH-HARD": 0.85, "NITRIDE": 0.15}),
    ("EN AW-6082", "Aluminium AlSi1MgMn T6", ALU, 0.45, {"NONE": 1.0}),
    ("EN AW-7075", "Aluminium AlZn5.5MgCu T651", ALU, 0.55, {"NONE": 1.0}),
    ("CuZn39Pb3", "Free-cutting brass CW614N", COPPER, 0.40, {"NONE": 1.0}),
    ("CuSn12", "Tin bronze CC483K", COPPER, 0.65, {"NONE": 1.0}),
    ("POM-C", "Acetal copolymer POM-C", PLASTIC, 0.35, {"NONE": 1.0}),
    ("PEEK", "PEEK natural", PLASTIC, 0.50, {"NONE": 1.0}),
    ("Ti6Al4V", "Titanium grade 5 Ti6Al4V", TITANIUM, 2.10, {"NONE": 1.0}),
]
M = {m[0]: i for i, m in enumerate(MATERIALS)}
MAT_CODE = np.array([m[0] for m in MATERIALS], dtype=object)
MAT_DESC = np.array([m[1] for m in MATERIALS], dtype=object)
MAT_CLASS = np.array([m[2] for m in MATERIALS])
MAT_FACTOR = np.array([m[3] for m in MATERIALS])
MAT_HEAT_P = np.zeros((len(MATERIALS), len(HEAT_SPECS)))
for _m, _mat in enumerate(MATERIALS):
    for _h, _p in _mat[4].items():
        MAT_HEAT_P[_m, H[_h]] = _p

TOLERANCES = np.array(["ISO 2768-m", "ISO 2768-f", "IT7", "IT6"], dtype=object)  # GROUP1, coarse to fine
FINISHES = np.array(["Ra 3.2", "Ra 1.6", "Ra 0.8", "Ra 0.4"], dtype=object)  # GROUP2, rough to fine
RAW_KINDS = np.array(["BAR", "TUBE", "PLATE", "FORGING", "CASTING"], dtype=object)
R = {k: i for i, k in enumerate(RAW_KINDS)}

# --- part families --------------------------------------------------------------------------------
ROUND, PRISM = 0, 1
FAMILIES = [
    # PART_TYPE, PartNm, share, shape, bore, OD/width median mm, sigma, ID/OD, length/OD, qty median,
    # materials {code: p}, tolerance class probabilities (m, f, IT7, IT6), raw kind {kind: p}
    ("SHAFT", "Shaft", 0.16, ROUND, False, 35, 0.50, 0.0, 6.0, 20,
     {"C45": .25, "42CrMo4": .25, "16MnCr5": .12, "S355J2": .08, "1.4301": .10, "1.4404": .08, "EN AW-6082": .06, "Ti6Al4V": .06},
     (.20, .30, .35, .15), {"BAR": 1.0}),
    ("FLANGE", "Flange", 0.12, ROUND, True, 140, 0.45, 0.45, 0.25, 8,
     {"S355J2": .30, "C45": .15, "1.4301": .20, "1.4404": .15, "EN AW-6082": .10, "42CrMo4": .10},
     (.45, .35, .15, .05), {"PLATE": .4, "FORGING": .4, "BAR": .2}),
    ("HOUSING", "Housing", 0.08, PRISM, True, 180, 0.40, 0.50, 0.8, 4,
     {"S355J2": .25, "EN AW-6082": .25, "EN AW-7075": .10, "1.4404": .10, "C45": .10, "CuSn12": .05, "42CrMo4": .15},
     (.30, .35, .25, .10), {"CASTING": .35, "PLATE": .35, "FORGING": .30}),
    ("BRACKET", "Bracket", 0.12, PRISM, False, 90, 0.50, 0.0, 0.3, 25,
     {"S355J2": .40, "EN AW-6082": .30, "1.4301": .15, "EN AW-7075": .10, "C45": .05},
     (.60, .30, .08, .02), {"PLATE": .8, "BAR": .2}),
    ("BUSHING", "Bushing", 0.12, ROUND, True, 40, 0.45, 0.70, 1.0, 50,
     {"CuSn12": .25, "CuZn39Pb3": .15, "POM-C": .15, "PEEK": .05, "42CrMo4": .15, "16MnCr5": .15, "1.4404": .10},
     (.15, .30, .35, .20), {"TUBE": .6, "BAR": .4}),
    ("GEAR", "Spur gear", 0.10, ROUND, True, 90, 0.45, 0.30, 0.35, 12,
     {"16MnCr5": .45, "42CrMo4": .30, "C45": .15, "POM-C": .05, "CuSn12": .05},
     (.10, .30, .40, .20), {"FORGING": .5, "BAR": .5}),
    ("PIN", "Pin", 0.12, ROUND, False, 14, 0.45, 0.0, 4.0, 200,
     {"C45": .25, "42CrMo4": .15, "1.4301": .20, "1.4404": .10, "1.2379": .10, "CuZn39Pb3": .10, "16MnCr5": .10},
     (.30, .30, .25, .15), {"BAR": 1.0}),
    ("BLOCK", "Manifold block", 0.08, PRISM, False, 120, 0.45, 0.0, 0.7, 3,
     {"EN AW-6082": .30, "EN AW-7075": .15, "C45": .10, "1.2379": .20, "1.4404": .10, "42CrMo4": .10, "Ti6Al4V": .05},
     (.20, .35, .30, .15), {"PLATE": .6, "BAR": .4}),
    ("SPACER", "Spacer ring", 0.10, ROUND, True, 60, 0.50, 0.60, 0.2, 40,
     {"C45": .20, "S355J2": .20, "1.4301": .20, "EN AW-6082": .20, "POM-C": .10, "PEEK": .10},
     (.40, .30, .20, .10), {"TUBE": .5, "BAR": .3, "PLATE": .2}),
]  # fmt: skip
F = {f[0]: i for i, f in enumerate(FAMILIES)}
FAM_TYPE = np.array([f[0] for f in FAMILIES], dtype=object)
FAM_NAME = np.array([f[1] for f in FAMILIES], dtype=object)
FAM_SHARE = np.array([f[2] for f in FAMILIES])
FAM_SHAPE = np.array([f[3] for f in FAMILIES])
FAM_BORE = np.array([f[4] for f in FAMILIES])
FAM_OD = np.array([f[5] for f in FAMILIES], dtype=float)
FAM_OD_SIGMA = np.array([f[6] for f in FAMILIES])
FAM_ID_RATIO = np.array([f[7] for f in FAMILIES])
FAM_LEN_RATIO = np.array([f[8] for f in FAMILIES])
FAM_QTY = np.array([f[9] for f in FAMILIES], dtype=float)
FAM_MAT_P = np.zeros((len(FAMILIES), len(MATERIALS)))
FAM_TOL_P = np.array([f[11] for f in FAMILIES])
FAM_RAW_P = np.zeros((len(FAMILIES), len(RAW_KINDS)))
for _f, _fam in enumerate(FAMILIES):
    for _m, _p in _fam[10].items():
        FAM_MAT_P[_f, M[_m]] = _p
    for _k, _p in _fam[12].items():
        FAM_RAW_P[_f, R[_k]] = _p

# --- operation slots (canonical order): key, JOB_CD, JOB_NM, setup min, run min/unit at 50 mm,
# diameter exponent, length exponent, material-sensitive, tolerance-sensitive, vendor lead days
SLOTS = [
    ("SAW", "SAW", "Saw cutting", 10, 0.8, 0.9, 0.0, True, False, 0),
    ("TURN_R", "TURN", "CNC turning", 25, 6.0, 1.0, 0.7, True, False, 7),
    ("MILL_R", "MILL", "Milling", 40, 8.0, 0.9, 0.5, True, False, 7),
    ("DRILL", "DRILL", "Drilling and tapping", 20, 2.5, 0.6, 0.2, True, False, 0),
    ("HOB", "HOB", "Gear hobbing", 45, 9.0, 1.2, 0.5, True, True, 0),
    ("INSPECT_1", "INSPECT", "In-process inspection", 10, 3.5, 0.4, 0.2, False, True, 0),
    ("HEAT", "HEAT", "Heat treatment", 0, 2.5, 0.8, 0.5, False, False, 7),
    ("TURN_F", "TURN", "CNC turning", 20, 2.2, 1.0, 0.7, True, True, 0),
    ("MILL_F", "MILL", "Milling", 35, 5.5, 0.9, 0.5, True, True, 0),
    ("EDM", "EDM", "Wire EDM", 30, 25.0, 0.7, 0.8, False, True, 0),
    ("GRIND_1", "GRIND", "Grinding", 25, 4.5, 0.9, 0.7, True, True, 0),
    ("GRIND_2", "GRIND", "Grinding", 20, 2.2, 0.9, 0.7, True, True, 0),
    ("HONE", "HONE", "Honing", 15, 3.0, 0.8, 0.6, True, True, 0),
    ("DEBURR", "DEBURR", "Deburring", 5, 1.2, 0.6, 0.2, False, False, 0),
    ("NITRIDE", "NITRIDE", "Gas nitriding", 0, 2.0, 0.7, 0.4, False, False, 10),
    ("ANODISE", "ANODISE", "Anodising", 0, 1.5, 0.8, 0.4, False, False, 8),
    ("PLATE", "PLATE", "Zinc plating", 0, 1.0, 0.8, 0.4, False, False, 6),
    ("BLACKOX", "BLACKOX", "Black oxide", 10, 0.4, 0.6, 0.3, False, False, 0),
    ("PASSIVATE", "PASSIVATE", "Passivation", 0, 0.8, 0.6, 0.3, False, False, 6),
    ("WASH", "WASH", "Industrial washing", 5, 0.5, 0.5, 0.2, False, False, 0),
    ("INSPECT_F", "INSPECT", "Final inspection", 10, 1.6, 0.4, 0.2, False, True, 0),
]
S = {s[0]: i for i, s in enumerate(SLOTS)}
N_SLOTS = len(SLOTS)
SLOT_SETUP = np.array([s[3] for s in SLOTS], dtype=float)
SLOT_RUN = np.array([s[4] for s in SLOTS], dtype=float)
SLOT_OD_EXP = np.array([s[5] for s in SLOTS], dtype=float)
SLOT_LEN_EXP = np.array([s[6] for s in SLOTS], dtype=float)
SLOT_MAT = np.array([s[7] for s in SLOTS])
SLOT_TOL = np.array([s[8] for s in SLOTS])
_droppable = np.ones(N_SLOTS, dtype=bool)
_droppable[[S["TURN_R"], S["MILL_R"], S["INSPECT_F"]]] = False
_extra = np.zeros(N_SLOTS, dtype=bool)
_extra[[S["DEBURR"], S["WASH"], S["INSPECT_1"], S["DRILL"]]] = True

WORK_CENTRES = [
    ("SAW-01", "Band saw"), ("SAW-02", "Band saw large"),
    ("LT-S01", "CNC lathe small 1"), ("LT-S02", "CNC lathe small 2"), ("SW-01", "Swiss-type lathe"),
    ("LT-M01", "CNC lathe medium 1"), ("LT-M02", "CNC lathe medium 2"), ("LT-L01", "CNC lathe large"),
    ("VTL-01", "Vertical turning lathe"), ("VMC-S01", "Vertical machining centre small"),
    ("VMC-M01", "Vertical machining centre medium"), ("HMC-L01", "Horizontal machining centre large"),
    ("5AX-01", "5-axis machining centre 1"), ("5AX-02", "5-axis machining centre 2"),
    ("DR-01", "Drill press"), ("DR-02", "Radial drill"), ("HB-01", "Gear hobbing machine"),
    ("HB-02", "Gear hobbing machine large"), ("EDM-W01", "Wire EDM 1"), ("EDM-W02", "Wire EDM 2"),
    ("GR-C01", "Cylindrical grinder small"), ("GR-C02", "Cylindrical grinder medium"),
    ("GR-C03", "Cylindrical grinder large"), ("GR-F01", "Surface grinder"), ("GR-F02", "Surface grinder large"),
    ("HN-01", "Honing machine"), ("HN-02", "Honing machine large"), ("DB-01", "Deburring bench"),
    ("DB-02", "Vibratory finisher"), ("WS-01", "Parts washer"), ("BO-01", "Black oxide line"),
    ("QC-01", "Inspection room"), ("QC-02", "CMM inspection"), ("QC-03", "Inspection large parts"),
    ("V-HT01", "Heat treatment vendor A"), ("V-HT02", "Heat treatment vendor B"), ("V-NT01", "Nitriding vendor"),
    ("V-AN01", "Anodising vendor"), ("V-ZN01", "Zinc plating vendor"), ("V-PS01", "Passivation vendor"),
    ("V-MC01", "Machining vendor"),
]  # fmt: skip
W, RES_CODE, RES_NAME, RES_OUT = res_table(WORK_CENTRES)
_one = lambda code: ((code, None),) * 3  # noqa: E731
RES_PRIMARY, RES_ALT = res_plan(
    [s[0] for s in SLOTS],
    {
        "SAW": (("SAW-01", None), ("SAW-01", None), ("SAW-02", None)),
        "TURN_R": (("LT-S01", "LT-S02"), ("LT-M01", "LT-M02"), ("LT-L01", "VTL-01")),
        "MILL_R": (("VMC-S01", None), ("VMC-M01", "5AX-02"), ("HMC-L01", None)),
        "DRILL": (("DR-01", None), ("DR-01", "VMC-M01"), ("DR-02", None)),
        "HOB": (("HB-01", None), ("HB-01", None), ("HB-02", None)),
        "INSPECT_1": (("QC-01", "QC-02"), ("QC-02", None), ("QC-03", None)),
        "HEAT": (("V-HT01", "V-HT02"), ("V-HT01", "V-HT02"), ("V-HT02", None)),
        "TURN_F": (("LT-S02", "LT-S01"), ("LT-M02", "LT-M01"), ("LT-L01", None)),
        "MILL_F": (("5AX-01", "5AX-02"), ("5AX-02", "5AX-01"), ("HMC-L01", None)),
        "EDM": (("EDM-W01", "EDM-W02"), ("EDM-W02", None), ("EDM-W02", None)),
        "GRIND_1": (("GR-C01", None), ("GR-C02", None), ("GR-C03", None)),
        "GRIND_2": (("GR-C01", None), ("GR-C02", None), ("GR-C03", None)),
        "HONE": (("HN-01", None), ("HN-01", None), ("HN-02", None)),
        "DEBURR": (("DB-02", "DB-01"), ("DB-01", None), ("DB-01", None)),
        "NITRIDE": _one("V-NT01"),
        "ANODISE": _one("V-AN01"),
        "PLATE": _one("V-ZN01"),
        "BLACKOX": _one("BO-01"),
        "PASSIVATE": _one("V-PS01"),
        "WASH": _one("WS-01"),
        "INSPECT_F": (("QC-01", None), ("QC-01", "QC-02"), ("QC-03", None)),
    },
    W,
)
SIZE_BOUNDS = (40.0, 150.0)  # OUTDIAMETER (diameter, or width of prismatic parts) mm
SIZE_SETUP_FACTOR = np.array([0.8, 1.0, 1.5])
ALT_SHARE = 0.25
PLANT = Plant(
    slot_job=np.array([s[1] for s in SLOTS], dtype=object),
    slot_name=np.array([s[2] for s in SLOTS], dtype=object),
    slot_lead_days=np.array([s[9] for s in SLOTS], dtype=float),
    droppable=_droppable,
    extra_ok=_extra,
    res_code=RES_CODE,
    res_name=RES_NAME,
    res_out=RES_OUT,
)

DRIFT_RUN_FACTOR_BY_RES = {"LT-M02": 1.7, "GR-C02": 1.8, "5AX-01": 1.6}
DRIFT_RUN_FACTOR_BY_MATERIAL = {"1.4404": 1.5}


def operation_mask(fam: np.ndarray, mat: np.ndarray, heat: np.ndarray, tol: np.ndarray, fin: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The rule-based routing (item x slot) from the true attributes; sizes play no part."""
    n = len(fam)
    cls = MAT_CLASS[mat]
    rnd = FAM_SHAPE[fam] == ROUND
    prism = ~rnd
    bore = FAM_BORE[fam]
    heat_op = np.isin(heat, [H["QT"], H["CASE-HARD"], H["INDUCTION"], H["THROUGH-HARD"]])
    hard = np.isin(heat, [H["CASE-HARD"], H["INDUCTION"], H["THROUGH-HARD"]])
    soft = np.isin(cls, [ALU, COPPER, PLASTIC])
    t, f = tol, fin
    mask = np.zeros((n, N_SLOTS), dtype=bool)
    mask[:, S["SAW"]] = np.isin(raw, [R["BAR"], R["TUBE"]])
    mask[:, S["TURN_R"]] = rnd
    mask[:, S["MILL_R"]] = prism
    mask[:, S["DRILL"]] = np.isin(fam, [F["FLANGE"], F["HOUSING"], F["BRACKET"], F["BLOCK"]]) | ((fam == F["SHAFT"]) & (t >= 2))
    mask[:, S["HOB"]] = fam == F["GEAR"]
    mask[:, S["INSPECT_1"]] = (t == 3) | ((t == 2) & heat_op)
    mask[:, S["HEAT"]] = heat_op
    mask[:, S["TURN_F"]] = rnd & ((t >= 1) | (f >= 2)) & ~(hard & (t >= 2))
    mask[:, S["MILL_F"]] = prism & (t >= 1) & ~(hard & (t >= 2))
    mask[:, S["EDM"]] = ((cls == TOOL) & (t >= 2)) | (prism & hard & (t == 3))
    grind = ~soft & ((hard & (t >= 2)) | (t == 3) | ((cls == STAINLESS) & (t == 2) & (f >= 2)) | (rnd & (f == 3)))
    mask[:, S["GRIND_1"]] = grind
    mask[:, S["GRIND_2"]] = grind & (t == 3) & (hard | (f == 3))
    mask[:, S["HONE"]] = bore & (t >= 2) & (f >= 2) & (cls != PLASTIC) & np.isin(fam, [F["BUSHING"], F["HOUSING"], F["GEAR"]])
    mask[:, S["DEBURR"]] = (cls != PLASTIC) & (prism | mask[:, S["DRILL"]] | mask[:, S["HOB"]])
    mask[:, S["NITRIDE"]] = heat == H["NITRIDE"]
    mask[:, S["ANODISE"]] = (cls == ALU) & (t <= 2)
    mask[:, S["PLATE"]] = np.isin(cls, [STEEL, STRUCTURAL]) & ~heat_op & (heat != H["NITRIDE"]) & (t <= 1)
    mask[:, S["BLACKOX"]] = (cls == STEEL) & (heat == H["QT"])
    mask[:, S["PASSIVATE"]] = (cls == STAINLESS) & ((t >= 2) | (f >= 2))
    mask[:, S["WASH"]] = (t >= 2) | mask[:, S["HONE"]] | mask[:, S["EDM"]]
    mask[:, S["INSPECT_F"]] = True
    return mask


def generate(n: int, seed: int, drift_from: date | None, today: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng([seed, 2])
    today_s = int(np.datetime64(today, "s").astype(np.int64))

    # ---------------------------------------------------------------- items
    fam = _choice(rng, n, FAM_SHARE)
    mat = _choice_rows(rng, FAM_MAT_P[fam])
    cls = MAT_CLASS[mat]
    heat = _choice_rows(rng, MAT_HEAT_P[mat])
    tol = _choice_rows(rng, FAM_TOL_P[fam])
    fin = (tol + _choice(rng, n, [0.25, 0.5, 0.25]) - 1).clip(0, 3)
    raw = _choice_rows(rng, FAM_RAW_P[fam])
    metal_only = np.isin(cls, [ALU, COPPER, PLASTIC, TITANIUM]) & (raw == R["FORGING"])
    raw[metal_only] = R["BAR"]
    raw[(cls == PLASTIC) & (raw == R["CASTING"])] = R["PLATE"]
    od = np.round(np.exp(np.log(FAM_OD[fam]) + FAM_OD_SIGMA[fam] * rng.standard_normal(n)).clip(3, 900), 1)
    idd = np.where(FAM_BORE[fam], np.round(od * (FAM_ID_RATIO[fam] + rng.normal(0, 0.05, n)).clip(0.15, 0.9), 1), np.nan)
    length = np.round((od * FAM_LEN_RATIO[fam] * np.exp(rng.normal(0, 0.3, n))).clip(1.0, 3000), 1)
    size = size_class(od, SIZE_BOUNDS)
    standard = rng.random(n) < 0.25

    mask = operation_mask(fam, mat, heat, tol, fin, raw)
    perturb_masks(rng, mask, PLANT, np.full(n, 0.025), np.full(n, 0.025))

    std_item = np.exp(rng.normal(0, 0.12, n))  # how generous the standard setter was for this item
    item_insrt = today_s - rng.integers(30 * DAY_S, 8 * 365 * DAY_S, n)

    def rows(it: np.ndarray, sl: np.ndarray):
        m = len(it)
        sc = size[it]
        primary = RES_PRIMARY[sl, sc]
        alt = RES_ALT[sl, sc]
        use_alt = (alt >= 0) & (rng.random(m) < ALT_SHARE)
        res = np.where(use_alt, alt, primary)
        alt = np.where(use_alt, primary, alt)
        prism_grind = np.isin(sl, [S["GRIND_1"], S["GRIND_2"]]) & (FAM_SHAPE[fam[it]] == PRISM)
        res = np.where(prism_grind, np.where(sc == 2, W["GR-F02"], W["GR-F01"]), res)
        swiss = (sl == S["TURN_R"]) & (fam[it] == F["PIN"]) & (sc == 0)
        res = np.where(swiss, W["SW-01"], res)
        alt = np.where(prism_grind | swiss, np.where(swiss, W["LT-S01"], -1), alt)
        vendor = np.isin(sl, [S["TURN_R"], S["MILL_R"]]) & (sc == 2) & (rng.random(m) < 0.08)
        res = np.where(vendor, W["V-MC01"], res)
        alt = np.where(vendor, -1, alt)
        mat_f = np.where(SLOT_MAT[sl], MAT_FACTOR[mat[it]], 1.0)
        tol_f = np.where(SLOT_TOL[sl], 1.0 + 0.2 * tol[it], 1.0)
        run = SLOT_RUN[sl] * (od[it] / 50.0) ** SLOT_OD_EXP[sl] * (length[it] / 50.0).clip(0.05, 60) ** SLOT_LEN_EXP[sl]
        run = run * mat_f * tol_f * std_item[it]
        setup = SLOT_SETUP[sl] * SIZE_SETUP_FACTOR[sc] * mat_f**0.5 * np.where(SLOT_TOL[sl], 1.0 + 0.15 * tol[it], 1.0)
        return res, alt, setup, run

    item_codes = _codes(np.full(n, PREFIX), np.arange(1, n + 1), max(6, len(str(n))))
    res_f = np.ones(len(WORK_CENTRES))
    for code, factor in DRIFT_RUN_FACTOR_BY_RES.items():
        res_f[W[code]] = factor
    mat_f_d = np.ones(len(MATERIALS))
    for code, factor in DRIFT_RUN_FACTOR_BY_MATERIAL.items():
        mat_f_d[M[code]] = factor
    qty_median = FAM_QTY[fam] * np.array([1.5, 1.0, 0.4])[size] * np.where(standard, 2.5, 1.0)
    routings, work_results = build_history(
        rng,
        today_s=today_s,
        item_codes=item_codes,
        item_insrt=item_insrt,
        mask=mask,
        plant=PLANT,
        row_fn=rows,
        revisions=Revisions(share=0.42),
        orders=Orders(
            produced_share=0.65,
            n_orders_p=(0.15, 0.15, 0.14, 0.12, 0.10, 0.10, 0.08, 0.08, 0.08),
            qty_median=qty_median,
            qty_sigma=1.1,
            tail_share=0.06,
            max_qty=50_000.0,
        ),
        drift=Drift(res_factor=res_f, item_factor=mat_f_d[mat]),
        drift_from=drift_from,
    )

    # ---------------------------------------------------------------- item master frame
    def opt(values: np.ndarray, share: float) -> np.ndarray:
        return _blank(rng, values, share)

    dim = np.where(FAM_SHAPE[fam] == ROUND, "D", "W")
    name = np.strings.add(np.strings.add(FAM_NAME[fam].astype(str), " "), MAT_CODE[mat].astype(str))
    name = np.strings.add(np.strings.add(name, " "), np.strings.add(dim, np.round(od).astype(np.int64).astype(str)))
    name = np.strings.add(np.strings.add(name, "x"), np.round(length).astype(np.int64).astype(str))
    idx, zeros = np.arange(n), np.zeros(n, dtype=np.int64)
    junk = rng.random(n) < 0.01  # a few legacy rows carry values in the seal-only columns
    none = text(np.array([None]), zeros)
    items = pd.DataFrame(
        {
            "ITEM_CD": text(item_codes),
            "ITEM_NM": opt_text(rng, name, idx, 0.01),
            "PART_TYPE": text(FAM_TYPE, fam),
            "PartNm": opt_text(rng, FAM_NAME, fam, 0.05),
            "ITEM_TYPE": text(np.array(["MFG"]), zeros),
            "ITEM_ACCT": text(np.array(["30", "20"]), standard),
            "ITEM_UNIT": text(np.array(["EA"]), zeros),
            "ITEM_MATERIAL": opt_text(rng, MAT_CODE, mat, 0.02),
            "MATERIAL_DESC": opt_text(rng, MAT_DESC, mat, 0.08),
            "RAW_MATL_KIND": opt_text(rng, RAW_KINDS, raw, 0.06),
            "ITEM_GRP1": opt_text(rng, HEAT_SPECS, heat, 0.04),
            "GROUP1": opt_text(rng, TOLERANCES, tol, 0.03),
            "GROUP2": opt_text(rng, FINISHES, fin, 0.08),
            "STANDARD_YN": text(np.array(["N", "Y"]), standard),
            "DRAW_NO": opt_text(rng, _codes(np.full(n, "JD"), rng.permutation(n) + 200000, 7), idx, 0.05),
            "DRAW_REV": opt_text(rng, np.array(list("ABCDE")), _choice(rng, n, [0.45, 0.25, 0.15, 0.10, 0.05]), 0.10),
            "SealTypeGrup": none,
            "IN_SEALTYPE_CD": none,
            "MID_SEALTYPE_CD": none,
            "OUT_SEALTYPE_CD": none,
            "OUTDIAMETER": opt(od, 0.02),
            "INDIAMETER": opt(idd, 0.08),
            "OUTTHICKNESS": opt(length, 0.06),
            "IN_SEALSIZE": np.full(n, np.nan),
            "MID_SEALSIZE": np.full(n, np.nan),
            "OUT_SEALSIZE": np.full(n, np.nan),
            "ROTATE_CLOCKWISE": np.where(junk, rng.integers(0, 2, n).astype(float), np.nan),
            "ROTATE_CTRCLOCKWISE": np.where(junk, rng.integers(0, 2, n).astype(float), np.nan),
            "INSRT_DT": _dt(item_insrt),
        },
        columns=ITEM_COLUMNS,
    )
    return items, routings, work_results
