"""Generates readable, typed Python classes from the TL schemas.

Run ``python -m mtproto.tl.generator`` after editing a file in ``mtproto/tl/schema/``; ``--check`` exits
non-zero when the committed code differs from what the schemas generate (CI runs the same comparison as a
test). Each schema becomes a package:

    mtproto/tl/<package>/types/__init__.py      constructors of the root namespace, one dataclass each
    mtproto/tl/<package>/types/<ns>.py          constructors of namespace <ns> (``help``, ``auth`` ...)
    mtproto/tl/<package>/functions/...          functions, the same way

Every abstract type ``T`` gets an alias ``TypeT`` (a union of its constructors) next to its constructors.
Generated modules import nothing but the runtime at run time (cross-namespace names are for the type checker
only), so they never import a client or a service, and import order never matters.
"""

from __future__ import annotations

import argparse
import builtins
import keyword
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mtproto.tl.parser import Combinator, Param, Schema, SchemaError, TLType, load_schema, parse_type

HERE = Path(__file__).parent
SCHEMA_DIR = HERE / "schema"


@dataclass(frozen=True)
class Target:
    schema: str  # file name in schema/
    package: str  # dotted package the code goes to
    #: Types this schema names but another one defines (secret.tl's fields of api.tl types): read by constructor
    #: id like any object, typed ``TLObject``, and allowed in required fields too.
    foreign: tuple[str, ...] = ()


TARGETS = (
    Target("mtproto.tl", "mtproto.tl.mt"),
    Target("api.tl", "mtproto.tl.api"),
    Target("internal.tl", "mtproto.tl.internal"),
    Target("secret.tl", "mtproto.tl.secret", foreign=("MessageEntity", "DocumentAttribute")),
)

#: Handled by the runtime by hand, never generated.
BUILTIN_CONSTRUCTORS = frozenset({"boolFalse", "boolTrue", "true"})

_PY_TYPES = {
    "int": "int",
    "long": "int",
    "double": "float",
    "string": "str",
    "bytes": "bytes",
    "int128": "bytes",
    "int256": "bytes",
    "Bool": "bool",
    "true": "bool",
}
_READERS = {
    "int": "r.read_int()",
    "long": "r.read_long()",
    "double": "r.read_double()",
    "string": "r.read_string()",
    "bytes": "r.read_bytes()",
    "int128": "r.read_int128()",
    "int256": "r.read_int256()",
    "Bool": "r.read_bool()",
}
_READER_FUNCS = {
    "int": ("r.read_int", 4),
    "long": ("r.read_long", 8),
    "double": ("r.read_double", 8),
    "string": ("r.read_string", 4),
    "bytes": ("r.read_bytes", 4),
    "int128": ("r.read_int128", 16),
    "int256": ("r.read_int256", 32),
    "Bool": ("r.read_bool", 4),
}
_WRITERS = {
    "int": "out += INT.pack({v})",
    "long": "out += LONG.pack({v})",
    "double": "out += DOUBLE.pack({v})",
    "string": "write_string(out, {v})",
    "bytes": "write_bytes(out, {v})",
    "int128": "write_int128(out, {v})",
    "int256": "write_int256(out, {v})",
    "Bool": "write_bool(out, {v})",
}


def class_name(c: Combinator) -> str:
    short = c.short_name
    return "".join(part[:1].upper() + part[1:] for part in short.split("_") if part)


def type_alias(type_name: str) -> str:
    """``TypeX`` for the abstract type X; a name that is a Python builtin (``TypeError``) gets a trailing ``_``."""
    short = type_name.rpartition(".")[2]
    alias = "Type" + "".join(part[:1].upper() + part[1:] for part in short.split("_") if part)
    return alias + "_" if hasattr(builtins, alias) else alias


def attr_name(param: Param) -> str:
    return param.name + "_" if keyword.iskeyword(param.name) else param.name


def param_type(param: Param) -> TLType:
    if param.type is None:
        raise SchemaError(f"{param.name} is a flags word, not a field")
    return param.type


def namespace_of(type_name: str) -> str:
    return type_name.rpartition(".")[0]


class _Module:
    """The source of one generated module, with the imports its annotations need."""

    def __init__(self, gen: _Generator, package: str, is_function: bool, namespace: str) -> None:
        self.gen = gen
        self.package = package
        self.is_function = is_function
        self.namespace = namespace
        self.type_only_imports: dict[str, set[str]] = defaultdict(set)  # module -> names
        self.module_imports: dict[str, str] = {}  # module -> local name, for names that clash
        # Which module each alias name comes from; this module's own aliases come first.
        self.names: dict[str, str] = {
            type_alias(t): self.module for t in gen.by_type if not is_function and namespace_of(t) == namespace
        }
        self.runtime_imports: set[str] = set()
        self.uses_typevar = False
        self.uses_local_error = False
        self.refs: dict[str, tuple[str, str, frozenset[int]]] = {}  # const -> (TL name, annotation, ids)

    @property
    def module(self) -> str:
        kind = "functions" if self.is_function else "types"
        return f"{self.package}.{kind}" + (f".{self.namespace}" if self.namespace else "")

    # -- annotations --------------------------------------------------------------------------------------

    def annotate(self, t: TLType, generic: str | None) -> str:
        if t.vector is not None:
            return f"list[{self.annotate(t.vector, generic)}]"
        if t.generic_query:
            self.runtime_imports.add("TLFunction")
            return f"TLFunction[{t.name}]"
        if t.name in _PY_TYPES:
            return _PY_TYPES[t.name]
        if t.name == generic:
            return t.name
        if t.name == "Object" or self.gen.outside_subset(t):
            self.runtime_imports.add("TLObject")
            return "TLObject"
        if t.bare:
            return self.reference_class(t.name)
        return self.reference_type(t.name)

    def reference_type(self, type_name: str) -> str:
        alias = type_alias(type_name)
        home = self.gen.types_module(namespace_of(type_name))
        if home == self.module:
            return alias
        owner = self.names.setdefault(alias, home)
        if owner != home:
            # Two namespaces name a type alike (UserFull and users.UserFull): the second is reached through
            # its module, imported under a name of its own.
            module_name = "_" + home.rsplit(".", 1)[1]
            self.module_imports[home] = module_name
            return f"{module_name}.{alias}"
        self.type_only_imports[home].add(alias)
        return alias

    def reference_class(self, name: str) -> str:
        """A bare use of a constructor: ``%Message`` (by type) or ``future_salt`` (by constructor name)."""
        c = self.gen.bare_constructor(name)
        home = self.gen.types_module(c.namespace)
        cls = class_name(c)
        if home != self.module:
            self.type_only_imports[home].add(cls)
        return cls

    def type_ref(self, tl_name: str, annotation: str, ids: frozenset[int], *, bare: bool = False) -> str:
        # Named after the full TL name (namespace included), so two types called Pnt in different
        # namespaces never share a constant.
        const = ("_BARE_" if bare else "_T_") + tl_name.replace(".", "_").upper()
        self.refs[const] = (tl_name, annotation, ids)
        self.runtime_imports.add("TypeRef")
        return const

    # -- reading and writing ------------------------------------------------------------------------------

    def read_expr(self, t: TLType, generic: str | None) -> str:
        if t.vector is not None:
            item, size = self.item_reader(t.vector, generic)
            method = "read_bare_vector" if t.bare else "read_vector"
            return f"r.{method}({item}, {size})" if size != 4 else f"r.{method}({item})"
        if t.name in _READERS:
            return _READERS[t.name]
        if t.generic_query:
            return "r.read_query()"
        if t.name == "Object" or self.gen.outside_subset(t):
            return "r.read_object()"
        if t.bare:
            c = self.gen.bare_constructor(t.name)
            ref = self.type_ref(c.name, self.reference_class(t.name), frozenset({c.id}), bare=True)
            return f"r.read_bare({ref})"
        ref = self.type_ref(t.name, self.reference_type(t.name), self.gen.constructor_ids(t.name))
        return f"r.read_boxed({ref})"

    def item_reader(self, t: TLType, generic: str | None) -> tuple[str, int]:
        if t.vector is None and t.name in _READER_FUNCS:
            return _READER_FUNCS[t.name]
        return f"lambda: {self.read_expr(t, generic)}", 4

    def write_stmts(self, t: TLType, value: str, indent: str) -> list[str]:
        if t.vector is not None:
            header = "INT.pack(len({v}))" if t.bare else "VECTOR_HEADER + INT.pack(len({v}))"
            self.runtime_imports.add("INT")
            if not t.bare:
                self.runtime_imports.add("VECTOR_HEADER")
            # One loop variable per field (``chats_item``), so two loops never share a variable of two types.
            item = value.removeprefix("self.") + "_item"
            lines = [indent + "out += " + header.format(v=value), f"{indent}for {item} in {value}:"]
            lines += self.write_stmts(t.vector, item, indent + "    ")
            return lines
        if t.name in _WRITERS:
            stmt = _WRITERS[t.name].format(v=value)
            for helper in ("write_string", "write_bytes", "write_int128", "write_int256", "write_bool"):
                if stmt.startswith(helper):
                    self.runtime_imports.add(helper)
            for struct_name in ("INT", "LONG", "DOUBLE"):
                if f"{struct_name}.pack" in stmt:
                    self.runtime_imports.add(struct_name)
            return [indent + stmt]
        if t.bare:
            return [f"{indent}{value}._write_bare(out)"]
        return [f"{indent}{value}._write(out)"]


class _Generator:
    def __init__(self, schema: Schema, package: str, source: str, foreign: tuple[str, ...] = ()) -> None:
        self.schema = schema
        self.package = package
        self.source = source
        self.foreign = frozenset(foreign)
        self.by_type: dict[str, list[Combinator]] = defaultdict(list)
        self.by_name: dict[str, Combinator] = {}
        for c in schema.constructors:
            self.by_type[c.result].append(c)
            self.by_name[c.name] = c

    def types_module(self, namespace: str) -> str:
        return f"{self.package}.types" + (f".{namespace}" if namespace else "")

    def outside_subset(self, t: TLType) -> bool:
        """A boxed type the schema names but does not define: api.tl is a subset of the published schema, and
        an optional field may have a type the lab leaves out. Such a field is a plain ``TLObject`` the lab never
        fills; reading one fails with the unknown constructor's id. A required field must be in the subset."""
        return (
            t.vector is None and not t.bare and not t.generic_query and t.name not in _PY_TYPES
            and t.name != "Object" and t.name not in self.by_type
        )

    def constructor_ids(self, type_name: str) -> frozenset[int]:
        cons = self.by_type.get(type_name)
        if not cons:
            raise KeyError(f"type {type_name} has no constructor in {self.source}")
        return frozenset(c.id for c in cons)

    def bare_constructor(self, name: str) -> Combinator:
        if name in self.by_name:
            return self.by_name[name]
        cons = self.by_type.get(name, [])
        if len(cons) != 1:
            raise KeyError(f"bare %{name} needs exactly one constructor, found {len(cons)}")
        return cons[0]

    def generate(self) -> dict[str, str]:
        """Return {relative path: source} for every module of this package."""
        groups: dict[tuple[bool, str], list[Combinator]] = defaultdict(list)
        for c in self.schema.combinators:
            if c.name in BUILTIN_CONSTRUCTORS:
                continue
            groups[(c.is_function, c.namespace)].append(c)
        files: dict[str, str] = {}
        root = self.package.replace(".", "/")
        for kind in (False, True):
            namespaces = sorted(ns for (is_fn, ns) in groups if is_fn == kind)
            if "" not in namespaces:
                namespaces.insert(0, "")
            for ns in namespaces:
                sub = "functions" if kind else "types"
                path = f"{root}/{sub}/{ns}.py" if ns else f"{root}/{sub}/__init__.py"
                children = [n for n in namespaces if n] if not ns else []
                files[path] = self.module_source(kind, ns, groups.get((kind, ns), []), children)
        files[f"{root}/__init__.py"] = self.package_source()
        return files

    def package_source(self) -> str:
        layer = f" (layer {self.schema.layer})" if self.schema.layer else ""
        return (
            banner(self.source)
            + f'"""Classes generated from {self.source}{layer}: ``types`` and ``functions``."""\n\n'
            + f"from {self.package} import functions, types\n\n"
            + '__all__ = ["functions", "types"]\n'
        )

    def module_source(
        self, is_function: bool, ns: str, combinators: list[Combinator], children: list[str]
    ) -> str:
        mod = _Module(self, self.package, is_function, ns)
        body: list[str] = []
        for c in combinators:
            body += self.class_source(mod, c)
        aliases: list[str] = []
        if not is_function:
            results = sorted({c.result for c in combinators})
            for result in results:
                names = [class_name(c) for c in self.by_type[result] if c.name not in BUILTIN_CONSTRUCTORS]
                if names:
                    alias = f"{type_alias(result)}: TypeAlias = {' | '.join(names)}"
                    if len(alias) > 120:
                        alias = f"{type_alias(result)}: TypeAlias = (\n    " + "\n    | ".join(names) + "\n)"
                    aliases.append(alias)
        head: list[str] = []
        kind = "Functions (RPC queries)" if is_function else "Constructors"
        where = f"namespace ``{ns}``" if ns else "the root namespace"
        head.append(f'"""{kind} of {where} in {self.source}."""')
        head.append("")
        head.append("from __future__ import annotations")
        head.append("")
        if not combinators:
            # Only namespaces below this one (internal.tl has no root constructors): re-export them.
            # (secret.tl has no functions at all: an empty module, so ``functions`` exists in every package.)
            pkg = f"{self.package}.{'functions' if is_function else 'types'}"
            reexports = [*import_line(pkg, children), ""] if children else []
            lines = [banner(self.source).rstrip("\n"), *head, *reexports, "__all__ = ["]
            return "\n".join([*lines, *(f'    "{c}",' for c in sorted(children)), "]"]) + "\n"
        head.append("from dataclasses import dataclass")
        typing_names = ["ClassVar"]
        if aliases:
            typing_names.append("TypeAlias")
        if mod.type_only_imports or mod.module_imports:
            typing_names.append("TYPE_CHECKING")
        if mod.uses_typevar:
            typing_names.append("TypeVar")
        head += import_line("typing", typing_names)
        head.append("")
        runtime = {"Reader", "register", "TLFunction" if is_function else "TLObject"} | mod.runtime_imports
        if mod.uses_local_error:
            runtime.add("LocalProtocolError")
        first_party = {"mtproto.tl.runtime": runtime}
        if children:
            first_party[f"{self.package}.{'functions' if is_function else 'types'}"] = set(children)
        for module in sorted(first_party):
            head += import_line(module, first_party[module])
        if mod.type_only_imports or mod.module_imports:
            head.append("")
            head.append("if TYPE_CHECKING:")
            imports: list[tuple[str, list[str]]] = [
                (module, import_line(module, names, "    ")) for module, names in mod.type_only_imports.items()
            ]
            for module, local in mod.module_imports.items():
                package, _, leaf = module.rpartition(".")
                imports.append((package, [f"    from {package} import {leaf} as {local}"]))
            for _, lines in sorted(imports):
                head += lines
        if mod.uses_typevar:
            head.append("")
            head.append('X = TypeVar("X")')
        if mod.refs:
            head.append("")
        for const, (tl_name, annotation, ids) in sorted(mod.refs.items()):
            items = [f'"{tl_name}"', *(f"0x{i:08x}" for i in sorted(ids))]
            line = f"{const}: TypeRef[{annotation}] = TypeRef({', '.join(items)})"
            if len(line) <= 120:
                head.append(line)
            else:
                head += [f"{const}: TypeRef[{annotation}] = TypeRef(", *(f"    {i}," for i in items), ")"]
        lines = [banner(self.source).rstrip("\n"), *head, "", ""]
        lines += body
        if aliases:
            lines += [*aliases, ""]
        names = [class_name(c) for c in combinators]
        if names:
            line = f"register({', '.join(names)})"
            lines += [line] if len(line) <= 120 else ["register(", *(f"    {n}," for n in names), ")"]
        exports = sorted(names + [a.split(":")[0] for a in aliases] + children)
        lines.append("")
        lines.append("__all__ = [")
        lines += [f'    "{n}",' for n in exports]
        lines.append("]")
        return "\n".join(lines) + "\n"

    def class_source(self, mod: _Module, c: Combinator) -> list[str]:
        name = class_name(c)
        generic = c.generic
        if generic:
            mod.uses_typevar = True
        if c.is_function:
            result = self.result_annotation(mod, c)
            # Quoted: the result type may live in a module imported for the type checker only.
            base = f'TLFunction["{result}"]' if result != generic else f"TLFunction[{result}]"
        else:
            base = "TLObject"
        out = ["@dataclass(slots=True, kw_only=True)", f"class {name}({base}):"]
        out += docstring(c.line)
        out.append("")
        out.append(f"    CONSTRUCTOR_ID: ClassVar[int] = 0x{c.id:08x}")
        out.append(f'    TL_NAME: ClassVar[str] = "{c.name}"')
        fields = [p for p in c.params if not p.is_flags_word]
        required = [p for p in fields if p.flag_word is None]
        optional = [p for p in fields if p.flag_word is not None]
        for p in required:
            inner = param_type(p).vector or param_type(p)
            if self.outside_subset(inner) and inner.name not in self.foreign:
                raise SchemaError(f"{c.name}.{p.name} needs type {inner.name}, which {self.source} does not define")
        if fields:
            out.append("")
        for p in required:
            out.append(f"    {attr_name(p)}: {mod.annotate(param_type(p), generic)}")
        for p in optional:
            if p.is_flag_bit:
                out.append(f"    {attr_name(p)}: bool = False")
            else:
                out.append(f"    {attr_name(p)}: {mod.annotate(param_type(p), generic)} | None = None")
        out.append("")
        out += self.write_source(mod, c)
        out.append("")
        out += self.read_source(mod, c, name)
        if c.is_function:
            out.append("")
            out += self.result_source(mod, c)
        out += ["", ""]
        return out

    def write_source(self, mod: _Module, c: Combinator) -> list[str]:
        out = ["    def _write_bare(self, out: bytearray) -> None:"]
        body: list[str] = []
        # Fields that share one flag bit (config's flags.2) must be set together: the bit says all are there.
        shared: dict[tuple[str, int], list[Param]] = defaultdict(list)
        for p in c.params:
            if p.flag_word is not None:
                shared[(p.flag_word, p.flag_bit or 0)].append(p)
        for (word, bit), group in shared.items():
            if len(group) < 2:
                continue
            mod.uses_local_error = True
            names = ", ".join(q.name for q in group)
            body.append("        if not (")
            # "absent" is None for a value and False for a ``flags.N?true`` bit.
            absent = [
                f"(not self.{attr_name(q)})" if q.is_flag_bit else f"(self.{attr_name(q)} is None)" for q in group
            ]
            body.append("            " + "\n            == ".join(absent))
            body.append("        ):")
            body.append("            raise LocalProtocolError(")
            message = f"{c.name}: {names} share {word}.{bit}; set all or none"
            if len(message) > 96:  # split into adjacent literals to keep the generated line short
                cut = message.rindex(" ", 0, 96)
                body.append(f'                "{message[:cut]}"')
                message = message[cut:]
            body.append(f'                "{message}"')
            body.append("            )")
        for p in c.params:
            if p.is_flags_word:
                parts = []
                for q in c.params:
                    if q.flag_word != p.name:
                        continue
                    cond = f"self.{attr_name(q)}" if q.is_flag_bit else f"self.{attr_name(q)} is not None"
                    parts.append(f"({1 << (q.flag_bit or 0)} if {cond} else 0)")
                mod.runtime_imports.add("UINT")  # a flags word is an unsigned 32-bit ``#``
                if parts:
                    joined = f"        {p.name} = " + " | ".join(parts)
                    if len(joined) <= 120:
                        body.append(joined)
                    else:
                        body.append(f"        {p.name} = (")
                        body.append(f"            {parts[0]}")
                        body += [f"            | {part}" for part in parts[1:]]
                        body.append("        )")
                    body.append(f"        out += UINT.pack({p.name})")
                else:
                    body.append("        out += UINT.pack(0)")
                continue
            if p.is_flag_bit:
                continue
            value = f"self.{attr_name(p)}"
            if p.flag_word is not None:
                body.append(f"        if {value} is not None:")
                body += mod.write_stmts(param_type(p), value, "            ")
            else:
                body += mod.write_stmts(param_type(p), value, "        ")
        return out + (body or ["        pass"])

    def read_source(self, mod: _Module, c: Combinator, name: str) -> list[str]:
        ret = f"{name}[X]" if c.generic else name
        out = ["    @classmethod", f"    def _read_bare(cls, r: Reader) -> {ret}:"]
        fields = [p for p in c.params if not p.is_flags_word]
        if not fields:
            # A flags word with no conditional fields still takes its 4 bytes.
            out += ["        r.read_uint()" for _ in c.params]
            out.append("        return cls()")
            return out
        for p in c.params:
            if p.is_flags_word:
                out.append(f"        {p.name} = r.read_uint()")
                continue
            local = "_" + p.name
            if p.is_flag_bit:
                out.append(f"        {local} = ({p.flag_word} & {1 << (p.flag_bit or 0)}) != 0")
            elif p.flag_word is not None:
                expr = mod.read_expr(param_type(p), c.generic)
                cond = f"{p.flag_word} & {1 << (p.flag_bit or 0)}"
                line = f"        {local} = {expr} if {cond} else None"
                if len(line) <= 120:
                    out.append(line)
                else:
                    out += [f"        {local} = (", f"            {expr}", f"            if {cond}"]
                    out += ["            else None", "        )"]
            else:
                out.append(f"        {local} = {mod.read_expr(param_type(p), c.generic)}")
        args = ", ".join(f"{attr_name(p)}=_{p.name}" for p in fields)
        call = f"        return cls({args})"
        if len(call) <= 120:
            out.append(call)
        else:
            out.append("        return cls(")
            out += [f"            {attr_name(p)}=_{p.name}," for p in fields]
            out.append("        )")
        return out

    def result_annotation(self, mod: _Module, c: Combinator) -> str:
        return mod.annotate(self.parse_result(c.result), c.generic)

    def parse_result(self, text: str) -> TLType:
        t = parse_type(text)
        if t.vector is None and t.bare and t.name not in _PY_TYPES:
            t = TLType(t.name)  # a function's result type is always boxed
        return t

    def result_source(self, mod: _Module, c: Combinator) -> list[str]:
        result = self.result_annotation(mod, c)
        out = [f"    def read_result(self, r: Reader) -> {result}:"]
        if c.generic and c.result == c.generic:
            query = next(p for p in c.params if p.type is not None and p.type.generic_query)
            out.append(f"        return self.{attr_name(query)}.read_result(r)")
            return out
        expr = mod.read_expr(self.parse_result(c.result), c.generic)
        out.append(f"        return {expr}")
        return out


def _isort_key(name: str) -> tuple[int, str]:
    """ruff/isort's order-by-type: CONSTANTS, then Classes, then functions, each without regard to case."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name.lower()


def import_line(module: str, names: set[str] | list[str], indent: str = "") -> list[str]:
    ordered = sorted(set(names), key=_isort_key)
    line = f"{indent}from {module} import {', '.join(ordered)}"
    if len(line) <= 120:
        return [line]
    return [f"{indent}from {module} import (", *(f"{indent}    {n}," for n in ordered), f"{indent})"]


def docstring(line: str) -> list[str]:
    """The combinator's TL line as the class docstring, wrapped to the line length."""
    text = f"``{line}``"
    if len(text) + 10 <= 120:
        return [f'    """{text}"""']
    wrapped = textwrap.wrap(text, width=112, break_on_hyphens=False, break_long_words=False)
    return ['    """', *(f"    {w}" for w in wrapped), '    """']


def banner(source: str) -> str:
    return (
        f"# Generated by mtproto.tl.generator from mtproto/tl/schema/{source}. Do not edit by hand:\n"
        "# edit the schema and run `python -m mtproto.tl.generator`.\n"
    )


def generate_all(root: Path = HERE.parent.parent) -> dict[Path, str]:
    files: dict[Path, str] = {}
    for target in TARGETS:
        schema = load_schema(SCHEMA_DIR / target.schema)
        for rel, text in _Generator(schema, target.package, target.schema, target.foreign).generate().items():
            files[root / rel] = text
    return files


def stale_files(root: Path = HERE.parent.parent) -> list[Path]:
    """Generated files that differ from what the schemas produce now (or are missing)."""
    return [
        path for path, text in generate_all(root).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mtproto.tl.generator",
        description="Generate mtproto/tl/mt and mtproto/tl/api from the .tl schemas in mtproto/tl/schema.",
    )
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path}")
        return 1 if stale else 0
    for path, text in generate_all().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
