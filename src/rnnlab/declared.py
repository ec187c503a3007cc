"""The keys the config files declare, so that a key nothing declares (`+tune.lr_finder=true`, a typo in an
experiment file) is refused instead of silently ignored (check_declared_keys, below; rnnlab.schema runs it).

A node's keys are declared by the config that fills it: the entry config (conf/train.yaml, conf/eval.yaml)
and, for a node a config group fills, the union over every option file of that group, placed at its
package (the group's path, a `# @package` line, or `group@package` in a defaults list). A `_global_`
option file (task, experiment, debug, ...) declares only its group's own node (task: {name, monitor});
what else it sets are overrides of nodes declared elsewhere. Only the groups the entry config reaches
through defaults lists count (eval.yaml has no data group: its `data: {}` takes any key). `_target_`
nodes are not described here: their keys are their target's parameters (rnnlab.schema.check_node).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlab.errors import ConfigError
from rnnlab.options import shown

try:  # the package's configs (an installed wheel holds a copy of conf/)
    from rnnlab.configs import CONF_DIR as CONF
except ImportError:  # the source tree's conf/ (train.py's config_path)
    CONF = Path(__file__).resolve().parents[2] / "conf"
_PACKAGE_LINE = re.compile(r"^#\s*@package\s+(\S+)")
SKIPPED = ("hydra",)  # Hydra's own config: not the task's


class Decl(dict):
    """A declared plain node: key -> Decl (a plain node), or a kind: "object" (a `_target_` node), "null",
    "value". Empty: any key (eval.yaml's `data: {}`)."""

    def is_map(self) -> bool:
        """A map of named objects (callbacks, logger, evaluation): every declared entry is a `_target_` node or null."""
        return bool(self) and all(kind in ("object", "null") for kind in self.values())

    def add(self, content: dict) -> None:
        """Merge one file's content; a `_target_` node stays an object whatever else sets keys in it."""
        for key, value in content.items():
            key, old = str(key), self.get(str(key))
            if isinstance(value, dict) and "_target_" not in value:
                if old != "object":
                    if not isinstance(old, Decl):
                        old = self[key] = Decl()
                    old.add(value)
            else:
                kind = "object" if isinstance(value, dict) else "null" if value is None else "value"
                if old is None or old == "null" or kind == "object":
                    self[key] = kind

    def place(self, package: str, content: dict) -> None:
        """Add `content` at the dotted `package` ("" for the root)."""
        parent, _, last = package.rpartition(".")
        if last:
            self.at(parent).add({last: content})
        else:
            self.add(content)

    def at(self, package: str) -> "Decl":
        """The node at the dotted `package`, made if new (inside a `_target_` node: a detached one, since
        an object's keys are its target's parameters)."""
        node = self
        for part in filter(None, package.split(".")):
            child = node.get(part)
            if child == "object":
                return Decl()
            if not isinstance(child, Decl):
                child = node[part] = Decl()
            node = child
        return node


def _sources() -> tuple[tuple[str, str], ...]:
    """Hydra's config search path of this run ((schema, path), file and pkg sources), else conf/."""
    try:
        from hydra.core.hydra_config import HydraConfig

        sources = HydraConfig.get().runtime.config_sources
        found = tuple((s.schema, s.path) for s in sources if s.schema in ("file", "pkg"))
        if found:
            return found
    except Exception:  # composed outside a Hydra run (tests, notebooks)
        pass
    return (("file", str(CONF)),)


def _roots(sources: tuple[tuple[str, str], ...]) -> list[Any]:
    roots = []
    for schema, path in sources:
        try:
            root = Path(path) if schema == "file" else resources.files(path)
        except (ModuleNotFoundError, TypeError):
            continue
        if root.is_dir():
            roots.append(root)
    return roots


def _under(root: Any, path: str) -> Any:
    """`root / "a/b/c"` part by part (a package's resources take one name at a time)."""
    for part in path.split("/"):
        root = root / part
    return root


def _find(roots: list[Any], name: str) -> list[Any]:
    """The files `name` (a/b/c, without .yaml) in every search-path root."""
    return [node for root in roots if (node := _under(root, f"{name}.yaml")).is_file()]


def _group_options(roots: list[Any], group: str) -> list[str]:
    names = []
    for root in roots:
        node = _under(root, group)
        if node.is_dir():
            names += [f"{group}/{p.name[:-5]}" for p in node.iterdir() if p.name.endswith(".yaml")]
    return sorted(set(names))


def _load(file: Any) -> tuple[str | None, dict]:
    """A config file's `# @package` line (None without one) and its content as plain data."""
    text = file.read_text(encoding="utf-8")
    package = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if m := _PACKAGE_LINE.match(line):
            package = m.group(1)
    content = OmegaConf.to_container(OmegaConf.create(text), resolve=False) if text.strip() else {}
    return package, content if isinstance(content, dict) else {}


def _absolute(package: str, group: str) -> str:
    """A package as a dotted path from the root ("" for _global_)."""
    if package == "_global_":
        return ""
    if package.startswith("_global_."):
        return package[len("_global_."):]
    return group.replace("/", ".") if package == "_group_" else package


def _entries(defaults: Iterable, here: str) -> Iterable[tuple[str, bool, str | None]]:
    """(name, is_group, `@package` or None) of a defaults list; names are absolute (no leading /),
    relative ones resolved against `here`, the including file's directory."""
    for entry in defaults or []:
        if isinstance(entry, str):
            key, is_group = entry, False
        elif isinstance(entry, dict) and len(entry) == 1:
            key, is_group = str(next(iter(entry))), True
        else:
            continue
        key = key.split()[-1]  # "override /model", "optional logger"
        if key == "_self_":
            continue
        name, _, package = key.partition("@")
        name = name[1:] if name.startswith("/") else f"{here}/{name}" if here else name
        yield name, is_group, package or None


@lru_cache(maxsize=None)
def _declared(sources: tuple[tuple[str, str], ...], entry: str, extra_groups: tuple[str, ...]) -> Decl:
    roots = _roots(sources)
    root = Decl()
    seen_files: set[tuple[str, str]] = set()
    seen_groups: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(entry, "")]  # (config name, package it is placed at, None: its own)

    def reach_group(group: str, package: str | None) -> None:
        if group.split("/")[0] in SKIPPED or (group, package) in seen_groups:
            return
        seen_groups.add((group, package))
        todo.extend((option, package) for option in _group_options(roots, group))

    def next_config() -> tuple[str, str | None] | None:
        """Breadth first from the entry config; then the groups the run chose that it does not reach."""
        if not todo:
            for group in extra_groups:
                reach_group(group, None)
        return todo.pop(0) if todo else None

    while (item := next_config()) is not None:
        name, placed = item
        if (name, str(placed)) in seen_files or name.split("/")[0] in SKIPPED:
            continue
        seen_files.add((name, str(placed)))
        group = name.rpartition("/")[0]
        for file in _find(roots, name):
            header, content = _load(file)
            own = _absolute(header, group) if header else group.replace("/", ".")
            package = own if placed is None else placed
            for dep, is_group, at in _entries(content.pop("defaults", None), group):
                dep_package = None if at is None else (
                    package if at == "_here_" else _absolute(at, dep) if at.startswith("_global_") else
                    ".".join(filter(None, (package, at))))
                if is_group:
                    reach_group(dep, dep_package)
                else:
                    todo.append((dep, dep_package))
            content = {k: v for k, v in content.items() if str(k) not in SKIPPED}
            if package == "" and name != entry:
                # A _global_ option declares its group's own node only; the rest overrides other nodes.
                own_node = content
                for part in group.split("/"):
                    own_node = own_node.get(part) if isinstance(own_node, dict) else None
                if isinstance(own_node, dict):
                    root.place(group.replace("/", "."), own_node)
            else:
                root.place(package, content)
    return root


def declared(entry: str) -> Decl:
    """The keys declared for the run of entry config `entry` ("train", "eval"); cached per search path.
    Groups this run chose that the entry config does not reach (`+mygroup=x`) count too."""
    entry_name, extra = entry, ()
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        entry_name = hc.job.config_name or entry
        extra = tuple(sorted(g for g in hc.runtime.choices if g.split("/")[0] not in SKIPPED))
    except Exception:
        pass
    return _declared(_sources(), entry_name, extra)


def command_line_key(path: str) -> str:
    """The key as the command line gave it (`+tune.lr_finder`), else the dotted path."""
    try:
        from hydra.core.hydra_config import HydraConfig

        for override in HydraConfig.get().overrides.task:
            key = str(override).split("=", 1)[0]
            if key.lstrip("+~") == path:
                return key
    except Exception:
        pass
    return path


def check_declared_keys(cfg: DictConfig, entry: str) -> None:
    """Every key of a plain node is one the config files declare for it; a map of named
    objects (callbacks, logger, evaluation) takes any name whose value is a `_target_` node or null."""
    _check_keys(cfg, declared(entry), "")


def _check_keys(node: DictConfig, decl: Decl, prefix: str) -> None:
    if not decl:  # declared empty (eval.yaml's `data: {}`): any key
        return
    named_objects = decl.is_map()
    for key in node.keys():
        key, path = str(key), f"{prefix}{key}"
        if prefix == "" and key in SKIPPED:
            continue
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        if named_objects:
            if child is not None and not (isinstance(child, DictConfig) and "_target_" in child):
                plain = isinstance(child, (DictConfig, ListConfig))
                value = OmegaConf.to_container(child, resolve=True) if plain else child
                raise ConfigError(f"{path}={shown(value)} is invalid: {prefix[:-1]} holds named objects: give "
                                  f"{path} a node with a _target_, or null")
            continue
        if key not in decl:
            close = difflib.get_close_matches(key, list(decl), n=1)
            where = f"{prefix[:-1]} has" if prefix else "the config's top level has"
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{command_line_key(path)} is not an option: {where} {', '.join(decl)}{hint}")
        if isinstance(decl[key], Decl) and isinstance(child, DictConfig) and "_target_" not in child:
            _check_keys(child, decl[key], f"{path}.")
