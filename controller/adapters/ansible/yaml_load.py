"""YAML as Ansible loads it (YAML 1.1, anchors, ``<<`` merge keys), keeping the line of
every mapping key so errors can name it. ``!vault`` values are refused by name (they need
Ansible and its vault password: ``--via-ansible``); ``!unsafe`` text is kept as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.adapters.ansible.model import error


class Unsafe(str):
    """Text marked ``!unsafe``: Ansible never templates it, so braces in it are literal."""


class EncryptedValue(str):
    """A vault ciphertext Ansible printed without decrypting it (no password given)."""


class LineDict(dict[Any, Any]):
    """A mapping that remembers the line of each key (1-based) and its own."""

    line: int = 0
    lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # resolves << merge keys into node.value
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError as exc:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark) from exc
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1
    return data


def _vault(loader: _Loader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, "a !vault encrypted value needs Ansible to decrypt it", node.start_mark)


def _unsafe(loader: _Loader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    return loader.construct_object(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("!vault", _vault)
_Loader.add_constructor("!unsafe", _unsafe)


def load_yaml(text: str, path: Path) -> Any:
    """The document in ``text``; a syntax error or vault value is an ``InvalidData`` naming
    ``path:line``."""
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        raise error(f"{path}:1", "vault-encrypted file: edgefleet's own reader cannot decrypt "
                                 "it; import with --via-ansible (and your vault password)")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  (our SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        context = getattr(exc, "context_mark", None)
        if context is not None and (mark is None or mark.line >= len(text.splitlines())):
            mark = context  # an error at the end of the file: where the open construct began
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = " (import with --via-ansible)" if "vault" in str(problem) else ""
        raise error(f"{path}:{line}", f"not valid YAML: {problem}{hint}") from exc
