"""``validation_rules``: the registered rules ``ingest clean`` applies, and the engine that applies
them. Public surface (what other stages may import):

* ``register_rule``, ``get_rule``, ``list_rules``, ``Action``, ``RuleParams``, ``Repair``: the registry;
* ``RuleSet``: a rule set (defaults merged with a TOML file), ``apply_rules`` -> ``RuleOutcome``;
* ``near_duplicate_flags``: the perceptual-hash comparison, for the ingest report;
* ``join_suspects``, ``suspect_rules``: feeding a ``train audit`` folder to rule ``label.suspect``.
"""

from pawpipe.validation_rules.engine import RuleOutcome, apply_rules
from pawpipe.validation_rules.perceptual import near_duplicate_flags
from pawpipe.validation_rules.registry import Action, Repair, RuleParams, get_rule, list_rules, register_rule
from pawpipe.validation_rules.ruleset import RuleSet
from pawpipe.validation_rules.suspect import join_suspects, suspect_rules

__all__ = [
    "Action",
    "Repair",
    "RuleOutcome",
    "RuleParams",
    "RuleSet",
    "apply_rules",
    "get_rule",
    "join_suspects",
    "list_rules",
    "near_duplicate_flags",
    "register_rule",
    "suspect_rules",
]
