"""The verdict: the leader at each funnel step per target, controls excluded, significance only where tested."""

from __future__ import annotations

import pandas as pd

from smoacs_bench.evaluation.verdict import verdict_lines, verdict_markdown, verdict_rows


def _table():
    rows = []
    for target in (0.5, 1.5):
        rows += [
            {"task": "perovskite", "target_bg": target, "margin": 0.04, "method": "A", "selection": "final",
             "source": "ours", "success": 0.8, "success_lo": 0.75, "success_hi": 0.85, "success_relaxed": 0.1,
             "success_relaxed_lo": 0.05, "success_relaxed_hi": 0.2},
            {"task": "perovskite", "target_bg": target, "margin": 0.04, "method": "B", "selection": "final",
             "source": "ours", "success": 0.3, "success_lo": 0.25, "success_hi": 0.35, "success_relaxed": 0.3,
             "success_relaxed_lo": 0.2, "success_relaxed_hi": 0.4},
            {"task": "perovskite", "target_bg": target, "margin": 0.04, "method": "Reference(mp20-abx3)",
             "selection": "final", "source": "ours", "success": 0.9, "success_relaxed": 0.9},
            {"task": "perovskite", "target_bg": target, "margin": 0.04, "method": "S(Cry)", "source": "paper",
             "success": 0.99},
        ]
    return pd.DataFrame(rows)


def test_the_leader_per_step_skips_controls_and_paper_rows_and_tests_only_where_paired():
    paired = pd.DataFrame([{"target_bg": 1.5, "method_a": "B", "method_b": "A", "column": "success_relaxed",
                            "p_holm": 0.01}])
    recs = {(r["target_bg"], r["key"]): r for r in verdict_rows(_table(), paired)}
    assert recs[(0.5, "success")]["leader"] == "A" and recs[(0.5, "success")]["runner_up"] == "B"
    assert recs[(0.5, "success")]["separation"] == "intervals apart (not tested)"
    assert recs[(0.5, "success_relaxed")]["leader"] == "B"
    assert recs[(0.5, "success_relaxed")]["separation"] == "intervals overlap (not tested)"
    assert recs[(1.5, "success_relaxed")]["separation"] == "significant (paired, Holm p = 0.01)"
    md = verdict_markdown("demo", _table(), paired)
    assert "Reference" not in md.split("| target")[1] and "S(Cry)" not in md
    assert "- **relaxed**: B at 0.5 ± 0.04, 1.5 ± 0.04 eV (1 of 2 leads significant in a paired test)" in md
    lines = verdict_lines(_table(), paired)
    assert lines[1].startswith("1.5 ± 0.04 eV — own judge: A 0.800 (0.75-0.85)") and "relaxed: B* 0.300" in lines[1]
    # rows at another margin are another comparison, never mixed in
    wide = pd.concat([_table(), _table().assign(margin=1.58, success=0.99, method="A wide")])
    recs = verdict_rows(wide)
    assert {r["window"] for r in recs} == {"0.5 ± 0.04", "1.5 ± 0.04", "0.5 ± 1.58", "1.5 ± 1.58"}
    assert all(r["leader"] != "A wide" for r in recs if r["margin"] == 0.04)


def test_an_all_zero_step_has_no_leader():
    t = _table().assign(success_relaxed=0.0)
    assert "| 0.5 ± 0.04 | relaxed | none (all 0) |" in verdict_markdown("demo", t)


def test_the_readme_is_short_and_its_answer_is_the_generated_verdict():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    block = readme.split("<!-- include: results/relax3/verdict.md -->\n")[1].split("<!-- end include -->")[0]
    assert block.strip() == (root / "results" / "relax3" / "verdict.md").read_text().strip()
    for doc in ("reproducing", "judge", "methods", "tasks", "architecture", "commands"):
        assert f"docs/{doc}.md" in readme and (root / "docs" / f"{doc}.md").is_file()
