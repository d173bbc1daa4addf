"""Renderers: run summaries in a paper layout as Markdown, CSV or LaTeX."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from .layouts import cell, groups, layout_columns, row_label, to_frame

_TEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Å": r"\AA{}", "°": r"$^\circ$", "×": r"$\times$",
}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def _display_rows(groups: list[pd.DataFrame], cols: list[tuple[str, str]], decimals: int) -> list[list[list[str]]]:
    out = []
    for part in groups:
        rows = []
        for i, row in enumerate(part.to_dict("records")):
            target = f"{float(row['target_bg']):.2f} ± {float(row['margin']):.2f}" if i == 0 else ""
            rows.append([target, row_label(row), *(cell(row, k, decimals) for k, _ in cols)])
        out.append(rows)
    return out


def _render_csv(groups: list[pd.DataFrame], layout: str) -> str:
    if layout == "diversity":
        value_cols = ["success", "unique_rate", "n_success", "n_unique_success", "n_unique_novel_success",
                      "novelty_reference"]
    else:
        value_cols = [k for k, _ in layout_columns(layout)]
    frame = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame()
    value_cols = [c for k in value_cols for c in (k, f"{k}_lo", f"{k}_hi", f"{k}_half")
                  if c == k or c in frame]  # intervals where there are any
    cols = ["task", "target_bg", "margin", "method", "selection", "source", "n_samples", "n_seeds", "seeds",
            *value_cols]
    return frame.reindex(columns=cols).to_csv(index=False, lineterminator="\n")


def _render_md(headers: list[str], blocks: list[list[list[str]]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(headers) - 2)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for rows in blocks for r in rows]
    return "\n".join(lines) + "\n"


def _render_tex(headers: list[str], blocks: list[list[list[str]]]) -> str:
    lines = [r"\begin{tabular}{ll" + "r" * (len(headers) - 2) + "}", r"\toprule"]
    lines.append(" & ".join(_tex_escape(h) for h in headers) + r" \\")
    lines.append(r"\midrule")
    for i, rows in enumerate(blocks):
        if i:
            lines.append(r"\midrule")
        lines += [" & ".join(_tex_escape(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_table(
    summaries: pd.DataFrame | Iterable[Mapping[str, Any]],
    layout: str,
    fmt: str = "md",
    with_paper: bool = False,
    decimals: int = 3,
) -> str:
    """Render summaries in a paper layout ("table2", "table3", "table4", "diversity") as md, csv or tex."""
    cols = layout_columns(layout)   # ValueError for an unknown layout
    if fmt not in ("md", "csv", "tex"):
        raise ValueError(f"unknown format {fmt!r}; use md, csv or tex")
    parts = groups(to_frame(summaries), layout, with_paper)
    if fmt == "csv":
        return _render_csv(parts, layout)
    headers = ["Target BG (eV)", "method", *(h for _, h in cols)]
    blocks = _display_rows(parts, cols, decimals)
    return _render_md(headers, blocks) if fmt == "md" else _render_tex(headers, blocks)
