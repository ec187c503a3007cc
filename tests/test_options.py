"""Each option of rnnlab's own classes is declared once, with its rule, in the signature that takes it
(rnnlab.options); these tests keep it so as the code grows."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Annotated

import pytest
import yaml

import rnnlab
from conftest import CONF
from rnnlab.errors import ConfigError
from rnnlab.library_rules import LIBRARY_RULES
from rnnlab.options import POSITIVE_INT, UnreadableRule, checked, located, rules_of

# Options that are config nodes built by the module itself (plain-data specs, each checked as its own node:
# model, optimizer, module.scheduler), and classes whose options are another library's (LIBRARY_RULES).
SPECS = {"core", "optimizer", "scheduler"}
HYDRA_BUILT = {"rnnlab.ensemble.EnsembleReport"}  # built by Hydra itself: checks by hand, named hydra.callbacks...


def rnnlab_callables():
    for info in pkgutil.walk_packages(rnnlab.__path__, "rnnlab."):
        if info.name.startswith("rnnlab.cli"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isclass(obj):
                yield f"{info.name}.{name}", obj
                for method_name, method in vars(obj).items():
                    if inspect.isfunction(method) and method_name != "__init__":
                        yield f"{info.name}.{name}.{method_name}", method
            elif inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj


def test_every_declared_rule_is_checked_when_called_from_python():
    """A signature with rules but no @checked would let Python callers past what a config may not pass."""
    unchecked = []
    for name, obj in rnnlab_callables():
        fn = obj.__dict__.get("__init__") if inspect.isclass(obj) else obj
        if fn is None or name in HYDRA_BUILT:
            continue
        if rules_of(obj) and not hasattr(fn, "cross_checks"):
            unchecked.append(name)
    assert not unchecked, f"declared rules without @checked: {unchecked}"


def config_targets():
    for path in sorted(CONF.rglob("*.yaml")):
        def walk(node):
            if isinstance(node, dict):
                if str(node.get("_target_", "")).startswith("rnnlab."):
                    yield node
                for value in node.values():
                    yield from walk(value)
            elif isinstance(node, list):
                for value in node:
                    yield from walk(value)
        for node in walk(yaml.safe_load(path.read_text()) or {}):
            yield path.relative_to(CONF), node


def test_every_option_of_rnnlabs_classes_in_the_configs_has_a_rule():
    missing = []
    for path, node in config_targets():
        target = node["_target_"]
        if target in LIBRARY_RULES:
            continue
        obj = located(target)
        assert obj is not None, f"{path}: {target} cannot be imported"
        rules = rules_of(obj)
        missing += [f"{path}: {target}.{key}" for key in node
                    if not key.startswith("_") and key not in SPECS and key not in rules]
    assert not missing, f"options without a declared rule: {missing}"


def test_a_rule_that_cannot_be_read_is_an_error_not_a_silent_pass(tmp_path, monkeypatch):
    module = tmp_path / "unreadable_rule.py"
    module.write_text("from __future__ import annotations\nfrom typing import Annotated\n"
                      "def f(x: Annotated[int, NOT_DEFINED] = 1):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = importlib.import_module("unreadable_rule").f
    with pytest.raises(UnreadableRule, match="f: the annotation .*NOT_DEFINED.* cannot be evaluated"):
        rules_of(f)


def test_checked_keeps_the_signature_and_names_options_bare_from_python():
    @checked()
    def f(a: Annotated[int, POSITIVE_INT] = 1, **kwargs):
        return a

    assert str(inspect.signature(f)) == str(inspect.signature(f.__wrapped__))
    assert inspect.getfullargspec(f).args == ["a"]  # what Lightning reads to drop unknown checkpoint settings
    with pytest.raises(ConfigError, match=r"^a=0 is invalid: must be a positive integer$"):
        f(0)
