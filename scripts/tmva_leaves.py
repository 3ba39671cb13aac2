"""Print the leaves of a TMVA BDT's first tree with each class's share, from its weights file.

    python scripts/tmva_leaves.py TMVAClassification_BDT.weights.xml [...]

TMVA writes every node's signal purity p = s / (s + b). The first tree of a boosted forest is grown on
the training sample with its own weights (bagged, not yet boosted), so a leaf's share of each class
follows from the purities along its path: a node of purity p whose children have purities p_l and p_r
sends f = (p - p_r) / (p_l - p_r) of its weight left, f p_l / p of its signal and f (1 - p_l) / (1 - p)
of its background. An event goes right when its variable is at or above the cut (TMVA's cType 1).
This is how `dampeml.evaluation.dampe_mc.LEAVES` was derived from the electron-flux analysis's BDTs.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def leaves(path: str) -> list[tuple[list[tuple[str, str, float]], float, float]]:
    """(conditions, signal share, background share) of each leaf of the first tree in `path`."""
    root = ET.parse(path).getroot()
    names = [v.get("Expression") for v in root.iter("Variable")]
    out: list = []

    def walk(node, conditions, s, b):
        kids = {k.get("pos"): k for k in node.findall("Node")}
        p = float(node.get("purity"))
        if not kids:
            out.append((conditions, s, b))
            return
        if node.get("cType") != "1":
            raise SystemExit(f"{path}: a node with cType {node.get('cType')} (only 1 is read)")
        pl, pr = float(kids["l"].get("purity")), float(kids["r"].get("purity"))
        f = (p - pr) / (pl - pr)
        var, cut = names[int(node.get("IVar"))], float(node.get("Cut"))
        walk(kids["l"], [*conditions, (var, "<", cut)], s * f * pl / p, b * f * (1 - pl) / (1 - p))
        walk(
            kids["r"], [*conditions, (var, ">=", cut)], s * (1 - f) * pr / p, b * (1 - f) * (1 - pr) / (1 - p)
        )

    walk(next(root.iter("BinaryTree")).find("Node"), [], 1.0, 1.0)
    return out


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit(__doc__)
    for path in paths:
        print(f"# {path}")
        for conditions, s, b in leaves(path):
            cond = ", ".join(f"({v!r}, {o!r}, {c:.4g})" for v, o, c in conditions)
            print(f"    Leaf(({cond},), electrons={s:.4f}, protons={b:.4f}),")


if __name__ == "__main__":
    main(sys.argv[1:])
