"""Words a planner uses for every ERP column: one mapping, used by the models (hence the admin),
the forms, the tables and the error messages.

Keys are the ERP's column names (`BI_ITEM_INFO_VIEW`, `BI_ROUTING_VIEW`,
`BI_WORK_ORDER_RESULTS`); the API and the CSV files keep the column names, the pages say
the words. Sizes are millimetres; times minutes unless the column says hours.
"""

from __future__ import annotations

COLUMN_LABELS: dict[str, str] = {
    # Item master
    "ITEM_CD": "item code",
    "ITEM_NM": "item name",
    "PART_TYPE": "part type",
    "PartNm": "part name",
    "ITEM_TYPE": "item type",
    "ITEM_ACCT": "item account",
    "ITEM_UNIT": "unit of measure",
    "ITEM_MATERIAL": "material",
    "MATERIAL_DESC": "material description",
    "RAW_MATL_KIND": "raw material kind",
    "ITEM_GRP1": "item group",
    "GROUP1": "group 1",
    "GROUP2": "group 2",
    "STANDARD_YN": "standard item",
    "DRAW_NO": "drawing number",
    "DRAW_REV": "drawing revision",
    "SealTypeGrup": "seal type group",
    "IN_SEALTYPE_CD": "inner seal type",
    "MID_SEALTYPE_CD": "middle seal type",
    "OUT_SEALTYPE_CD": "outer seal type",
    "OUTDIAMETER": "outer diameter (mm)",
    "INDIAMETER": "inner diameter (mm)",
    "OUTTHICKNESS": "thickness (mm)",
    "IN_SEALSIZE": "inner seal size",
    "MID_SEALSIZE": "middle seal size",
    "OUT_SEALSIZE": "outer seal size",
    "ROTATE_CLOCKWISE": "rotates clockwise",
    "ROTATE_CTRCLOCKWISE": "rotates counter-clockwise",
    "INSRT_DT": "inserted",
    # Routing
    "ROUT_NO": "routing no.",
    "PROC_SEQ": "sequence",
    "JOB_CD": "job",
    "JOB_NM": "job name",
    "RES_CD": "work centre",
    "RES_DIS": "work centre name",
    "INSIDE_FLAG": "in-house / outsourced",
    "TIME_UNIT": "time unit",
    "SETUP_TIME": "setup time",
    "RUN_TIME": "run time",
    "RUN_TIME_QTY": "run time per quantity",
    "MFG_LT": "manufacturing lead time",
    "QUEUE_TIME": "queue time",
    "WAIT_TIME": "wait time",
    "MOVE_TIME": "move time",
    "VALID_FROM_DT": "valid from",
    "VALID_TO_DT": "valid to",
    # Work-order results
    "REPORT_DT": "reported",
    "ORDER_QTY": "order quantity",
    "BAD_QTY": "rejected quantity",
    "SETUP_HOURS": "setup hours",
    "MACH_WORKED_HOURS": "machine hours",
}


def label(column: str) -> str:
    """The planner's word for an ERP column (the column name itself when there is none)."""
    return COLUMN_LABELS.get(column, column)


def capitalised(column: str) -> str:
    text = label(column)
    return text[:1].upper() + text[1:]
