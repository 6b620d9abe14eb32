"""Demo ERP data: several demo factories ("profiles"), generated fully vectorised with numpy.

`generate(n_items, seed, drift_from, today, profile="seal")` returns three DataFrames whose
columns are exactly those of the ERP views (`BI_ITEM_INFO_VIEW`, `BI_ROUTING_VIEW`,
`BI_WORK_ORDER_RESULTS`). Pure Python, no Django: the seed command (`--profile NAME`) writes
the frames, tests and benchmarks use them directly. `PROFILES` lists the factories; each maps
its own attributes onto the fixed ERP columns and has its own item-code prefix. The routing
models are meant to learn any of them without being told which one it is.

Profile `seal` (default; item codes SLV-, GLD-, SRG-, ...): a mechanical-seal factory.

* The part family (`PART_TYPE`) fixes a base sequence of operations; the material, the raw
  material kind, the groups, the seal type group and the size add or remove steps
  (ceramics are lapped, hardenable metals and heavy-duty metal parts are heat treated
  outside, coated sleeves go to the coater and are ground again, castings and sintered
  blanks are not cut, large machined metal parts are deburred, ...).
* Only standard (`STANDARD_YN` = Y) items are packed; glands are drilled only for double and
  cartridge seals.
* The size class (outer diameter) picks the work centre; ceramic grinding always runs on the
  diamond grinder. Standard times scale with size, thickness and material.
* Irreducible noise: ~7 % of items have one extra or one missing step, a second machine of
  the same class takes ~25 % of the work, standard times carry a per-item factor, actual
  times carry a per-work-centre bias, a per-item factor and lognormal noise per order.
* About 10 % of items have older routings (some expired); ~1 % of items have a newest
  routing that was withdrawn (expired), so their current routing is an older one.
* With `drift_from`, the work centres in `DRIFT_RUN_FACTOR_BY_RES` and the materials in
  `DRIFT_RUN_FACTOR_BY_MATERIAL` run markedly slower on work orders reported from that date
  on. Drift only multiplies hours; every other value is identical to the run without drift.

Profile `jobshop` (item codes JS-; `erp.factories.jobshop`): a machining job shop making
shafts, flanges, housings, brackets, bushings, gears, pins, manifold blocks and spacers from
steels, stainless, tool steel, aluminium, copper alloys, plastics and titanium. Column map:
`GROUP1` tolerance class (ISO 2768-m/f, IT7, IT6), `GROUP2` surface finish (Ra 3.2 .. 0.4),
`ITEM_GRP1` heat-treat spec (NONE, QT, CASE-HARD, INDUCTION, NITRIDE, THROUGH-HARD),
`RAW_MATL_KIND` stock form, `OUTDIAMETER` diameter (width of prismatic parts), `INDIAMETER`
bore, `OUTTHICKNESS` length/thickness. The seal-only columns are empty (1 % legacy junk in
`ROTATE_*`).

* The operations follow from part type x material x heat-treat spec x tolerance x finish x
  stock form, with interactions a one-column rule cannot express: a hardened part at IT7 or
  finer is ground instead of finish-turned, stainless is ground only at IT6 or at IT7 with a
  fine finish, aluminium is anodised unless IT6, soft steels are zinc plated only at coarse
  tolerances, tool steel goes to wire EDM from IT7, fine bores are honed, IT6 (and IT7 when
  heat treated) gets an in-process inspection. Part type alone explains ~12 % of the
  sequences, part type x material x tolerance ~60 %, all six ~95 %.
* Sizes never change the sequence: they pick the work centre (small/medium/large lathes,
  mills, grinders, 5-axis, Swiss-type lathe for small pins, surface grinders for prismatic
  parts) and scale the times (diameter and length exponents per operation).
* Operations repeat within a routing with clearly different times: TURN rough then finish
  (~2x), GRIND then finish GRIND (~2x), INSPECT in-process then final (~2x). Actuals must be
  keyed by (ROUT_NO, PROC_SEQ), not by JOB_CD.
* ~36 % of items have 2-3 ROUT_NO: expired older revisions, older routings that stay valid as
  capacity alternates (~30 % of orders use them), a newest revision that was withdrawn, or
  one valid only from a future date (the current routing is then an older one). Revisions
  differ by a dropped/added step, other machines and ~5-12 % other times. Work results
  carry the ROUT_NO/PROC_SEQ of the routing used.
* Outsourced steps (INSIDE_FLAG OUT, SETUP_TIME 0): heat treatment, nitriding, anodising,
  zinc plating, passivation, ~8 % of large rough machining.
* Noise: ~5 % of items have one extra or missing step; attributes are blank at 2-8 %;
  standard times carry a per-item factor; actual hours a per-work-centre bias, a per-item
  factor and lognormal noise per order (several orders per operation); order quantities
  are heavy-tailed (lognormal sigma 1.1 plus a 6 % tail up to x20).
* Drift: `jobshop.DRIFT_RUN_FACTOR_BY_RES` and `jobshop.DRIFT_RUN_FACTOR_BY_MATERIAL`.

Profile `fabrication` (item codes FB-; `erp.factories.fabrication`): sheet-metal parts and
welded assemblies (panels, brackets, enclosures, cabinets, frames, covers, chassis, ducts,
guards, trays) in steel, pre-galvanised steel, stainless and aluminium. Column map:
`ITEM_TYPE` PART / WELDMENT / ASSY, `GROUP1` weld class (ISO 5817-D/C/B, weldments only,
empty otherwise), `GROUP2` coating (NONE, POWDER, WET-PAINT, HDG, BRUSHED), `ITEM_GRP1`
industry segment, `RAW_MATL_KIND` SHEET/PLATE/TUBE/PROFILE, `OUTDIAMETER` blank length,
`INDIAMETER` blank width, `OUTTHICKNESS` sheet thickness, `ROTATE_CLOCKWISE` number of bends,
`ROTATE_CTRCLOCKWISE` number of press-fit inserts.

* Long routings (typically 6-14 operations). Here numbers do decide steps: the bend count
  (none / one press-brake set-up / a second set-up from 7 bends, or from 3 bends at >= 10 mm),
  the thickness x material (laser up to 15 mm steel, 10 mm stainless, 8 mm aluminium, plasma
  above; turret punching for thin sheet with >= 4 inserts; weld bevels and multi-pass welding
  from 8 mm; shot blasting before painting from 3 mm steel), inserts > 0 (insert press).
  Item type, weld class, coating, material and segment add welding, seam grinding, NDT,
  post-weld machining, pickling, brushing, pretreatment, painting, galvanising, assembly and
  packing. Part type alone explains ~12 % of the sequences.
* Blank length picks the machine (laser bed, press brake tonnage, blast room, paint booth,
  outside machining of long frames) and with width, thickness, bends and inserts the times.
  BEND and WELD repeat within a routing with different times.
* ~26 % of items have 2-3 ROUT_NO (same kinds as `jobshop`); ~5 % of items carry one extra or
  missing step; attributes are blank at 2-8 %. Drift: `fabrication.DRIFT_RUN_FACTOR_BY_RES`,
  `fabrication.DRIFT_RUN_FACTOR_BY_MATERIAL`.

Units: routing times are minutes (`RUN_TIME` per `RUN_TIME_QTY` units); work results are
hours for the whole order. Datetimes are naive UTC (`datetime64[us]`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import numpy as np
import pandas as pd

from erp.factories import fabrication, jobshop
from erp.factories.common import (  # noqa: F401  (re-exported: the ERP columns and helpers live there)
    DAY_S,
    DEFAULT_TODAY,
    ITEM_COLUMNS,
    ROUTING_COLUMNS,
    SECOND,
    WORK_RESULT_COLUMNS,
    _blank,
    _choice,
    _choice_rows,
    _codes,
    _dt,
    _group_positions,
)

# --- operations (slots in their canonical order; a routing is a subset, in this order) ----------
SLOTS = [
    # JOB_CD, JOB_NM, setup min, run min/unit at OD 50 mm, size exponent, material-sensitive
    ("CUT", "Cutting", 10, 1.2, 0.8, True),
    ("TURN", "CNC turning", 30, 6.0, 0.9, True),
    ("COIL", "Spring coiling", 20, 1.5, 0.5, True),
    ("MILL", "Milling", 40, 7.0, 0.8, True),
    ("DRILL", "Drilling and tapping", 20, 2.5, 0.5, True),
    ("WELD", "Welding", 30, 12.0, 1.0, True),
    ("HEAT", "Heat treatment", 0, 3.0, 0.7, False),
    ("GRIND", "Grinding", 25, 4.5, 0.9, True),
    ("COAT", "Coating", 0, 5.0, 1.0, False),
    ("GRIND", "Grinding", 25, 3.5, 0.9, True),  # finish grinding after coating
    ("LAP", "Lapping", 15, 6.0, 1.2, True),
    ("POLISH", "Polishing", 10, 5.0, 1.1, True),
    ("DEBURR", "Deburring", 5, 1.5, 0.6, False),
    ("INSPECT", "Inspection", 10, 1.8, 0.4, False),
    ("PACK", "Packing", 5, 0.3, 0.3, False),
]
S = {name: i for i, name in reversed(list(enumerate(s[0] for s in SLOTS)))}  # first slot per JOB_CD
S_GRIND2 = 9
SLOT_JOB = np.array([s[0] for s in SLOTS], dtype=object)
SLOT_NAME = np.array([s[1] for s in SLOTS], dtype=object)
SLOT_SETUP = np.array([s[2] for s in SLOTS], dtype=float)
SLOT_RUN = np.array([s[3] for s in SLOTS], dtype=float)
SLOT_EXP = np.array([s[4] for s in SLOTS], dtype=float)
SLOT_MAT = np.array([s[5] for s in SLOTS], dtype=bool)
N_SLOTS = len(SLOTS)

# --- materials --------------------------------------------------------------------------------
MATERIALS = [
    # code, description, kind (0 metal, 1 ceramic, 2 carbon), machining factor, hardenable
    ("SUS304", "Stainless steel AISI 304", 0, 1.00, False),
    ("SUS316", "Stainless steel AISI 316", 0, 1.10, False),
    ("SUS420", "Martensitic stainless AISI 420", 0, 1.15, True),
    ("17-4PH", "Precipitation-hardening stainless 17-4PH", 0, 1.25, True),
    ("DUPLEX", "Duplex stainless 2205", 0, 1.35, False),
    ("HASTELLOY", "Hastelloy C-276", 0, 1.70, False),
    ("INCONEL", "Inconel 718", 0, 1.80, False),
    ("TI", "Titanium grade 2", 0, 1.50, False),
    ("AM350", "AM350 stainless", 0, 1.30, False),
    ("CS", "Carbon steel S45C", 0, 0.80, False),
    ("SIC", "Sintered silicon carbide", 1, 1.50, False),
    ("TC", "Tungsten carbide (Ni binder)", 1, 1.80, False),
    ("ALUMINA", "Alumina 99.5 %", 1, 1.20, False),
    ("CARBON", "Resin-impregnated carbon graphite", 2, 0.60, False),
]
M = {m[0]: i for i, m in enumerate(MATERIALS)}
MAT_CODE = np.array([m[0] for m in MATERIALS], dtype=object)
MAT_DESC = np.array([m[1] for m in MATERIALS], dtype=object)
MAT_KIND = np.array([m[2] for m in MATERIALS])
MAT_FACTOR = np.array([m[3] for m in MATERIALS])
MAT_HARDENABLE = np.array([m[4] for m in MATERIALS])

RAW_KINDS = np.array(["BAR", "PIPE", "PLATE", "FORGING", "CASTING", "SINTERED", "WIRE", "MOLDED"], dtype=object)
R = {k: i for i, k in enumerate(RAW_KINDS)}

# --- part families ----------------------------------------------------------------------------
FAMILIES = [
    # PART_TYPE, PartNm, prefix, share, OD median mm, OD sigma, ID/OD, thickness/OD, order qty median,
    # materials {code: p}, base slots
    ("SLEEVE", "Shaft sleeve", "SLV", 0.17, 55, 0.45, 0.80, 0.9, 12,
     {"SUS316": .45, "SUS304": .12, "SUS420": .10, "17-4PH": .05, "DUPLEX": .10, "HASTELLOY": .12, "TI": .06},
     ["CUT", "TURN", "INSPECT", "PACK"]),
    ("GLAND", "Gland plate", "GLD", 0.11, 120, 0.40, 0.55, 0.20, 6,
     {"SUS316": .50, "SUS304": .18, "CS": .17, "DUPLEX": .10, "HASTELLOY": .05},
     ["CUT", "TURN", "MILL", "DRILL", "INSPECT", "PACK"]),
    ("SEAL_RING", "Rotating seal ring", "SRG", 0.16, 60, 0.45, 0.75, 0.20, 20,
     {"SIC": .35, "CARBON": .30, "TC": .25, "ALUMINA": .10},
     ["GRIND", "LAP", "INSPECT", "PACK"]),
    ("SEAT", "Stationary seat", "SST", 0.12, 65, 0.45, 0.72, 0.22, 20,
     {"SIC": .45, "CARBON": .20, "TC": .20, "ALUMINA": .15},
     ["GRIND", "LAP", "INSPECT", "PACK"]),
    ("RETAINER", "Retainer", "RTN", 0.10, 70, 0.40, 0.80, 0.35, 10,
     {"SUS316": .60, "SUS304": .25, "SUS420": .08, "CS": .07},
     ["CUT", "TURN", "MILL", "DRILL", "INSPECT", "PACK"]),
    ("SPRING", "Spring", "SPR", 0.08, 30, 0.50, 0.85, 0.60, 60,
     {"SUS316": .40, "HASTELLOY": .30, "INCONEL": .30},
     ["CUT", "COIL", "HEAT", "INSPECT", "PACK"]),
    ("HOUSING", "Seal housing", "HSG", 0.05, 180, 0.35, 0.55, 0.60, 3,
     {"CS": .40, "SUS316": .40, "DUPLEX": .20},
     ["CUT", "TURN", "MILL", "DRILL", "INSPECT", "PACK"]),
    ("INSERT", "Face insert", "INS", 0.08, 40, 0.40, 0.70, 0.25, 30,
     {"SIC": .50, "CARBON": .50},
     ["GRIND", "LAP", "INSPECT", "PACK"]),
    ("COLLAR", "Drive collar", "CLR", 0.07, 60, 0.40, 0.78, 0.40, 12,
     {"SUS316": .55, "SUS304": .25, "SUS420": .10, "17-4PH": .10},
     ["CUT", "TURN", "DRILL", "INSPECT", "PACK"]),
    ("BELLOWS", "Metal bellows", "BLW", 0.06, 70, 0.40, 0.75, 0.80, 8,
     {"HASTELLOY": .40, "INCONEL": .40, "AM350": .20},
     ["CUT", "TURN", "WELD", "HEAT", "INSPECT", "PACK"]),
]  # fmt: skip
F = {f[0]: i for i, f in enumerate(FAMILIES)}
FAM_TYPE = np.array([f[0] for f in FAMILIES], dtype=object)
FAM_NAME = np.array([f[1] for f in FAMILIES], dtype=object)
FAM_PREFIX = np.array([f[2] for f in FAMILIES])
FAM_SHARE = np.array([f[3] for f in FAMILIES])
FAM_SHARE = FAM_SHARE / FAM_SHARE.sum()
FAM_OD = np.array([f[4] for f in FAMILIES], dtype=float)
FAM_OD_SIGMA = np.array([f[5] for f in FAMILIES])
FAM_ID_RATIO = np.array([f[6] for f in FAMILIES])
FAM_THICK_RATIO = np.array([f[7] for f in FAMILIES])
FAM_QTY = np.array([f[8] for f in FAMILIES], dtype=float)
FAM_MAT_P = np.zeros((len(FAMILIES), len(MATERIALS)))
FAM_TEMPLATE = np.zeros((len(FAMILIES), N_SLOTS), dtype=bool)
for _f, _fam in enumerate(FAMILIES):
    for _m, _p in _fam[9].items():
        FAM_MAT_P[_f, M[_m]] = _p
    FAM_MAT_P[_f] /= FAM_MAT_P[_f].sum()
    for _s in _fam[10]:
        FAM_TEMPLATE[_f, S[_s]] = True

SEAL_GROUPS = np.array(["SINGLE", "DOUBLE", "CARTRIDGE", "SPLIT"], dtype=object)
SEAL_GROUP_P = [0.55, 0.25, 0.15, 0.05]
SEAL_CODES = np.array(["B1", "B2", "U3", "H7", "M7N", "P4", "T5", "E5", "HJ9", "QB"], dtype=object)
PRODUCT_LINES = np.array(["GENERAL", "API682", "CHEMICAL", "MARINE", "MIXER"], dtype=object)
PRODUCT_LINE_P = [0.50, 0.20, 0.15, 0.10, 0.05]
DUTIES = np.array(["STD", "HD", "HT"], dtype=object)  # GROUP1: standard, heavy duty, high temperature
DUTY_P = [0.65, 0.25, 0.10]

# --- work centres -------------------------------------------------------------------------------
WORK_CENTRES = [
    ("SAW-01", "Band saw 1"), ("SAW-02", "Band saw 2 (large)"),
    ("LT-S01", "CNC lathe small 1"), ("LT-S02", "CNC lathe small 2"),
    ("LT-M01", "CNC lathe medium 1"), ("LT-M02", "CNC lathe medium 2"), ("LT-L01", "CNC lathe large"),
    ("CL-01", "Spring coiler"), ("MC-S01", "Machining centre small"), ("MC-L01", "Machining centre large"),
    ("DR-01", "Drill press 1"), ("DR-02", "Radial drill"), ("WD-01", "TIG welding cell"),
    ("V-HT01", "Heat treatment vendor A"), ("V-HT02", "Heat treatment vendor B"),
    ("GR-S01", "Cylindrical grinder small"), ("GR-M01", "Cylindrical grinder medium"),
    ("GR-L01", "Cylindrical grinder large"), ("GR-C01", "Diamond surface grinder"),
    ("V-CT01", "Coating vendor"), ("LP-01", "Lapping machine 1"), ("LP-02", "Lapping machine 2 (large)"),
    ("PL-01", "Polishing cell"), ("DB-01", "Deburring bench"), ("QC-01", "Inspection"),
    ("QC-02", "Inspection CMM (large)"), ("PK-01", "Packing"), ("V-MC01", "Machining vendor"),
]  # fmt: skip
W = {w[0]: i for i, w in enumerate(WORK_CENTRES)}
RES_CODE = np.array([w[0] for w in WORK_CENTRES], dtype=object)
RES_NAME = np.array([w[1] for w in WORK_CENTRES], dtype=object)
RES_OUT = np.array([w[0].startswith("V-") for w in WORK_CENTRES])
# Work centre per (slot, size class S/M/L): primary, alternative (same class, takes ALT_SHARE), or -1.
_RES_PLAN = {
    "CUT": (("SAW-01", None), ("SAW-01", None), ("SAW-02", None)),
    "TURN": (("LT-S01", "LT-S02"), ("LT-M01", "LT-M02"), ("LT-L01", None)),
    "COIL": (("CL-01", None),) * 3,
    "MILL": (("MC-S01", None), ("MC-S01", None), ("MC-L01", None)),
    "DRILL": (("DR-01", None), ("DR-01", "MC-S01"), ("DR-02", None)),
    "WELD": (("WD-01", None),) * 3,
    "HEAT": (("V-HT01", "V-HT02"), ("V-HT01", "V-HT02"), ("V-HT02", None)),
    "GRIND": (("GR-S01", None), ("GR-M01", None), ("GR-L01", None)),
    "COAT": (("V-CT01", None),) * 3,
    "LAP": (("LP-01", None), ("LP-01", "LP-02"), ("LP-02", None)),
    "POLISH": (("PL-01", None),) * 3,
    "DEBURR": (("DB-01", None),) * 3,
    "INSPECT": (("QC-01", None), ("QC-01", None), ("QC-02", None)),
    "PACK": (("PK-01", None),) * 3,
}
RES_PRIMARY = np.zeros((N_SLOTS, 3), dtype=np.int64)
RES_ALT = np.full((N_SLOTS, 3), -1, dtype=np.int64)
for _s, (_job, *_rest) in enumerate(SLOTS):
    for _c, (_p, _a) in enumerate(_RES_PLAN[_job]):
        RES_PRIMARY[_s, _c] = W[_p]
        RES_ALT[_s, _c] = W[_a] if _a else -1
ALT_SHARE = 0.25
SIZE_BOUNDS = (50.0, 150.0)  # OUTDIAMETER mm: small < 50 <= medium < 150 <= large
SIZE_SETUP_FACTOR = np.array([0.8, 1.0, 1.5])

DRIFT_RUN_FACTOR_BY_RES = {"GR-M01": 1.8, "LP-01": 1.8, "LT-M02": 1.6}
DRIFT_RUN_FACTOR_BY_MATERIAL = {"HASTELLOY": 1.5}
DRIFT_SETUP_FACTOR = 1.3  # on the drifted work centres


def _seal(n_items: int, seed: int, drift_from: date | None, today: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The mechanical-seal factory (the original demo; its output must not change for a seed)."""
    rng = np.random.default_rng(seed)
    n = int(n_items)
    today_s = int(np.datetime64(today, "s").astype(np.int64))

    # ---------------------------------------------------------------- items
    fam = _choice(rng, n, FAM_SHARE)
    mat = _choice_rows(rng, FAM_MAT_P[fam])
    kind = MAT_KIND[mat]
    od = np.exp(np.log(FAM_OD[fam]) + FAM_OD_SIGMA[fam] * rng.standard_normal(n)).clip(8, 600)
    od = np.round(od, 1)
    idd = np.round(od * (FAM_ID_RATIO[fam] + rng.normal(0, 0.04, n)).clip(0.3, 0.95), 1)
    thick = np.round((od * FAM_THICK_RATIO[fam] * np.exp(rng.normal(0, 0.25, n))).clip(1.5, 400), 1)
    size = np.searchsorted(np.array(SIZE_BOUNDS), od, side="right")  # 0 small, 1 medium, 2 large

    seal_grp = _choice(rng, n, SEAL_GROUP_P)
    line = _choice(rng, n, PRODUCT_LINE_P)
    duty = _choice(rng, n, DUTY_P)
    is_sleeve = fam == F["SLEEVE"]
    coated = is_sleeve & (rng.random(n) < 0.25)
    group2 = np.where(coated, "COATED", np.where(rng.random(n) < 0.1, "SPECIAL", "PLAIN")).astype(object)
    standard = rng.random(n) < 0.35

    raw = np.full(n, R["BAR"])
    raw[is_sleeve & (od >= 40)] = R["PIPE"]
    raw[fam == F["GLAND"]] = np.where(size[fam == F["GLAND"]] == 2, R["FORGING"], R["PLATE"])
    raw[fam == F["HOUSING"]] = np.where(rng.random((fam == F["HOUSING"]).sum()) < 0.5, R["CASTING"], R["FORGING"])
    raw[kind == 1] = R["SINTERED"]
    raw[kind == 2] = R["MOLDED"]
    raw[fam == F["SPRING"]] = R["WIRE"]
    raw[fam == F["BELLOWS"]] = R["PLATE"]

    # ---------------------------------------------------------------- current routing (slot mask)
    mask = FAM_TEMPLATE[fam].copy()
    metal = kind == 0
    ceramic_fam = np.isin(fam, [F["SEAL_RING"], F["SEAT"], F["INSERT"]])
    is_carbon = mat == M["CARBON"]
    mask[:, S["TURN"]] |= ceramic_fam & is_carbon
    mask[:, S["POLISH"]] |= (mat == M["TC"]) | ((mat == M["SIC"]) & (DUTIES[duty] == "HD"))
    mask[:, S["DRILL"]] |= (fam == F["SEAT"]) & is_carbon
    hardenable_fam = np.isin(fam, [F["SLEEVE"], F["COLLAR"], F["RETAINER"], F["GLAND"]])
    heat = metal & hardenable_fam & MAT_HARDENABLE[mat]
    heat |= metal & np.isin(fam, [F["SLEEVE"], F["RETAINER"], F["COLLAR"]]) & (DUTIES[duty] == "HD")
    mask[:, S["HEAT"]] |= heat
    mask[:, S["GRIND"]] |= heat | is_sleeve  # sleeves are always ground, hardened parts after heat
    mask[:, S["COAT"]] |= coated
    mask[:, S_GRIND2] |= coated
    mask[:, S["DRILL"]] |= is_sleeve & (SEAL_GROUPS[seal_grp] == "CARTRIDGE")
    mask[:, S["CUT"]] &= ~np.isin(raw, [R["CASTING"], R["SINTERED"], R["MOLDED"]])
    machined = mask[:, S["TURN"]] | mask[:, S["MILL"]]
    mask[:, S["DEBURR"]] |= metal & machined & (od >= 150)
    mask[:, S["WELD"]] |= (fam == F["HOUSING"]) & (size == 2)
    # glands get flush/quench ports only for double and cartridge seals
    mask[:, S["DRILL"]] &= ~((fam == F["GLAND"]) & ~np.isin(SEAL_GROUPS[seal_grp], ["DOUBLE", "CARTRIDGE"]))
    # only standard (spare-part) items are packed for the warehouse; the rest go to assembly
    mask[:, S["PACK"]] = standard

    # irreducible noise: one extra or one missing step on ~7 % of items
    noise = rng.random(n)
    keys = rng.random((n, N_SLOTS))
    extra_ok = np.zeros(N_SLOTS, dtype=bool)
    extra_ok[[S["MILL"], S["DRILL"], S["DEBURR"], S["POLISH"], S["GRIND"]]] = True
    cand = ~mask & extra_ok
    pick = np.where(cand, keys, -1.0).argmax(axis=1)
    add = (noise < 0.035) & cand.any(axis=1)
    mask[np.flatnonzero(add), pick[add]] = True
    drop_ok = np.ones(N_SLOTS, dtype=bool)
    drop_ok[[S["INSPECT"], S["PACK"]]] = False
    cand = mask & drop_ok
    pick = np.where(cand, keys, -1.0).argmax(axis=1)
    drop = (noise >= 0.035) & (noise < 0.07) & cand.any(axis=1) & (mask.sum(axis=1) > 3)
    mask[np.flatnonzero(drop), pick[drop]] = False

    # ---------------------------------------------------------------- routing rows (current)
    it, sl = np.nonzero(mask)  # row-major: sorted by item, then slot order
    m = len(it)
    res = RES_PRIMARY[sl, size[it]]
    alt = RES_ALT[sl, size[it]]
    use_alt = (alt >= 0) & (rng.random(m) < ALT_SHARE)
    res = np.where(use_alt, alt, res)
    ceramic_grind = (SLOT_JOB[sl] == "GRIND") & (kind[it] != 0)
    res[ceramic_grind] = W["GR-C01"]
    vendor_machining = np.isin(sl, [S["TURN"], S["MILL"]]) & (size[it] == 2) & (rng.random(m) < 0.05)
    res[vendor_machining] = W["V-MC01"]
    outside = RES_OUT[res]

    std_item = np.exp(rng.normal(0, 0.12, n))  # how generous the standard setter was for this item
    mat_f = np.where(SLOT_MAT[sl], MAT_FACTOR[mat[it]], 1.0)
    thick_f = np.where(np.isin(sl, [S["TURN"], S["MILL"], S["CUT"]]), (thick[it] / 15.0).clip(0.3, 10) ** 0.3, 1.0)
    run_unit = SLOT_RUN[sl] * (od[it] / 50.0) ** SLOT_EXP[sl] * mat_f * thick_f * std_item[it]
    run_unit = np.maximum(np.round(run_unit, 3), 0.01)
    setup = np.where(outside, 0.0, np.round(SLOT_SETUP[sl] * SIZE_SETUP_FACTOR[size[it]] * mat_f**0.5 / 5) * 5)
    setup = np.where(outside, 0.0, np.maximum(setup, 5.0))
    r = rng.random(m)
    run_qty = np.where(run_unit < 0.2, 100.0, np.where((run_unit < 1.5) & (r < 0.3), 10.0, 1.0))
    run_qty = np.where((run_qty == 1.0) & (r > 0.97), 10.0, run_qty)
    run_time = np.round(run_unit * run_qty, 2)

    # ---------------------------------------------------------------- routing versions
    item_insrt = today_s - rng.integers(30 * DAY_S, 8 * 365 * DAY_S, n)
    multi = (rng.random(n) < 0.118) & (item_insrt <= today_s - 400 * DAY_S)
    n_old = np.where(multi, 1 + (rng.random(n) < 0.2), 0)
    withdrawn = multi & (rng.random(n) < 0.10)
    first_insrt = item_insrt + rng.integers(0, 20 * DAY_S, n)
    cur_insrt = np.where(
        multi,
        first_insrt + 30 * DAY_S + (rng.random(n) * (today_s - 40 * DAY_S - first_insrt - 30 * DAY_S)).astype(np.int64),
        first_insrt,
    )
    # a withdrawn revision: inserted after the current one, then expired before today
    wd_insrt = cur_insrt + rng.integers(DAY_S, 20 * DAY_S, n)
    wd_valid_to = (wd_insrt // DAY_S + rng.integers(1, 10, n)) * DAY_S

    versions = [
        dict(rows=np.arange(m), rout=n_old[it] + 1, insrt=cur_insrt[it], valid_to=np.full(m, -1), time_f=np.ones(m), res=res),
    ]
    for copy, keep_items, in_f in ((1, multi, 1.0), (2, n_old == 2, 1.0), (0, withdrawn, 0.9)):
        rows = np.flatnonzero(keep_items[it])
        if not len(rows):
            continue
        # perturb: maybe drop one step (not inspect/pack), maybe other machine, other times
        key = np.where(drop_ok[sl[rows]], rng.random(len(rows)), -1.0)
        order = np.lexsort((key, it[rows]))
        _, _, starts = _group_positions(it[rows][order])
        last = np.append(starts[1:], len(rows)) - 1
        drop_row = order[last]
        do = (rng.random(len(drop_row)) < 0.5) & (key[drop_row] >= 0)
        keep = np.ones(len(rows), dtype=bool)
        keep[drop_row[do]] = False
        rows = rows[keep]
        v_res = res[rows].copy()
        swap = (alt[rows] >= 0) & (rng.random(len(rows)) < 0.3)
        v_res[swap] = alt[rows][swap]
        i = it[rows]
        if copy:  # older routings: ROUT_NO below the current one; half of them expired
            rout = n_old[i] + 1 - copy
            insrt = first_insrt[i] if copy == 2 else np.where(n_old[i] == 2, (first_insrt[i] + cur_insrt[i]) // 2, first_insrt[i])
            expired = (rng.random(n) < 0.5)[i]  # drawn per item so all ops of one routing agree
            valid_to = np.where(expired, (cur_insrt[i] // DAY_S - 1) * DAY_S, -1)
        else:
            rout = n_old[i] + 2
            insrt = wd_insrt[i]
            valid_to = wd_valid_to[i]
        time_f = np.exp(rng.normal(0.12 if copy else 0.0, 0.08, len(rows))) * in_f
        versions.append(dict(rows=rows, rout=rout, insrt=insrt, valid_to=valid_to, time_f=time_f, res=v_res))

    rows = np.concatenate([v["rows"] for v in versions])
    r_item = it[rows]
    r_slot = sl[rows]
    r_rout = np.concatenate([v["rout"] for v in versions])
    r_insrt = np.concatenate([v["insrt"] for v in versions])
    r_valid_to = np.concatenate([v["valid_to"] for v in versions])
    r_res = np.concatenate([v["res"] for v in versions])
    time_f = np.concatenate([v["time_f"] for v in versions])
    r_run_time = np.round(run_time[rows] * time_f, 2).clip(0.01)
    r_setup = np.round(setup[rows] * time_f / 5) * 5
    order = np.lexsort((r_slot, r_rout, r_item))
    r_item, r_slot, r_rout, r_insrt, r_valid_to, r_res = (a[order] for a in (r_item, r_slot, r_rout, r_insrt, r_valid_to, r_res))
    r_run_time, r_setup, r_run_qty = r_run_time[order], r_setup[order], run_qty[rows][order]
    r_run_unit_std = r_run_time / r_run_qty
    routing_key = r_item.astype(np.int64) * 8 + r_rout
    pos, _, rstarts = _group_positions(routing_key)
    r_seq = (pos + 1) * 10
    r_out = RES_OUT[r_res]
    mr = len(r_item)

    item_codes = _codes(FAM_PREFIX[fam], np.arange(1, n + 1), max(6, len(str(n))))
    none = np.array([None], dtype=object)

    def opt(values: np.ndarray, share: float) -> np.ndarray:
        return _blank(rng, values.astype(object) if values.dtype != float else values, share)

    valid_from = (r_insrt // DAY_S) * DAY_S
    routings = pd.DataFrame(
        {
            "ITEM_CD": item_codes[r_item],
            "ROUT_NO": np.strings.zfill(r_rout.astype(str), 3).astype(object),
            "PROC_SEQ": r_seq.astype(np.int64),
            "JOB_CD": SLOT_JOB[r_slot],
            "JOB_NM": SLOT_NAME[r_slot],
            "RES_CD": RES_CODE[r_res],
            "RES_DIS": opt(RES_NAME[r_res], 0.05),
            "INSIDE_FLAG": np.where(r_out, "OUT", "IN").astype(object),
            "TIME_UNIT": np.full(mr, "MIN", dtype=object),
            "SETUP_TIME": r_setup,
            "RUN_TIME": r_run_time,
            "RUN_TIME_QTY": r_run_qty,
            "MFG_LT": np.where(r_out, np.where(SLOT_JOB[r_slot] == "COAT", 10.0, 7.0), 1.0),
            "QUEUE_TIME": opt(rng.integers(0, 5, mr) * 30.0, 0.3),
            "WAIT_TIME": opt(np.where(r_out, 0.0, rng.integers(0, 3, mr) * 30.0), 0.3),
            "MOVE_TIME": opt(np.where(r_out, 60.0, 10.0), 0.3),
            "VALID_FROM_DT": _dt(valid_from),
            "VALID_TO_DT": _dt(np.where(r_valid_to < 0, np.iinfo(np.int64).min, r_valid_to)),
            "INSRT_DT": _dt(r_insrt),
        },
        columns=ROUTING_COLUMNS,
    )

    # ---------------------------------------------------------------- work orders
    # routing start/count per (item, ROUT_NO); current = ROUT_NO n_old + 1
    rcount = np.diff(np.append(rstarts, mr))
    rkey = routing_key[rstarts]
    cur_idx = np.searchsorted(rkey, np.arange(n, dtype=np.int64) * 8 + n_old + 1)
    old_idx = np.searchsorted(rkey, np.arange(n, dtype=np.int64) * 8 + 1)
    produced = rng.random(n) < np.where(standard, 0.70, 0.55)
    n_orders = np.where(produced, _choice(rng, n, [0.2, 0.2, 0.2, 0.15, 0.13, 0.12]) + 1, 0)
    o_item = np.repeat(np.arange(n), n_orders)
    no = len(o_item)
    window_start = today_s - 730 * DAY_S
    cur_from = valid_from[rstarts][cur_idx][o_item]
    lo = np.minimum(np.maximum(window_start, cur_from), today_s - 5 * DAY_S)
    o_start = lo + (rng.random(no) * (today_s - DAY_S - lo)).astype(np.int64)
    use_old = multi[o_item] & (rng.random(no) < 0.15) & (cur_from > window_start + 10 * DAY_S)
    old_start = window_start + (rng.random(no) * (cur_from - DAY_S - window_start)).astype(np.int64)
    o_start = np.where(use_old, old_start, o_start)
    o_rout = np.where(use_old, old_idx[o_item], cur_idx[o_item])
    qty_med = FAM_QTY[fam[o_item]] * np.array([2.0, 1.0, 0.4])[size[o_item]] * np.where(standard[o_item], 2.0, 1.0)
    o_qty = np.maximum(1, np.round(np.exp(np.log(qty_med) + 0.8 * rng.standard_normal(no)))).clip(max=5000)

    o_cnt = rcount[o_rout]
    w_row = np.repeat(rstarts[o_rout], o_cnt) + (np.arange(o_cnt.sum()) - np.repeat(np.cumsum(o_cnt) - o_cnt, o_cnt))
    w_order = np.repeat(np.arange(no), o_cnt)
    mw = len(w_row)
    w_out = r_out[w_row]
    step_days = np.where(w_out, rng.integers(5, 11, mw), rng.integers(0, 2, mw))
    cum = np.cumsum(step_days)
    o_first = np.cumsum(o_cnt) - o_cnt
    cum_in_order = cum - np.repeat(cum[o_first] - step_days[o_first], o_cnt)
    o_total = cum_in_order[np.cumsum(o_cnt) - 1]
    o_start = np.minimum(o_start // DAY_S * DAY_S, today_s - DAY_S - o_total * DAY_S)
    report = np.repeat(o_start, o_cnt) + cum_in_order * DAY_S + rng.integers(7 * 60, 19 * 60, mw) * 60

    # actual times: standard x work-centre bias x hidden item factor x per-order noise
    wc_run_bias = np.exp(rng.normal(0, 0.15, len(WORK_CENTRES)))
    wc_setup_bias = np.exp(rng.normal(0, 0.2, len(WORK_CENTRES)))
    wc_sigma = rng.uniform(0.15, 0.3, len(WORK_CENTRES))
    item_true = np.exp(rng.normal(0, 0.1, n))
    w_res = r_res[w_row]
    w_alt = RES_ALT[r_slot[w_row], size[r_item[w_row]]]
    dispatched = (w_alt >= 0) & (w_alt != w_res) & (rng.random(mw) < 0.04)
    w_res = np.where(dispatched, w_alt, w_res)
    w_item = r_item[w_row]
    w_qty = o_qty[w_order]
    run_true = r_run_unit_std[w_row] * wc_run_bias[w_res] * item_true[w_item]
    run_min = run_true * w_qty * np.exp(wc_sigma[w_res] * rng.standard_normal(mw))
    setup_min = r_setup[w_row] * wc_setup_bias[w_res] * np.exp(0.3 * rng.standard_normal(mw))
    bad = rng.binomial(w_qty.astype(np.int64), 0.004).astype(float)
    missing_run = rng.random(mw) < 0.01
    missing_setup = rng.random(mw) < 0.01

    if drift_from is not None:
        drift_s = int(np.datetime64(drift_from, "s").astype(np.int64))
        after = report >= drift_s
        res_f = np.ones(len(WORK_CENTRES))
        for code, f in DRIFT_RUN_FACTOR_BY_RES.items():
            res_f[W[code]] = f
        mat_f_d = np.ones(len(MATERIALS))
        for code, f in DRIFT_RUN_FACTOR_BY_MATERIAL.items():
            mat_f_d[M[code]] = f
        run_min = np.where(after, run_min * res_f[w_res] * mat_f_d[mat[w_item]], run_min)
        setup_min = np.where(after & (res_f[w_res] > 1), setup_min * DRIFT_SETUP_FACTOR, setup_min)

    work_results = pd.DataFrame(
        {
            "ITEM_CD": item_codes[w_item],
            "ROUT_NO": routings["ROUT_NO"].to_numpy(dtype=object)[w_row],
            "PROC_SEQ": r_seq[w_row].astype(np.int64),
            "JOB_CD": SLOT_JOB[r_slot[w_row]],
            "RES_CD": RES_CODE[w_res],
            "REPORT_DT": _dt(report),
            "ORDER_QTY": w_qty.astype(float),
            "BAD_QTY": bad,
            "SETUP_HOURS": np.where(missing_setup, np.nan, np.round(setup_min / 60.0, 4)),
            "MACH_WORKED_HOURS": np.where(missing_run, np.nan, np.maximum(np.round(run_min / 60.0, 5), 1e-5)),
        },
        columns=WORK_RESULT_COLUMNS,
    )

    # ---------------------------------------------------------------- item master frame
    seal_in = np.round(idd / 5) * 5
    has_out = np.isin(SEAL_GROUPS[seal_grp], ["DOUBLE", "CARTRIDGE"])
    has_mid = (SEAL_GROUPS[seal_grp] == "CARTRIDGE") & (rng.random(n) < 0.5)
    rot = _choice(rng, n, [0.5, 0.3, 0.2])  # both, clockwise only, counter-clockwise only
    od_s = np.round(od).astype(np.int64).astype(str)
    id_s = np.round(idd).astype(np.int64).astype(str)
    name = np.strings.add(np.strings.add(FAM_NAME[fam].astype(str), " "), MAT_CODE[mat].astype(str))
    name = np.strings.add(np.strings.add(np.strings.add(name, " "), od_s), np.strings.add("x", id_s))
    items = pd.DataFrame(
        {
            "ITEM_CD": item_codes,
            "ITEM_NM": opt(name.astype(object), 0.01),
            "PART_TYPE": FAM_TYPE[fam],
            "PartNm": opt(FAM_NAME[fam], 0.05),
            "ITEM_TYPE": np.full(n, "MFG", dtype=object),
            "ITEM_ACCT": np.where(standard, "20", "30").astype(object),
            "ITEM_UNIT": np.full(n, "EA", dtype=object),
            "ITEM_MATERIAL": opt(MAT_CODE[mat], 0.02),
            "MATERIAL_DESC": opt(MAT_DESC[mat], 0.08),
            "RAW_MATL_KIND": opt(RAW_KINDS[raw], 0.06),
            "ITEM_GRP1": opt(PRODUCT_LINES[line], 0.03),
            "GROUP1": opt(DUTIES[duty], 0.04),
            "GROUP2": opt(group2, 0.10),
            "STANDARD_YN": np.where(standard, "Y", "N").astype(object),
            "DRAW_NO": opt(_codes(np.full(n, "DWG"), rng.permutation(n) + 100000, 7), 0.05),
            "DRAW_REV": opt(np.array(list("ABCDE"), dtype=object)[_choice(rng, n, [0.5, 0.25, 0.13, 0.08, 0.04])], 0.10),
            "SealTypeGrup": opt(SEAL_GROUPS[seal_grp], 0.03),
            "IN_SEALTYPE_CD": opt(SEAL_CODES[rng.integers(0, len(SEAL_CODES), n)], 0.05),
            "MID_SEALTYPE_CD": np.where(has_mid, SEAL_CODES[rng.integers(0, len(SEAL_CODES), n)], none[0]),
            "OUT_SEALTYPE_CD": np.where(has_out, SEAL_CODES[rng.integers(0, len(SEAL_CODES), n)], none[0]),
            "OUTDIAMETER": opt(od, 0.02),
            "INDIAMETER": opt(idd, 0.08),
            "OUTTHICKNESS": opt(thick, 0.06),
            "IN_SEALSIZE": opt(seal_in, 0.05),
            "MID_SEALSIZE": np.where(has_mid, seal_in + 10, np.nan),
            "OUT_SEALSIZE": np.where(has_out, seal_in + 20, np.nan),
            "ROTATE_CLOCKWISE": opt(np.where(rot != 2, 1.0, 0.0), 0.1),
            "ROTATE_CTRCLOCKWISE": opt(np.where(rot != 1, 1.0, 0.0), 0.1),
            "INSRT_DT": _dt(item_insrt),
        },
        columns=ITEM_COLUMNS,
    )
    return items, routings, work_results


ProfileFn = Callable[[int, int, date | None, date], tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]
PROFILES: dict[str, ProfileFn] = {
    "seal": _seal,
    "jobshop": jobshop.generate,
    "fabrication": fabrication.generate,
}
DEFAULT_PROFILE = "seal"


def generate(
    n_items: int,
    seed: int = 0,
    drift_from: date | None = None,
    today: date = DEFAULT_TODAY,
    profile: str = DEFAULT_PROFILE,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generate (items, routings, work_results) DataFrames with the exact ERP column names.

    `profile` names the factory (`PROFILES`). Deterministic for (n_items, seed, today, profile);
    `drift_from` changes only the hours of work results reported on or after that date on the
    profile's drifted work centres / materials.
    """
    if n_items < 1:
        raise ValueError("n_items must be at least 1")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[profile](int(n_items), seed, drift_from, today)


def as_date(value: str | date | datetime | None) -> date | None:
    """Parse a `YYYY-MM-DD` option value (used by the seed command)."""
    if value is None or isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    return date.fromisoformat(value)
