"""YAML for untrusted input: bounded size, bounded nesting, no aliases, no tags.

``yaml.safe_load`` refuses code-carrying tags but still expands aliases: a 525-byte
"billion laughs" document (nine levels of ``&a [*b, *b, ...]``) becomes a graph that
``json.dumps`` or a recursive walk expands into gigabytes, and a few thousand nested
``[`` make the composer recurse until ``RecursionError``. :func:`load_untrusted` is
``safe_load`` with three checks made on the parser's events, before any Python object is
built (with libyaml, a C pass over the event stream, then libyaml's safe loader; without it,
a ``SafeLoader`` that checks while composing):

- the text is at most ``max_bytes`` long (UTF-8);
- no anchor (``&name``) and no alias (``*name``) appears — configuration files have no
  use for them and they are the only way a small document can describe a large object;
- no node is nested deeper than ``max_depth`` and the document has at most ``max_nodes``
  nodes;
- no mapping states a key twice (PyYAML keeps the last silently: a profile edited at its
  first ``memory_bw`` would be read at its second).

Every refusal is a :class:`UnsafeYamlError` (a :class:`~hwmodels.errors.TierwiseError`,
``bad_input`` → exit 2 / HTTP 422, code ``invalid_yaml``) that names the field and the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from hwmodels.errors import TierwiseError, Worded

#: Defaults: generous for any real profile or model config (the largest shipped file is a
#: few kB, nested 4 deep), small enough that parsing takes milliseconds.
MAX_BYTES = 128_000
MAX_DEPTH = 32
MAX_NODES = 10_000


class UnsafeYamlError(TierwiseError, ValueError):
    """YAML text refused before it was turned into Python objects."""

    code = "invalid_yaml"

    def __init__(self, message: str, *, field: str, reason: str | None = None, repeated: str | None = None) -> None:
        super().__init__(message, field=field)
        #: what is wrong, without the field name (for callers with their own error shape)
        self.reason = reason or message
        #: for a key given twice: ``'id' twice (again at line 3, column 1)`` (None otherwise)
        self.repeated = repeated


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping states one key twice."""

    def __init__(self, key: Any, node: Any, key_node: Any) -> None:
        super().__init__("while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                         key_node.start_mark)
        self.key = key


class _UniqueKeys:
    """Constructor mix-in: a mapping that states a key twice is refused (the C loaders share the
    Python constructor, so this holds with and without libyaml)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            # the keys written in this mapping, before a merge (``<<``) brings others in: an explicit
            # key overrides a merged one, as YAML says
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
                try:
                    fresh = key not in seen
                except TypeError:  # an unhashable key: the base constructor names it
                    continue
                if not fresh:
                    raise DuplicateKeyError(key, node, key_node)
                seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[misc]


class UniqueKeySafeLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """``yaml.safe_load``'s loader (libyaml's when installed) that refuses duplicate keys: for
    files this installation writes itself (plans, sensitivity tables), which are not size-bounded."""


def _where(exc: DuplicateKeyError) -> str:
    mark = exc.problem_mark
    return f" (again at line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def repeated_key(exc: DuplicateKeyError) -> str:
    """``'x' twice (again at line N, column M)``, worded for an error's "got"."""
    return Worded(f"{exc.key!r} twice{_where(exc)}")


def duplicate_key(exc: DuplicateKeyError) -> str:
    """``key 'x' is given twice (again at line N, column M); give each key once``."""
    return f"key {exc.key!r} is given twice{_where(exc)}; give each key once"


class _BoundedLoader(_UniqueKeys, yaml.SafeLoader):
    """``SafeLoader`` that refuses anchors and aliases and bounds depth and node count."""

    def __init__(self, stream: str, *, field: str, max_depth: int, max_nodes: int) -> None:
        super().__init__(stream)
        self._field = field
        self._max_depth = max_depth
        self._max_nodes = max_nodes
        self._depth = 0
        self._nodes = 0

    def _refuse(self, what: str, event: Any) -> UnsafeYamlError:
        mark = getattr(event, "start_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return UnsafeYamlError(f"{{@{self._field}}}: {what}{where}", field=self._field, reason=f"{what}{where}")

    def _flow_start(self, fetch: Any) -> None:
        # The scanner reads a whole run of "[[[[..." before the composer sees the first node:
        # bound flow nesting here so that a long run is refused at its first excess bracket.
        fetch()
        if self.flow_level > self._max_depth:
            raise self._refuse(f"YAML nested deeper than {self._max_depth} levels", self.tokens[-1])

    def fetch_flow_sequence_start(self) -> None:
        self._flow_start(super().fetch_flow_sequence_start)

    def fetch_flow_mapping_start(self) -> None:
        self._flow_start(super().fetch_flow_mapping_start)

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D401 - PyYAML hook
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise self._refuse(f"YAML aliases (*{event.anchor}) are not accepted; write the value out", event)
        if getattr(event, "anchor", None) is not None:
            raise self._refuse(f"YAML anchors (&{event.anchor}) are not accepted; write the value out", event)
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise self._refuse(f"more than {self._max_nodes} YAML nodes", event)
        self._depth += 1
        if self._depth > self._max_depth:
            raise self._refuse(f"YAML nested deeper than {self._max_depth} levels", event)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _checked_events(text: str, field: str, max_depth: int, max_nodes: int) -> None:
    """The checks of :class:`_BoundedLoader` on libyaml's event stream (C speed, lazy: a
    refused document is read only up to its first excess)."""
    depth = nodes = 0
    where = _BoundedLoader._refuse
    probe = _Refuser(field)
    for event in yaml.parse(text, Loader=yaml.CSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise where(probe, f"YAML aliases (*{event.anchor}) are not accepted; write the value out", event)
        if isinstance(event, yaml.NodeEvent):
            if event.anchor is not None:
                raise where(probe, f"YAML anchors (&{event.anchor}) are not accepted; write the value out", event)
            nodes += 1
            if nodes > max_nodes:
                raise where(probe, f"more than {max_nodes} YAML nodes", event)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise where(probe, f"YAML nested deeper than {max_depth} levels", event)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Refuser:
    def __init__(self, field: str) -> None:
        self._field = field


def _load(text: str, field: str, max_depth: int, max_nodes: int) -> Any:
    if getattr(yaml, "__with_libyaml__", False):
        _checked_events(text, field, max_depth, max_nodes)
        return yaml.load(text, Loader=UniqueKeySafeLoader)  # noqa: S506 - the safe C loader, after the checks
    loader = _BoundedLoader(text, field=field, max_depth=max_depth, max_nodes=max_nodes)  # checks characters
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_untrusted(text: str, *, field: str = "yaml", max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                   max_nodes: int = MAX_NODES) -> Any:
    """Parse one YAML document from an untrusted source (see the module docstring).

    Raises :class:`UnsafeYamlError` for a refused document and for any YAML syntax error
    (with its line), never ``RecursionError`` or a huge allocation.
    """
    if not isinstance(text, str):
        raise UnsafeYamlError(f"{{@{field}}} must be YAML text; got {type(text).__name__}", field=field)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise UnsafeYamlError(f"{{@{field}}} is {size} bytes of YAML; at most {max_bytes} are accepted", field=field,
                              reason=f"{size} bytes of YAML; at most {max_bytes} are accepted")
    try:
        return _load(text, field, max_depth, max_nodes)
    except UnsafeYamlError:
        raise
    except DuplicateKeyError as e:
        why = duplicate_key(e)
        raise UnsafeYamlError(f"{{@{field}}}: {why}", field=field, reason=why, repeated=repeated_key(e)) from None
    except yaml.constructor.ConstructorError as e:
        why = f"YAML tags such as !!python/... are not accepted ({e.problem})"
        raise UnsafeYamlError(f"{{@{field}}}: {why}", field=field, reason=why) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        why = f"not valid YAML ({getattr(e, 'problem', None) or e}{where})"
        raise UnsafeYamlError(f"{{@{field}}}: {why}", field=field, reason=why) from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of more than 4300 digits
        why = f"a value cannot be read ({e})"
        raise UnsafeYamlError(f"{{@{field}}}: {why}", field=field, reason=why) from None
    except RecursionError:  # pragma: no cover - the depth bound stops composing long before this
        raise UnsafeYamlError(f"{{@{field}}}: YAML nested too deeply", field=field, reason="YAML nested too deeply") from None



__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "DuplicateKeyError", "UniqueKeySafeLoader", "UnsafeYamlError",
           "duplicate_key", "load_untrusted"]
