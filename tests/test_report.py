"""Tests for tomlab.report: data helpers, commentary, .qmd parsing and the built-in renderer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests import shown
from tests.layout import layout_manifest, save_layout_manifest
from tomlab import stats as stats
from tomlab.report import common as report_common
from tomlab.report import probing as report_probing
from tomlab.report import setup as report_setup
from tomlab.report.render import engine as report_render_engine
from tomlab.report.render import qmd as report_render_qmd

REPORT_SRC = Path(__file__).resolve().parents[1] / "report"
N_LAYERS, N_HEADS = 4, 4


def _tiny_png(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 3, figsize=(3.0, 1.0), dpi=40)
    for ax in axes:
        ax.imshow(rng.random((N_LAYERS, N_HEADS)), cmap="viridis")
        ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def fabricate_results(
    root: Path,
    *,
    strong: bool = True,
    sites: tuple[str, ...] = ("attn_out", "head_z"),
    split_mode: str = "by_story",
    n_val: int = 400,
    seed: int = 0,
    with_bench: bool = True,
) -> Path:
    """Write a small results directory in the pipeline's layout.

    strong=True: one head per target is far above the lexical baseline and every control head.
    strong=False: the best protagonist head is within 0.01 of the best control head.
    """
    rng = np.random.default_rng(seed)
    setup = {
        "config_hash": "cafe1234beef",
        "config": {"model": {"name": "tiny-llama"}, "probing": {"C": 1.0}},
        "model": {
            "name": "tiny-llama",
            "family": "llama",
            "n_layers": N_LAYERS,
            "n_heads": N_HEADS,
            "head_dim": 8,
            "n_params": 1_234_567,
            "dtype": "float32",
            "device": "cpu",
        },
        "data": {
            "source": "generated",
            "raw_file": "data/stories.jsonl",
            "n_stories": 300,
            "n_probe_stories": 200,
            "n_eval_stories": 100,
            "n_samples": 800,
            "n_train": 400,
            "n_val": n_val,
            "split_mode": split_mode,
        },
        "seeds": {"stories": 1, "split": 2, "probing": 3},
        "sites": list(sites),
        "tomlab_version": "0.1.0",
        "torch_version": "2.5.0",
        "transformers_version": "4.46.0",
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "setup.json").write_text(json.dumps(setup), encoding="utf-8")

    chance = {"oracle": 0.5, "protagonist": 0.5, "joint": 0.25}
    for site in sites:
        rows, lrows, top = [], [], []
        for target, base in chance.items():
            val = base + rng.uniform(0.0, 0.08, size=(N_LAYERS, N_HEADS))
            ctrl = base + rng.uniform(0.0, 0.05, size=(N_LAYERS, N_HEADS))
            if strong:
                val[2, 1] = 0.987 if target == "oracle" else (0.913 if target == "protagonist" else 0.801)
            elif target == "protagonist":
                val[:] = base + rng.uniform(0.0, 0.02, size=(N_LAYERS, N_HEADS))
                val[2, 1] = ctrl.max() + 0.01
            else:
                val[2, 1] = base + 0.3
            for layer in range(N_LAYERS):
                for head in range(N_HEADS):
                    v, c = float(val[layer, head]), float(ctrl[layer, head])
                    rows.append(
                        dict(layer=layer, head=head, target=target, train_acc=min(1.0, v + 0.05), val_acc=v,
                             control_acc=c, selectivity=v - c, n_train=400, n_val=n_val)
                    )
                lrows.append(dict(layer=layer, target=target, train_acc=0.99, val_acc=float(val[layer].max()) + 0.01,
                                  control_acc=float(ctrl[layer].mean()), selectivity=0.1))
            order = np.argsort(-val.ravel(), kind="stable")
            for rank, flat in enumerate(order[:10], start=1):
                layer, head = divmod(int(flat), N_HEADS)
                top.append(dict(target=target, rank=rank, layer=layer, head=head, val_acc=float(val[layer, head]),
                                control_acc=float(ctrl[layer, head]),
                                selectivity=float(val[layer, head] - ctrl[layer, head])))
        d = root / "probing" / "forward_belief" / site
        d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(d / "heads.parquet", index=False)
        pd.DataFrame(lrows).to_parquet(d / "layers.parquet", index=False)
        pd.DataFrame(top).to_csv(d / "top_heads.csv", index=False)
        _tiny_png(root / "figures" / f"probing_forward_belief_{site}_accuracy.png", seed)
        _tiny_png(root / "figures" / f"probing_forward_belief_{site}_selectivity.png", seed + 1)
    pd.DataFrame(
        [
            dict(target="oracle", train_acc=0.7, val_acc=0.55, majority_acc=0.5),
            dict(target="protagonist", train_acc=0.7, val_acc=0.52, majority_acc=0.5),
            dict(target="joint", train_acc=0.5, val_acc=0.27, majority_acc=0.25),
        ]
    ).to_parquet(root / "probing" / "forward_belief" / "lexical.parquet", index=False)
    if with_bench:
        (root / "bench").mkdir(exist_ok=True)
        (root / "bench" / "probing.json").write_text(json.dumps(
            {"speedup": 41.5, "max_acc_gap": 0.0031, "batched_seconds": 1.25, "sklearn_seconds": 51.9,
             "n_probes": 96, "joint_top_k": 16, "joint_top_k_overlap": 13, "joint_tpfo_cosine_top_k_mean": 0.9712}))
        (root / "bench" / "extract.json").write_text(json.dumps(
            {"batched_tokens_per_s": 12345.6, "single_tokens_per_s": 2345.6, "speedup": 5.26, "batch_size": 16,
             "n_prompts": 64}))
    save_layout_manifest(root)
    return root


@pytest.fixture
def strong(tmp_path: Path) -> Path:
    return fabricate_results(tmp_path / "strong", strong=True)


@pytest.fixture
def weak(tmp_path: Path) -> Path:
    return fabricate_results(tmp_path / "weak", strong=False, split_mode="by_sample", n_val=40)


# ------------------------------------------------------------------ data helpers


def test_results_dir_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOMLAB_RESULTS", str(tmp_path))
    assert report_common.results_dir() == tmp_path.resolve()
    monkeypatch.delenv("TOMLAB_RESULTS")
    (tmp_path / "report").mkdir()
    monkeypatch.chdir(tmp_path / "report")
    assert report_common.results_dir() == (tmp_path / "results").resolve()


def test_load_setup_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="setup.json"):
        report_common.load_setup(tmp_path / "setup.json")


def test_setup_table(strong: Path) -> None:
    table = report_setup.setup_table(report_common.load_setup(strong / "setup.json"))
    assert list(table.columns) == ["item", "value"]
    values = dict(zip(table["item"], table["value"], strict=True))
    assert values["model"] == "tiny-llama"
    assert values["layers x heads x head_dim"] == "4 x 4 x 8"
    assert values["parameters"].startswith("1.23 M")
    assert values["dtype / device"] == "float32 / cpu"
    assert "generated" in values["data source"] and "stories.jsonl" in values["data source"]
    assert values["stories (probe / eval)"] == "300 (200 / 100)"
    assert values["samples (train / val)"] == "800 (400 / 400)"
    assert values["split mode"].startswith("by_story")
    assert values["seeds"] == "stories 1, split 2, probing 3"
    assert values["sites"] == "attn_out, head_z"
    assert values["config hash"] == "cafe1234beef"
    assert "torch 2.5.0" in values["versions"]


def test_setup_table_tolerates_missing_fields() -> None:
    table = report_setup.setup_table({"model": {"name": "m"}})
    assert len(table) == 14
    assert table.loc[table["item"] == "model", "value"].item() == "m"
    assert table.loc[table["item"] == "revision", "value"].item() == "none (not a hub model)"
    pinned = report_setup.setup_table({"model": {"name": "org/m", "revision": "0123abcd"}})
    assert pinned.loc[pinned["item"] == "revision", "value"].item() == "0123abcd"


def test_probing_summary(strong: Path) -> None:
    df = report_probing.probing_summary(layout_manifest(strong), "attn_out")
    assert list(df["target"]) == ["oracle", "protagonist", "joint"]
    row = df.set_index("target").loc["protagonist"]
    assert row["best head (L.H)"] == "2.1"
    assert row["val acc"] == pytest.approx(0.913)
    assert row["lexical acc"] == pytest.approx(0.52)
    assert row["chance"] == 0.5
    assert df.set_index("target").loc["joint", "chance"] == 0.25
    assert row["best layer"] == 2
    assert row["layer acc"] == pytest.approx(0.923)
    assert 0.5 < row["mean head acc"] < 0.913


def test_top_heads_table(strong: Path) -> None:
    df = report_probing.top_heads_table(layout_manifest(strong), "attn_out")
    assert list(df["rank"]) == list(range(1, 11))
    assert df.loc[0, "oracle head"] == "2.1"
    assert df.loc[0, "protagonist acc"] == pytest.approx(0.913)


def test_paper_comparison_no_invented_numbers(strong: Path) -> None:
    df = report_probing.paper_comparison(layout_manifest(strong), "attn_out")
    assert list(df.columns) == ["quantity", "paper (Mistral-7B)", "ours", "note"]
    assert len(df) == 3
    assert all(v == report_common.NOT_TRANSCRIBED for v in df["paper (Mistral-7B)"])
    assert df["ours"].tolist() == pytest.approx([0.987, 0.913, 0.801])
    assert "Figure 2" in df.loc[0, "note"]


def test_bench_table(strong: Path, tmp_path: Path) -> None:
    df = report_setup.bench_table(layout_manifest(strong))
    assert set(df["benchmark"]) == {"probing", "extract"}
    assert "41.5" in df["value"].tolist()
    shared = df[df["quantity"].str.startswith("joint probe: top heads shared")]
    assert shared["value"].tolist() == ["13"]
    assert "0.971" in df["value"].tolist()
    assert report_setup.bench_table(layout_manifest(tmp_path)).empty


def test_to_markdown_formats_mixed_columns() -> None:
    df = pd.DataFrame({"a": ["x|y", "z"], "b": [0.12345, float("nan")], "c": ["not transcribed", 0.5], "n": [1, 2]})
    md = report_common.to_markdown(df)
    lines = md.splitlines()
    assert lines[0].split("|")[1].strip() == "a"
    assert r"x\|y" in md
    assert "0.123" in md and "0.12345" not in md
    assert "–" in md  # NaN
    assert "0.500" in md and "not transcribed" in md
    assert lines[1].endswith(":|")  # integer column right-aligned
    assert report_common.to_markdown(df, floatfmt=".1f").count("0.1") >= 1


def test_commentary_strong(strong: Path) -> None:
    text = report_probing.commentary_probing(layout_manifest(strong), "attn_out")
    assert "weak" not in text.lower()
    assert "**Protagonist.** The best head, 2.1, reaches 0.913" in text
    assert "story" in text and "by story" in text
    assert "clearly above its chance level of 0.25" in text
    assert "Oracle beliefs are easier" in text
    se = (0.913 * 0.087 / 400) ** 0.5
    assert f"{se:.3f}" in text
    assert "maximum over 16 heads" in text


def test_commentary_weak(weak: Path) -> None:
    text = report_probing.commentary_probing(layout_manifest(weak), "attn_out")
    protagonist = next(p for p in text.split("\n\n") if p.startswith("**Protagonist.**"))
    assert "The evidence is weak" in protagonist
    assert "shuffled-label control" in protagonist
    oracle = next(p for p in text.split("\n\n") if p.startswith("**Oracle.**"))
    assert "weak" not in oracle
    assert "optimistic" in text  # by_sample split
    assert "n_val = 40" in text


def test_commentary_small_gap_within_noise_is_weak(strong: Path) -> None:
    """Gaps above the margin but inside two standard errors still count as weak evidence."""
    path = strong / "probing" / "forward_belief" / "attn_out" / "heads.parquet"
    heads = pd.read_parquet(path)
    joint = heads["target"] == "joint"
    heads.loc[joint, "val_acc"] = 0.26
    heads.loc[joint, "control_acc"] = 0.25
    heads.loc[joint & (heads["layer"] == 2) & (heads["head"] == 1), "val_acc"] = 0.40
    heads["n_val"] = 8
    heads.to_parquet(path, index=False)
    text = report_probing.commentary_probing(layout_manifest(strong), "attn_out")
    joint_para = next(p for p in text.split("\n\n") if p.startswith("**Joint.**"))
    assert "under two standard errors" in joint_para and "still weak" in joint_para
    assert "nominally above its chance level of 0.25" in text
    assert stats.binomial_se(0.4, 8) == pytest.approx((0.4 * 0.6 / 8) ** 0.5)


def test_commentary_unknown_split_and_missing_lexical(strong: Path) -> None:
    (strong / "setup.json").unlink()
    (strong / "probing" / "forward_belief" / "lexical.parquet").unlink()
    text = report_probing.commentary_probing(layout_manifest(strong), "head_z")
    assert "not recorded" in text
    assert "No lexical baseline" in text


# ------------------------------------------------------------------ .qmd parsing


def test_expand_includes_nested(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.qmd").write_text("A1\n{{< include sub/b.qmd >}}\nA3\n")
    (tmp_path / "sub" / "b.qmd").write_text("B1\n  {{< include c.qmd >}}\n")
    (tmp_path / "sub" / "c.qmd").write_text("C1\n")
    out = report_render_qmd.expand_includes("top\n{{< include a.qmd >}}\nend", tmp_path)
    assert out == "top\nA1\nB1\nC1\nA3\nend\n"


def test_expand_includes_missing_names_file(tmp_path: Path) -> None:
    (tmp_path / "a.qmd").write_text("{{< include nope.qmd >}}\n")
    with pytest.raises(report_render_qmd.ReportRenderError, match=r"a\.qmd:1.*nope\.qmd"):
        report_render_qmd.expand_includes("{{< include a.qmd >}}", tmp_path, "index.qmd")


def test_expand_includes_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.qmd").write_text("{{< include b.qmd >}}\n")
    (tmp_path / "b.qmd").write_text("{{< include a.qmd >}}\n")
    with pytest.raises(report_render_qmd.ReportRenderError, match="cycle"):
        report_render_qmd.expand_includes("{{< include a.qmd >}}", tmp_path)


def test_parse_chunk_options() -> None:
    opts, code = report_render_qmd.parse_chunk_options(
        "#| label: fig-x\n#| echo: true\n#| output: asis\n#| fig-cap: \"A: caption\"\n#| warning: false\nx = 1\n#| not an option\n"
    )
    assert opts == {"label": "fig-x", "echo": True, "output": "asis", "fig-cap": "A: caption", "warning": False}
    assert code == "x = 1\n#| not an option"
    assert report_render_qmd.parse_chunk_options("y = 2") == ({}, "y = 2")
    with pytest.raises(ValueError):
        report_render_qmd.parse_chunk_options("#| just text\nx = 1")


def test_parse_qmd_blocks_and_lines(tmp_path: Path) -> None:
    (tmp_path / "_part.qmd").write_text("## Part\n\n```{python}\n#| label: inner\n1/0\n```\n")
    (tmp_path / "index.qmd").write_text(
        "---\ntitle: T\n---\n\nText\n\n```python\nnot executed\n```\n\n"
        "```{python}\n#| include: false\nx = 1\n```\n\n{{< include _part.qmd >}}\n"
    )
    doc = report_render_qmd.parse_qmd(tmp_path / "index.qmd")
    assert doc.metadata == {"title": "T"}
    chunks = [b for b in doc.blocks if isinstance(b, report_render_qmd.Chunk)]
    assert [c.options.get("include") for c in chunks] == [False, None]
    assert chunks[0].file == "index.qmd" and chunks[0].line == 11
    assert chunks[1].where() == "_part.qmd:3 (chunk 'inner')"
    markdown = "".join(b for b in doc.blocks if isinstance(b, str))
    assert "not executed" in markdown and "## Part" in markdown


def test_a_yaml_alias_bomb_in_the_report_sources_is_refused(tmp_path: Path) -> None:
    levels = ["l0: &l0 [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (tmp_path / "index.qmd").write_text("---\n" + "\n".join(levels) + "\n---\n\nText\n")
    with pytest.raises(report_render_qmd.ReportRenderError, match=r"index.qmd: invalid YAML front matter: .*more than 100000"):
        report_render_qmd.parse_qmd(tmp_path / "index.qmd")
    chunk = "\n".join(f"#| {line}" for line in levels) + "\nx = 1\n"
    with pytest.raises(ValueError, match="invalid chunk options: .*more than 100000 values"):
        report_render_qmd.parse_chunk_options(chunk)


def test_chunk_markdown_options(tmp_path: Path) -> None:
    chunk = report_render_qmd.Chunk(code="print('hi')", options={}, file="x.qmd", line=1)
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    outs = [
        {"output_type": "stream", "name": "stdout", "text": "**bold**\n"},
        {"output_type": "stream", "name": "stderr", "text": "a warning\n"},
        {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/markdown": "| a |\n|---|\n| 1 |", "text/plain": "x"}},
    ]
    md = report_render_engine._chunk_markdown(chunk, {"echo": True, "warning": False, "fig-cap": "Cap", "tbl-cap": "Tab"}, outs, tmp_path, "figs")
    assert md.startswith("```python\nprint('hi')\n```")
    assert "```\n**bold**\n```" in md
    assert "a warning" not in md
    assert "![Cap](figs/unnamed-chunk-1-1.png)" in md
    assert (tmp_path / "figs" / "unnamed-chunk-1-1.png").read_bytes().startswith(b"\x89PNG")
    assert "| 1 |\n\n: Tab" in md
    asis = report_render_engine._chunk_markdown(chunk, {"echo": False, "output": "asis", "warning": True}, outs, tmp_path, "figs")
    assert asis.startswith("**bold**") and "a warning" in asis
    assert report_render_engine._chunk_markdown(chunk, {"echo": True, "output": False}, outs, tmp_path, "f") == _fenced("print('hi')")
    assert report_render_engine._chunk_markdown(chunk, {"echo": True, "include": False}, outs, tmp_path, "f") == ""


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def test_external_references() -> None:
    assert report_render_engine.external_references('<img src="data:image/png;base64,AAA"><a href="https://x">x</a>') == []
    assert report_render_engine.external_references('<img src="figs/a.png">') == ["figs/a.png"]
    assert report_render_engine.external_references('<link rel="stylesheet" href="s.css">') == ["s.css"]


def test_render_report_rejects_bad_engine(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine"):
        report_render_engine.render_report(REPORT_SRC, tmp_path, tmp_path / "a.html", tmp_path / "a.pdf", engine="latex")


def test_render_quarto_engine_with_fake_quarto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quarto path: runs in a copy, passes TOMLAB_RESULTS, moves both outputs into place."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    fake = bin_dir / "quarto"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$PWD|$TOMLAB_RESULTS|$*" >> "{log}"\n'
        'case "$*" in *html*) echo "<html><body>ok</body></html>" > index.html;; '
        '*typst*) printf "%%PDF-1.7 fake" > index.pdf;; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    out = tmp_path / "out"
    report_render_engine.render_report(REPORT_SRC, tmp_path / "res", out / "r.html", out / "r.pdf", engine="auto")
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    cwd, results, args = calls[0].split("|")
    assert Path(cwd).resolve() != REPORT_SRC.resolve()
    assert results == str((tmp_path / "res").resolve())
    assert args.startswith("render index.qmd --to html")
    assert "--to typst" in calls[1]
    assert (out / "r.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in out.iterdir()) == ["r.html", "r.pdf"]
    assert not (REPORT_SRC / "index.html").exists()


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_render_builtin_end_to_end(tmp_path: Path) -> None:
    results = fabricate_results(tmp_path / "results", strong=True)
    before = sorted(p.relative_to(REPORT_SRC) for p in REPORT_SRC.rglob("*"))
    out = tmp_path / "out"
    report_render_engine.render_report(REPORT_SRC, results, out / "index.html", out / "index.pdf", engine="builtin")
    assert sorted(p.relative_to(REPORT_SRC) for p in REPORT_SRC.rglob("*")) == before

    html = (out / "index.html").read_text(encoding="utf-8")
    assert report_render_engine.external_references(html) == []
    assert not re.search(r"""src=["'](?!data:)""", html)
    assert html.count("data:image/png;base64,") >= 4  # two figures per site, two sites
    assert re.search(r"<h1[^>]*>Probing</h1>", html)
    assert "cafe1234beef" in html  # config hash from the setup table
    assert "0.913" in html  # fabricated best protagonist head
    assert "not transcribed" in html
    assert "41.5" in html  # benchmark
    assert "tomlab: theory of mind in language models" in html
    assert 'id="TOC"' in html or "<nav" in html
    assert "import" not in re.sub(r"<[^>]+>", "", html).split("Setup", 1)[1][:2000]  # echo: false

    pdf = (out / "index.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index.pdf"]


@pytest.mark.slow
def test_render_builtin_failing_chunk_leaves_nothing(tmp_path: Path) -> None:
    results = fabricate_results(tmp_path / "results", sites=("attn_out",), with_bench=False)
    (results / "setup.json").unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(report_render_qmd.ReportRenderError, match=r"index\.qmd:\d+ \(chunk 'setup'\).*FileNotFoundError"):
        report_render_engine.render_report(REPORT_SRC, results, out / "index.html", out / "index.pdf", engine="builtin")
    assert list(out.iterdir()) == []


def test_commentary_explains_joint_success_without_protagonist(strong: Path) -> None:
    assert "exclusive-or" not in report_probing.commentary_probing(layout_manifest(strong), "attn_out")
    path = strong / "probing" / "forward_belief" / "attn_out" / "heads.parquet"
    heads = pd.read_parquet(path)
    protagonist = heads["target"] == "protagonist"
    heads.loc[protagonist, "val_acc"] = 0.5
    heads.loc[protagonist, "selectivity"] = heads.loc[protagonist, "val_acc"] - heads.loc[protagonist, "control_acc"]
    heads.to_parquet(path, index=False)
    text = report_probing.commentary_probing(layout_manifest(strong), "attn_out")
    assert "exclusive-or" in text
    assert "clearly above its chance level of 0.25" in text


# ------------------------------------------------------------------ text from data is shown as text


def test_to_markdown_shows_text_from_data_as_text_in_html() -> None:
    md = report_common.to_markdown(pd.DataFrame({"text": list(shown.HOSTILE), "n": range(len(shown.HOSTILE))}))
    html = shown.HtmlReader(shown.pandoc(md, "html5"))
    assert html.live() == []
    assert {tag for tag, _ in html.tags} <= {"table", "colgroup", "col", "thead", "tbody", "tr", "th", "td"}
    assert all(set(attrs) <= {"style"} for _, attrs in html.tags)
    assert [shown.visible(t) for t in html.texts["td"][::2]] == [shown.visible(s) for s in shown.HOSTILE]
    assert html.texts["td"][1::2] == [str(i) for i in range(len(shown.HOSTILE))]  # numbers as they were


def test_to_markdown_headers_are_text_too() -> None:
    df = pd.DataFrame([[1, 2]], columns=["<script>alert(1)</script>", "**bold** model: $x$"])
    html = shown.HtmlReader(shown.pandoc(report_common.to_markdown(df), "html5"))
    assert html.live() == []
    assert html.texts["th"] == ["<script>alert(1)</script>", "**bold** model: $x$"]


def test_md_text_and_md_code_show_text_from_data_as_text_in_html() -> None:
    md = "\n\n".join(f"{report_common.md_text(s)}\n\nas code: {report_common.md_code(s)}" for s in shown.HOSTILE)
    html = shown.HtmlReader(shown.pandoc("**ours** " + md, "html5"))
    assert html.live() == []
    assert {tag for tag, _ in html.tags} <= {"p", "code", "strong"}
    assert [tag for tag, _ in html.tags].count("strong") == 1  # our own markup still renders
    paragraphs = [shown.visible(t) for t in html.texts["p"]]
    expected = [x for s in shown.HOSTILE for x in (shown.visible(s), "as code: " + shown.visible(s))]
    assert paragraphs == ["ours " + expected[0], *expected[1:]]
    assert html.texts["code"] == [shown.visible(s) for s in shown.HOSTILE]
    assert report_common.md_code("") == ""
    assert report_common.md_code("a ``b`") == "``` a ``b` ```"


def test_text_from_data_is_text_in_the_pdf(tmp_path: Path) -> None:
    """The same markdown through pandoc's typst writer and the report's typst filters: it compiles, and
    typst shows the characters, with no heading, list, link, emphasis or math made from them."""
    import typst

    project = report_render_engine._load_quarto_yml(REPORT_SRC)
    typst_opts = report_render_engine._format_options(project, {}, "typst")
    filters = report_render_engine._filter_args(typst_opts, REPORT_SRC, "typst")
    assert filters, "the report's typst format names its Lua filters"
    table = report_common.to_markdown(pd.DataFrame({"text": list(shown.HOSTILE)}))
    prose = "\n\n".join(f"{report_common.md_text(s)}\n\nas code: {report_common.md_code(s)}" for s in shown.HOSTILE)
    typ = tmp_path / "t.typ"
    typ.write_text(shown.pandoc(table + "\n\n" + prose, "typst", *filters), encoding="utf-8")
    typst.compile(str(typ), output=str(tmp_path / "t.pdf"), root=str(tmp_path), font_paths=[], ignore_system_fonts=True)
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")
    for markup in ("heading", "list", "enum", "terms", "link", "strong", "emph", "math.equation", "footnote", "strike"):
        assert shown.typst_query(typ, markup) == [], markup
    (found,) = shown.typst_query(typ, "table")
    cells = [shown.typst_text(c) for c in found["children"] if c.get("func") in ("cell", "header")]
    assert cells == ["text", *(shown.typst_shown(s) for s in shown.HOSTILE)]
    paragraphs = [shown.typst_text(p["body"]) for p in shown.typst_query(typ, "par")]
    assert paragraphs == [x for s in shown.HOSTILE for x in (shown.typst_shown(s), "as code: " + shown.visible(s))]


@pytest.mark.slow
def test_rendered_report_shows_text_from_data_as_text(tmp_path: Path) -> None:
    """The report's own chunks (the stress examples table, the free-text answers with each model's name)
    rendered by the built-in engine from results whose stories, questions, replies and model names hold
    markup: the HTML has no live element or handler and shows the text; the PDF's typst source shows it too."""
    import os
    import shutil

    results = tmp_path / "results"
    results.mkdir()
    story = "- <img src=x onerror=alert(1)> [link](javascript:alert(2))"
    sentence = "= <script>alert(3)</script> $x$ `y`{=html} @ref #set"
    question = "Does **Ada** think <b onmouseover=alert(4)>the</b> jar is full?"
    correct = "Ada believes <!-- x --> & <i>it</i> ^[is] full."
    completion = "</code></pre><script>alert(5)</script>\n```\n<img src=y onerror=alert(6)>"
    model = "m<svg onload=alert(7)>_1"
    (results / "setup.json").write_text(json.dumps({"sites": []}), encoding="utf-8")
    pd.DataFrame([{"perturbation": "decoy_told", "story": story, "field": "story", "before": sentence,
                   "after": "plain after", "applied": 3, "skipped": 1}]).to_parquet(results / "examples.parquet")
    pd.DataFrame([{"story_id": 0, "task": "forward_belief", "condition": "false_belief", "direction": "none",
                   "alpha": 0.0, "site": "", "prompt": f"Story: s.\nQuestion: {question}\nAnswer:",
                   "completion": completion, "correct": correct, "wrong": "w"}]).to_parquet(results / "free.parquet")
    manifest = {"setup": str(results / "setup.json"), "stress_examples": str(results / "examples.parquet"),
                "models": {name: {"free_text": str(results / "free.parquet")} for name in (model, "plain")}}
    (results / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    work = tmp_path / "report"
    shutil.copytree(REPORT_SRC, work, ignore=report_render_engine._COPY_IGNORE)
    (work / "index.qmd").write_text("\n\n".join([
        "---\ntitle: Escaping\n---",
        shown.section_chunk("index.qmd", "setup"),
        "```{python}\n#| include: false\nfrom tomlab.report import steering as S\n"
        "from tomlab.report import stress as ST\nSTRESS = STEERING = True\n```",
        shown.section_chunk("_stress.qmd", "tbl-stress-examples"),
        shown.section_chunk("_steering.qmd", "steering-free-text"),
    ]) + "\n", encoding="utf-8")
    env = {**os.environ, "TOMLAB_RESULTS": str(results), "TOMLAB_MANIFEST": str(results / "manifest.json"),
           "MPLBACKEND": "agg"}
    html_path, pdf_path = report_render_engine._render_builtin(work, env, timeout=300)

    html = shown.HtmlReader(html_path.read_text(encoding="utf-8"))
    assert html.live() == []
    seen = shown.visible(" ".join(html.visible))
    for text in (story, sentence, question, correct, model):
        assert shown.visible(text) in seen, text
    assert completion in html.texts["code"]  # the reply, verbatim in its code block

    assert pdf_path.read_bytes().startswith(b"%PDF")
    typ = work / "index.typ"
    headings = [shown.typst_text(h["body"]) for h in shown.typst_query(typ, "heading")]
    assert headings == ["Contents"]  # the outline's title, none made from data
    for markup in ("list", "enum", "terms", "link", "math.equation", "footnote"):
        assert shown.typst_query(typ, markup) == [], markup
    (table,) = shown.typst_query(typ, "table")
    cells = [shown.typst_text(c) for c in table["children"] if c.get("func") == "cell"]
    assert shown.typst_shown(story) in cells and shown.typst_shown(sentence) in cells
    prose = " ".join(shown.typst_text(p["body"]) for p in shown.typst_query(typ, "par"))
    for text in (question, correct, model):
        assert shown.typst_shown(text) in prose, text
    assert completion in [r["text"] for r in shown.typst_query(typ, "raw")]
