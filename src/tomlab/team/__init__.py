"""The bomb-defusal team game of Li et al. (EMNLP 2023): its rules, interface, agents and tables.

The agent types are defined here so that the workflow and the command line can read them without
loading a model backend.
"""

from tomlab.schema import vocabulary

#: Every kind of team, in the order tables and figures show them.
AGENT_TYPES: tuple[str, ...] = vocabulary("agent_type")
#: The teams played by a language model (with and without a belief state).
LLM_TYPES: tuple[str, ...] = ("llm", "llm_belief")
