"""Protocol cards: for each experiment, every point where this run differs from the original, one row each.

A card is built from the run's resolved config (``setup.json``'s ``config``) and model summary, and from
what the library does (stated here, beside the code that does it).  Columns: ``aspect``, ``original``
(what the released code or paper does), ``this run``, and ``status``: ``same``, ``differs`` or
``addition`` (something the original does not have, reported beside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from tomlab.bigtom.protocol import protocol_parser, uses_chat_template

CARD_COLUMNS: tuple[str, ...] = ("aspect", "original", "this run", "status")

PAPER_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
"""The model of the released BigToM scripts."""


def _status(same: bool | None) -> str:
    """A card row's status: ``addition`` (None), ``same`` or ``differs``."""
    return "addition" if same is None else ("same" if same else "differs")


def _row(aspect: str, original: str, this_run: str, same: bool | None) -> dict[str, str]:
    return {"aspect": aspect, "original": original, "this run": this_run, "status": _status(same)}


def _card(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CARD_COLUMNS))


def _cfg(setup: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    node: Any = setup.get("config") or {}
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def _model_rows(setup: Mapping[str, Any]) -> list[dict[str, str]]:
    model = setup.get("model") or {}
    name = str(model.get("name") or _cfg(setup, "model", "name", default="n/a"))
    dtype = str(model.get("dtype") or _cfg(setup, "model", "dtype", default="n/a"))
    precision = str(_cfg(setup, "model", "matmul_precision", default="highest"))
    pinned = _cfg(setup, "model", "revision")
    revision = model.get("revision") if "revision" in model else pinned  # None: not a hub model
    return [
        _row("model", PAPER_MODEL, name, name == PAPER_MODEL),
        _row("precision", "float32 (the release loads the model without a dtype)", dtype, dtype == "float32"),
        _row("float32 matrix products (model.matmul_precision)", "full float32 (torch's default)",
             {"high": "TF32 on CUDA (about 3 decimal digits per product)"}.get(precision, "full float32"),
             precision != "high"),
        _row("model revision (model.revision)", "the hub's snapshot of the day (no revision given)",
             f"{revision}{' (pinned)' if pinned else ' (resolved; not pinned)'}" if revision
             else "none (not a hub model)", None),
    ]


def _memory_text(setup: Mapping[str, Any]) -> str:
    """The run's memory plan as :class:`tomlab.backends.memory.MemoryPlan` describes it, and its key."""
    from tomlab.backends.memory import MemoryPlan

    spec = _cfg(setup, "model", default={}) or {}
    plan = MemoryPlan.from_spec(spec)
    key = "model.memory_budget_gb" if plan.budget_bytes is not None else "model.memory_share"
    return f"{plan.describe()} ({key})"


def _data_row(setup: Mapping[str, Any]) -> dict[str, str]:
    data = setup.get("data") or {}
    source = str(data.get("source") or _cfg(setup, "stories", "source", default="n/a"))
    if source == "bigtom":
        return _row("stories", "BigToM, 200 stories (the release's bigtom.csv)",
                    f"BigToM file {data.get('raw_file', 'n/a')}, {data.get('n_stories', 'n/a')} stories", True)
    return _row("stories", "BigToM, 200 stories (the release's bigtom.csv)",
                f"tomlab's generated BigToM-format stories ({data.get('n_stories', 'n/a')})", False)


def _eval_split_row(setup: Mapping[str, Any]) -> dict[str, str]:
    fraction = _cfg(setup, "split", "eval_fraction", default=0.5)
    return _row("story split", "stories 0-99 evaluated and steered, 100-199 probed",
                f"first {fraction:.0%} of the stories evaluated, the rest probed", fraction == 0.5)


def _spec_name(spec: Any, setup: Mapping[str, Any]) -> str:
    """A model spec's name: a served model's ``model`` at its ``base_url``; the run's own model (a null
    spec, or one equal to ``model``) by its panel name; another panel model by the name it is given as;
    a local model's ``name``."""
    if isinstance(spec, Mapping) and spec.get("base_url"):
        return f"{spec.get('model', 'default')} (served at {spec['base_url']})"
    if isinstance(spec, str):  # a panel model, by name
        return spec
    own = (setup.get("config") or {}).get("model")
    if setup.get("panel_name") and (spec is None or spec == own):
        return str(setup["panel_name"])
    if isinstance(spec, Mapping) and spec.get("name"):
        return str(spec["name"])
    return str(_cfg(setup, "model", "name", default="n/a"))


def _wide_heads_rows(setup: Mapping[str, Any], name: str = "") -> list[dict[str, str]]:
    """What attn_out's heads are where n_heads x head_dim is not the hidden size (Gemma 3)."""
    model = setup.get("model") or {}
    n_heads, head_dim, hidden = model.get("n_heads"), model.get("head_dim"), model.get("hidden_size")
    if not (n_heads and head_dim and hidden) or n_heads * head_dim == hidden:
        return []
    return [_row(f"attn_out heads{f' ({name})' if name else ''}", "o_proj's output cut into n_heads equal slices",
                 f"{n_heads} slices of {hidden // n_heads} of the {hidden}-wide output (the heads themselves are "
                 f"{n_heads} x {head_dim} wide, as head_z stores them)", True)]


def probing_card(setup: Mapping[str, Any], panel: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Protocol card of belief probing (Zhu, Zhang & Wang 2024; released code RepBelief). ``panel``: every
    model's setup by name, for the rows that differ per model (attn_out's heads where they are wider)."""
    wide = ([r for name, s in panel.items() for r in _wide_heads_rows(s, name)] if panel and len(panel) > 1
            else _wide_heads_rows(setup))
    statements = _cfg(setup, "probing", "statements", default="original")
    mode = _cfg(setup, "split", "mode", default="by_sample")
    val = _cfg(setup, "split", "val_fraction", default=0.2)
    seed = _cfg(setup, "split", "seed", default=0)
    c_bin = _cfg(setup, "probing", "C_binary", default=10.0)
    c_joint = _cfg(setup, "probing", "C_joint", default=1.0)
    max_iter = _cfg(setup, "probing", "max_iter", default=1000)
    sites = list(_cfg(setup, "activations", "sites", default=[]) or [])
    tasks = list(_cfg(setup, "probing", "tasks", default=[]) or [])
    split_text = ("by sample: scikit-learn train_test_split over the release's sample order"
                  if mode == "by_sample" else "by story: every sample of a story on one side (no leak)")
    joint_text = (f"multinomial, C={c_joint}, fitted to convergence (at most {max_iter} steps); "
                  "the cap's effect is measured in the probing benchmark")
    return _card([
        *_model_rows(setup),
        _data_row(setup),
        _eval_split_row(setup),
        _row("tasks probed", "forward belief, forward action, backward belief (init 0)", ", ".join(tasks),
             set(tasks) == {"forward_belief", "forward_action", "backward_belief"}),
        _row("statements", "the release's: believer words dropped, then str.capitalize(); actions in the imperative",
             "the release's" if statements == "original" else "the answers verbatim (tomlab)",
             statements == "original"),
        _row("activation site", "attention output after o_proj, last token (attn_out)",
             "attn_out" if "attn_out" in sites else "not captured", "attn_out" in sites),
        *([_row("other capture sites", "none", ", ".join(x for x in sites if x != "attn_out"), None)]
          if any(x != "attn_out" for x in sites) else []),
        *wide,
        _row("stored activation precision", "float32", str(_cfg(setup, "activations", "dtype", default="float32")),
             _cfg(setup, "activations", "dtype", default="float32") == "float32"),
        _row("extraction", "one prompt at a time", "length-sorted batches with left padding and an attention mask",
             False),
        _row("train / validation split", "by sample, test_size 0.2, random_state 0",
             f"{split_text}; {val:.0%} validation, seed {seed}", mode == "by_sample" and val == 0.2 and seed == 0),
        _row("binary probes", "L2 logistic regression, C=10, scikit-learn lbfgs (tol 1e-4, at most 1000 iterations)",
             f"L2 logistic regression, C={c_bin}, tomlab's batched Newton solver to tol 1e-8 (at most {max_iter} "
             "steps); agreement with scikit-learn in the probing benchmark", False),
        _row("joint probe", "multinomial, C=1, lbfgs stopped at scikit-learn's default 100 iterations",
             joint_text, False),
        _row("controls", "none", "shuffled-label control probes, lexical baseline, whole-layer probes", None),
    ])


def steering_card(setup: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol card of the BigToM evaluation and inference-time intervention (the release's scripts)."""
    def ev(*keys: str, default: Any = None) -> Any:
        return _cfg(setup, "evaluation", *keys, default=default)

    def st(*keys: str, default: Any = None) -> Any:
        return _cfg(setup, "steering", *keys, default=default)

    protocol = ev("protocol", default="original")
    chat = ev("chat_template")
    chat_used = uses_chat_template(protocol, chat)
    parser = ev("parser") or protocol_parser(protocol)
    max_stories = ev("max_stories")
    modes = list(ev("modes", default=[]) or [])
    directions = list(st("directions", default=[]) or [])
    site = st("site", default="attn_out")
    sites = list(_cfg(setup, "activations", "sites", default=["attn_out"]) or [])
    return _card([
        *_model_rows(setup),
        _data_row(setup),
        _eval_split_row(setup),
        _row("stories evaluated", "100 (stories 0-99)", "all" if max_stories is None else f"the first {max_stories}",
             max_stories is None),
        _row("prompt", "the release's instruction, blank line, Story / Question / options, 'Answer:'",
             "the release's" if protocol == "original" else "tomlab's one-line instruction asking for a letter",
             protocol == "original"),
        _row("chat template", "none (plain text)", "the model's chat template" if chat_used else "none (plain text)",
             not chat_used),
        _row("option order", "random.seed(0) per condition run, one shuffle per story in file order",
             "the release's" if protocol == "original" else "a hash of (seed, story, task, condition)",
             protocol == "original" and ev("seed", default=0) == 0),
        _row("decoding", "greedy, at most 20 new tokens", f"greedy, at most {ev('max_new_tokens', default=20)} new tokens",
             ev("max_new_tokens", default=20) == 20),
        _row("answer parser (headline)", "the release's: text after the last 'Answer: ', first two characters, then text",
             "the release's" if parser == "original" else "tomlab's lenient parser", parser == "original"),
        _row("second parser", "none", "the other parser's accuracy and invalid rate, reported beside", None),
        _row("conditions", "true belief and false belief", "those two, plus true and false control", None),
        _row("scoring modes", "generation", ", ".join(modes), None if "log-likelihood" in modes else True),
        _row("heads and strength", "K=16 heads, alpha=20 (-20 for the oracle direction)",
             f"K={st('top_k', default=16)}, alpha={st('alpha', default=20)} (signed by the direction kind)",
             st("top_k", default=16) == 16 and float(st("alpha", default=20)) == 20.0),
        _row("directions", "protagonist (+20) and oracle (-20) probe weights, the joint probe's o0p1 row; a random "
             "control only in the paper (the released random branch cannot run)",
             ", ".join(directions), set(directions) >= {"+protagonist", "-oracle", "+tpfo"}),
        _row("task pairs steered", "forward belief with all three directions; forward-belief o0p1 on the other two tasks",
             "every direction on every task, and every forward-belief direction on the other tasks", None),
        _row("ties in the head ranking", "numpy's default argsort order (unstable)",
             "higher validation accuracy first, ties to the lower layer, then the lower head", False),
        _row("intervention site", "slice of the attention output after o_proj, last position, every step",
             f"{site} for the sweep, mechanism and free-text views", site == "attn_out"),
        *([_row("other intervention sites", "none", f"the tables also steer at {', '.join(extra)}", None)]
          if (extra := [x for x in sites if x != "attn_out"]) else []),
        _row("batching", "one prompt at a time; a [PAD] token added to the vocabulary",
             f"left-padded batches of at most {_cfg(setup, 'evaluation', 'batch_size', default=8)} prompts, fewer where "
             "their rows (a shared-prefix pass: prompts x interventions) would pass the memory plan: each row's KV "
             "cache, one layer's activations and its kept logits within " + _memory_text(setup)
             + "; the end-of-sequence token pads", False),
        _row("steered evaluation (steering.shared_prefix)", "each prompt run whole under each intervention",
             "each prompt run once up to its last token, every intervention branched from that KV cache in one "
             "batch (the same answers up to floating-point rounding: results/bench/steering.json)"
             if st("shared_prefix", default=True) else "each prompt run whole under each intervention",
             not st("shared_prefix", default=True)),
    ])


TEAM_CARD_COLUMNS: tuple[str, ...] = ("aspect", "paper", "released code", "this run", "status")
"""The team card's columns: the paper and its released code (multi_LLM_comm) disagree in places, so both
are shown; ``status`` compares this run with the paper where the paper says, else with the code."""

_UNSTATED = "not stated"


def _team_row(aspect: str, paper: str, released: str, this_run: str, same: bool | None) -> dict[str, str]:
    return {"aspect": aspect, "paper": paper, "released code": released, "this run": this_run,
            "status": _status(same)}


def _prompt_rows(released: bool) -> list[dict[str, str]]:
    """The card's rows on what the LLM agents read (``team.prompts``): the release's strings, or tomlab's text."""
    mine = "tomlab's own wording (team.prompts: tomlab)"
    return [
        _team_row("initial prompt", "the game, the map, the tools, the reply format",
                  "system 'You are playing a text game with the user.', then a fixed background prompt (with or "
                  "without communication) for the default map and tools; its format shows curly quotes around the "
                  "message, which its own parser does not read",
                  "the release's system message and with-communication background prompt, byte for byte"
                  if released else mine + ", with the released reply format in straight quotes", released),
        _team_row("map in the prompts", "rooms 0, 3, 5, 6, 8", "the background prompt links room 3 to room 8; the "
                  "initial belief says room 3 connects only to room 0 and room 6 only to rooms 0 and 8",
                  "the release's words kept (inconsistency noted); the game plays the true map (3-8 and 5-6 linked)"
                  if released else "the true map", None),
        _team_row("observation and result text", _UNSTATED, "'Your observation is: Round: N. Total team score: S. "
                  "Results: ... Room contents: ... Communication messages sent by your teammates: Player alpha: "
                  "\"...\". ...', with its quirks ('current current location', \"None\" before a first reply, \"\" "
                  "after a reply without one, an empty list before or after the comma, the wrong-colour sequence "
                  "printed raw as its colour enumeration)", "the release's sentences byte for byte" if released else mine,
                  released),
        _team_row("agent ids in the text", _UNSTATED, "alpha, bravo, charlie", "alpha, bravo, charlie (the configured "
                  "names in lower case)" if released else "the configured names (Alpha, Bravo, Charlie)", released),
        _team_row("first round", _UNSTATED, "without a belief state every agent is first stepped to the start room "
                  "(round 0's 'You moved to Room X'), after the teammates before it have acted; with one, the initial "
                  "belief", "as the released code" if released else "a round-1 observation", released),
        _team_row("belief state", _UNSTATED, "the initial belief, then each round the observation with an update "
                  "request; the reply, with 'Given the above belief state, what is your next action?', replaces it",
                  "as the released code" if released else "tomlab's belief prompt (at most five lines)", released),
        _team_row("what the release's state shows that this game cannot", _UNSTATED, "agents listed in the order "
                  "they entered a room; every room holds a bomb at the start; colours red, green, blue only",
                  "entry order tracked (the start order is the configured one); a start room with no bomb (another "
                  "map) writes 'Bomb None' in the initial belief; another colour is numbered by its place in "
                  "team.colours; an exploding wrong cutter (team.wrong_cutter: explode) is reported with the "
                  "wrong-colour sentence" if released else "n/a", None),
    ]


def team_card(setup: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol card of the team game (Li et al., EMNLP 2023; released code multi_LLM_comm, read at
    commit d49c6bd, never copied): paper, released code and this run, point by point. The paper column
    holds what this project's specification quotes from the paper (rules, numbers); "not stated" where
    it says nothing we could check."""
    team = _cfg(setup, "team", default={}) or {}
    llm = team.get("llm", {}) if isinstance(team, Mapping) else {}
    mappo = team.get("mappo", {}) if isinstance(team, Mapping) else {}
    paper = team.get("rules", "paper") == "paper"
    rounds = team.get("max_rounds", "n/a")
    deadlock, stall = team.get("deadlock_rounds"), team.get("stall_rounds")
    parser = llm.get("parser") or ("original" if paper else "lenient")
    released = paper and team.get("prompts", "released") == "released"
    history = llm.get("history_rounds")
    history = ("all" if released else 2) if history is None else history
    ends = [f"all bombs defused, {rounds} rounds"]
    if deadlock:
        ends.append(f"or a deadlock ({deadlock} rounds in a row of every agent repeating its action with no change; "
                    f"recorded at {rounds} rounds with its frozen score)")
    if stall:
        ends.append(f"or {stall} rounds without change")
    rows = [
        _team_row("model", "GPT-4 and ChatGPT", "gpt-4-turbo-preview (its default)", _spec_name(team.get("model"), setup),
                  False),
        _team_row("rules variant", "the paper's game", "the paper's game", team.get("rules", "paper"), paper),
        _team_row("bomb phases", "1 to 3 phases, one colour each", "colours drawn without repeats within a bomb",
                  "colours without repeats" if paper else "colours may repeat within a bomb", paper),
        _team_row("start", _UNSTATED, "all three agents in one room", "all in one random room" if paper
                  else "each agent in its own random room", paper),
        _team_row("observation", "round, team score, the last action's result, own room's contents, teammates' "
                  "positions, teammates' messages", "the same without teammates' positions (the line is commented out)",
                  ("the released text, without teammates' positions (the ToM ground truth does not assume them)"
                   if released else "as the paper") if paper else "also the legal actions, the phases of an inspected "
                  "bomb and witnessed teammate actions", paper and not released),
        *_prompt_rows(released),
        _team_row("when an agent observes", _UNSTATED, "the observation is the reply to its own action, so what "
                  "teammates did after it is seen only after its next action",
                  "as the released code" if released else "at the start of its turn, before it acts", released),
        _team_row("a cut's result", _UNSTATED, "a correct partial cut and a refused wrong colour show the remaining "
                  "sequence", "as the released code" if paper else "the number of phases left; nothing on a refusal",
                  paper),
        _team_row("moving to one's own room", _UNSTATED, "valid, changes nothing",
                  "valid, changes nothing" if paper else "invalid", paper),
        _team_row("reading a reply", _UNSTATED, "'inspect' anywhere, then 'move to room N', then 'apply'/'defuse' "
                  "with red, blue, green in that order; message in straight double quotes",
                  "the released order" if parser == "original" else "tomlab's lenient parser (earliest action named)",
                  parser == "original"),
        _team_row("acting order", _UNSTATED, "Alpha, Bravo, Charlie every round", "the configured order every round",
                  True),
        _team_row("history in the prompt", _UNSTATED, "the whole conversation; with a belief state, each new belief "
                  "replaces the observation in a conversation that keeps every belief and action",
                  ("the whole conversation, as released" if history == "all" else f"the last {history} rounds of the "
                   "released conversation (team.llm.history_rounds)") if released else
                  ("the whole episode" if history == "all" else f"the last {history} rounds")
                  + " (no belief state); with a belief state, only the latest belief", released and history == "all"),
        _team_row("episode end", "all bombs defused, 30 rounds, or a deadlock", "all bombs defused or 30 rounds",
                  ", ".join(ends), bool(deadlock) and rounds == 30 and not stall),
        _team_row("ToM questions", "introspection, first and second order", "after every move named (refused or "
                  "not): the named room's contents; after a cut or an inspection where a bomb is: whether the bomb "
                  "changed, its sequence (and a question after a cut with no bomb, which tomlab does not ask)",
                  ("the released occasions, wordings (the observation, then the question, as a temporary message) "
                   "and teammate draw; a defusing cut's 'phase defused' question is scored as bomb_change"
                   if released else "the released occasions and topics in tomlab's wording" if paper
                   else "a bomb's sequence after every valid action") + ("" if llm.get("tom", True) else " (switched off)"),
                  paper),
        _team_row("ToM ground truth", _UNSTATED, "a rough label for some questions, none for most",
                  "computed from the episode's log: an agent knows what it did, was told in reply, read in a message "
                  "or was shown in an observation" + ("" if paper else ", and what happened in its room while it was "
                  "there"), None),
        _team_row("chat template", "chat API", "chat API", "the model's chat template" if llm.get("chat_template", True)
                  else "none", bool(llm.get("chat_template", True))),
        _team_row("MAPPO", "45M steps; +1 right cut, -1 wrong cut", "not released",
                  f"{mappo.get('timesteps', 'n/a'):,} steps; one team reward (shaping + score gain), random acting "
                  "order in training and evaluation" if paper and isinstance(mappo.get("timesteps"), int) else f"{mappo.get('timesteps', 'n/a')} "
                  "steps; per-agent shaping", False),
        _team_row("planner", "CBS (6.0 rounds)", "not released", "exact breadth-first search over the joint state", None),
        _team_row("baselines", "random, CBS planner, MAPPO", "none", ", ".join(team.get("agent_types", [])), None),
    ]
    return pd.DataFrame(rows, columns=list(TEAM_CARD_COLUMNS))


def debate_card(setup: Mapping[str, Any]) -> pd.DataFrame:
    """Protocol card of the multi-agent debate (Liang et al.).  The original's code is GPL-3.0 and was
    not read: the "original" column states what its released data files show, or that it cannot be
    known from them."""
    db = _cfg(setup, "debate", default={}) or {}
    arith = db.get("arithmetic", {}) or {}
    trans = db.get("translation", {}) or {}
    src, tgt = trans.get("source_language", "n/a"), trans.get("target_language", "n/a")
    model = _spec_name((db.get("models") or {}).get("default"), setup)
    released = dict((trans.get("released") or {}) if isinstance(trans, Mapping) else {})
    temperature = db.get("temperature", "n/a")
    unknown = "cannot be known from the released data"
    return _card([
        _row("model", "gpt-3.5-turbo (every released debate record)", model, model == "gpt-3.5-turbo"),
        _row("temperature", "0 (the released records)", str(temperature), temperature == 0),
        _row("arithmetic data", "CIAR: 50 questions, each with its right and intuitive (wrong) answers",
             f"file {arith['file']}" if arith.get("file") else f"{arith.get('n', 'n/a')} generated instances of "
             "counter-intuitive problem families", bool(arith.get("file"))),
        _row("translation data", "Common MT lexical set, 200 sentences",
             f"file {trans['file']}" if trans.get("file") else "tomlab's 8 built-in examples", bool(trans.get("file"))),
        _row("language pair", "Chinese to English", f"{src} to {tgt}", (src, tgt) == ("Chinese", "English")),
        _row("roles", "affirmative and negative debaters, a moderator, a judge",
             f"{db.get('n_debaters', 'n/a')} debaters and a judge that also decides when to stop", False),
        _row("rounds", "1 to 4 moderator turns in the records; the limit " + unknown,
             f"at most {db.get('rounds', 'n/a')}", False),
        _row("tit for tat", unknown, str(db.get("tit_for_tat", "n/a")), False),
        _row("prompts", "not read (GPL code)", "tomlab's own, written from the paper's description", False),
        _row("arithmetic scoring", unknown,
             "value after the last 'Answer:', right at the reply's own precision; intuitive answers counted", False),
        _row("translation scoring", unknown, "BLEU, chrF and a contrastive score; COMET when installed", False),
        _row("the paper's released outputs (debate.translation.released)",
             "six systems' translations and 200 MAD debate records, released with the data",
             f"rescored from {released['dir']}: the subsection 'The paper's own outputs, rescored' and its verdict "
             "come from those files, every other debate number from this run" if released.get("dir")
             else "not rescored (set debate.translation.released.dir to a checkout's Common MT lexical folder)",
             bool(released.get("dir"))),
        _row("baselines", "CoT, self-consistency, self-reflection (the paper)",
             ", ".join(db.get("methods", [])), None),
    ])
