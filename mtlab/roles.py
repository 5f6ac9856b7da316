"""The role catalogue: which engineering roles own each mtlab component, and the labs each role does.

The catalogue is data, ``mtlab/roles.toml``, built from the seed documents (students' role maps of Telegram's
architecture). This module owns:

- loading it into frozen dataclasses (``load_catalogue``), rejecting a malformed file with the key that is wrong;
- checking it (``check_catalogue``): every role a component or lab names exists, every lab touches components
  that exist, ids are unique, and every component folder exists under the repo root unless the component is
  still ``planned``;
- checking the component READMEs against it (``check_readmes``): each README's ``## Roles`` section lists exactly
  the component's roles, one bullet per role in the form ``- `id` (Display name): responsibilities``, and the
  README has a ``## Lab hooks`` section;
- the ``mtlab roles`` command (``add_roles_command``): a table per component, or per role with ``--role``, or
  the same selection as JSON with ``--json``.

JSON shape (``schema`` 1)::

    {"schema": 1,
     "components": [{"id", "folder", "summary", "runs_on", "status", "issue", "seed_names",
                     "roles": [{"role", "responsibilities": [...]}]}],
     "roles": [{"id", "name", "summary", "seed_names", "components": [ids it owns],
                "labs": [{"id", "title", "components": [...], "status"}]}]}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Final

SCHEMA: Final = 1
COMPONENT_STATUSES: Final = ("planned", "built")
LAB_STATUSES: Final = ("planned", "ready")
ROLES_HEADING: Final = "## Roles"
HOOKS_HEADING: Final = "## Lab hooks"

_ID = re.compile(r"[a-z][a-z0-9_]*")
_LAB_ID = re.compile(r"[a-z][a-z0-9-]*")
# One README role bullet: - `sre` (Site reliability engineer): availability and latency SLOs; incident response
_ROLE_BULLET = re.compile(r"- `(?P<id>[^`]+)` \((?P<name>[^()]+)\)(?::.*)?")


class CatalogueError(ValueError):
    """The role catalogue is malformed or inconsistent; the message names every problem found."""


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    components: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    summary: str
    seed_names: tuple[str, ...]
    labs: tuple[Lab, ...]


@dataclass(frozen=True)
class Ownership:
    """One role's part in one component."""

    role: str
    responsibilities: tuple[str, ...]


@dataclass(frozen=True)
class Component:
    id: str
    folder: str
    summary: str
    runs_on: str
    status: str
    issue: int
    seed_names: tuple[str, ...]
    owners: tuple[Ownership, ...]

    @property
    def role_ids(self) -> tuple[str, ...]:
        return tuple(o.role for o in self.owners)


@dataclass(frozen=True)
class Catalogue:
    components: tuple[Component, ...]
    roles: tuple[Role, ...]

    def component(self, component_id: str) -> Component:
        for c in self.components:
            if c.id == component_id:
                return c
        raise KeyError(component_id)

    def role(self, role_id: str) -> Role:
        for r in self.roles:
            if r.id == role_id:
                return r
        raise KeyError(role_id)

    def components_of(self, role_id: str) -> tuple[Component, ...]:
        return tuple(c for c in self.components if role_id in c.role_ids)

    def labs_touching(self, component_id: str) -> tuple[Lab, ...]:
        return tuple(lab for r in self.roles for lab in r.labs if component_id in lab.components)


# ------------------------------------------------------------------------------------------------ loading


def _table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CatalogueError(f"{where}: expected a table, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _keys(table: Mapping[str, object], required: Iterable[str], where: str) -> None:
    required = tuple(required)
    missing = [k for k in required if k not in table]
    unknown = [k for k in table if k not in required]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise CatalogueError(f"{where}: {'; '.join(parts)}")


def _str(table: Mapping[str, object], key: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}.{key}: expected a non-empty string")
    return value


def _int(table: Mapping[str, object], key: str, where: str) -> int:
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise CatalogueError(f"{where}.{key}: expected an integer")
    return value


def _strs(value: object, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CatalogueError(f"{where}: expected a list of non-empty strings")
    if not value and not allow_empty:
        raise CatalogueError(f"{where}: expected at least one entry")
    return tuple(value)


def _component(cid: str, value: object) -> Component:
    where = f"components.{cid}"
    t = _table(value, where)
    _keys(t, ("folder", "summary", "runs_on", "status", "issue", "seed_names", "roles"), where)
    owners = tuple(
        Ownership(role, _strs(resp, f"{where}.roles.{role}"))
        for role, resp in _table(t["roles"], f"{where}.roles").items()
    )
    return Component(
        id=cid,
        folder=_str(t, "folder", where),
        summary=_str(t, "summary", where),
        runs_on=_str(t, "runs_on", where),
        status=_str(t, "status", where),
        issue=_int(t, "issue", where),
        seed_names=_strs(t["seed_names"], f"{where}.seed_names", allow_empty=True),
        owners=owners,
    )


def _lab(value: object, where: str) -> Lab:
    t = _table(value, where)
    _keys(t, ("id", "title", "components", "status"), where)
    return Lab(
        id=_str(t, "id", where),
        title=_str(t, "title", where),
        components=_strs(t["components"], f"{where}.components"),
        status=_str(t, "status", where),
    )


def _role(rid: str, value: object) -> Role:
    where = f"roles.{rid}"
    t = _table(value, where)
    _keys(t, ("name", "summary", "seed_names", "labs"), where)
    labs = t["labs"]
    if not isinstance(labs, list):
        raise CatalogueError(f"{where}.labs: expected an array of tables ([[{where}.labs]])")
    return Role(
        id=rid,
        name=_str(t, "name", where),
        summary=_str(t, "summary", where),
        seed_names=_strs(t["seed_names"], f"{where}.seed_names"),
        labs=tuple(_lab(lab, f"{where}.labs[{i}]") for i, lab in enumerate(labs)),
    )


def parse_catalogue(text: str) -> Catalogue:
    """Turn the TOML text into a ``Catalogue``; raises ``CatalogueError`` naming the first malformed key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"roles.toml is not valid TOML: {exc}") from None
    _keys(data, ("schema", "components", "roles"), "roles.toml")
    if data["schema"] != SCHEMA:
        raise CatalogueError(f"roles.toml: schema {data['schema']!r}, this mtlab reads schema {SCHEMA}")
    return Catalogue(
        components=tuple(_component(k, v) for k, v in _table(data["components"], "components").items()),
        roles=tuple(_role(k, v) for k, v in _table(data["roles"], "roles").items()),
    )


def find_repo_root() -> Path | None:
    """The source checkout this module runs from, or None when mtlab is installed without its repo."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "mtlab").is_dir() else None


def check_catalogue(catalogue: Catalogue, repo_root: Path | None = None) -> list[str]:
    """Every inconsistency in the catalogue, one sentence each; folders are checked only given a repo root."""
    problems: list[str] = []
    role_ids = [r.id for r in catalogue.roles]
    component_ids = [c.id for c in catalogue.components]
    for kind, ids in (("component", component_ids), ("role", role_ids)):
        for i in ids:
            if not _ID.fullmatch(i):
                problems.append(f"{kind} id {i!r} is not lower_snake_case")
    for c in catalogue.components:
        if c.status not in COMPONENT_STATUSES:
            problems.append(f"component {c.id}: status {c.status!r} is not one of {', '.join(COMPONENT_STATUSES)}")
        if not c.owners:
            problems.append(f"component {c.id}: no role owns it")
        for role in c.role_ids:
            if role not in role_ids:
                problems.append(f"component {c.id}: role {role!r} is not in [roles]")
        if repo_root is not None and not (repo_root / c.folder).is_dir() and c.status != "planned":
            problems.append(f"component {c.id}: folder {c.folder}/ does not exist and the component is not planned")
    lab_ids: set[str] = set()
    for r in catalogue.roles:
        if "(" in r.name or ")" in r.name:
            problems.append(f"role {r.id}: name {r.name!r} has parentheses, which the README format reserves")
        if not catalogue.components_of(r.id):
            problems.append(f"role {r.id}: owns no component")
        if len(r.labs) < 2:
            problems.append(f"role {r.id}: has {len(r.labs)} lab(s), every role needs at least two")
        for lab in r.labs:
            if not _LAB_ID.fullmatch(lab.id):
                problems.append(f"lab {lab.id!r} ({r.id}): id is not lower-kebab-case")
            if lab.id in lab_ids:
                problems.append(f"lab {lab.id!r} ({r.id}): id is used twice")
            lab_ids.add(lab.id)
            if lab.status not in LAB_STATUSES:
                problems.append(f"lab {lab.id} ({r.id}): status {lab.status!r} is not one of {', '.join(LAB_STATUSES)}")
            unknown = [c for c in lab.components if c not in component_ids]
            if unknown:
                problems.append(f"lab {lab.id} ({r.id}): unknown component(s) {', '.join(unknown)}")
            elif not any(r.id in catalogue.component(c).role_ids for c in lab.components):
                problems.append(f"lab {lab.id} ({r.id}): touches no component that {r.id} owns")
    return problems


def load_catalogue(path: Path | None = None, repo_root: Path | None = None) -> Catalogue:
    """Load and check the catalogue (the packaged ``roles.toml`` unless ``path``); raise if anything is wrong."""
    if path is None:
        text = resources.files("mtlab").joinpath("roles.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    catalogue = parse_catalogue(text)
    problems = check_catalogue(catalogue, repo_root)
    if problems:
        raise CatalogueError("role catalogue is inconsistent:\n  " + "\n  ".join(problems))
    return catalogue


# ------------------------------------------------------------------------------------------------ READMEs


def _section(lines: list[str], heading: str) -> list[str] | None:
    """The lines under the first ``## `` heading that starts with ``heading``, up to the next ``#``/``##``."""
    for i, line in enumerate(lines):
        if line.rstrip() == heading or line.startswith(heading + " "):
            body: list[str] = []
            for following in lines[i + 1 :]:
                if following.startswith(("# ", "## ")):
                    break
                body.append(following)
            return body
    return None


def readme_roles(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The (role id, display name) bullets of a README's ``## Roles`` section, and its malformed bullet lines."""
    section = _section(text.splitlines(), ROLES_HEADING)
    if section is None:
        return [], []
    found: list[tuple[str, str]] = []
    malformed: list[str] = []
    for line in section:
        if not line.startswith(("- ", "* ")):
            continue
        m = _ROLE_BULLET.fullmatch(line.rstrip())
        if m is None:
            malformed.append(line.rstrip())
        else:
            found.append((m["id"], m["name"].strip()))
    return found, malformed


def check_readme(catalogue: Catalogue, component: Component, text: str) -> list[str]:
    """How one README disagrees with the catalogue about ``component``; empty when it agrees."""
    where = f"{component.folder}/README.md"
    lines = text.splitlines()
    problems: list[str] = []
    if _section(lines, ROLES_HEADING) is None:
        return [f"{where}: no '{ROLES_HEADING}' section"]
    found, malformed = readme_roles(text)
    problems += [f"{where}: role bullet is not '- `id` (Display name): ...': {line!r}" for line in malformed]
    names = {r.id: r.name for r in catalogue.roles}
    seen: set[str] = set()
    for rid, name in found:
        if rid in seen:
            problems.append(f"{where}: role {rid} is listed twice")
        seen.add(rid)
        if rid not in component.role_ids:
            known = "" if rid in names else " (and it is not a catalogue role)"
            problems.append(f"{where}: lists role {rid}, which the catalogue does not give {component.id}{known}")
        elif name != names[rid]:
            problems.append(f"{where}: role {rid} is named {name!r}, the catalogue calls it {names[rid]!r}")
    for rid in component.role_ids:
        if rid not in seen:
            problems.append(f"{where}: does not list role {rid}, which owns {component.id} in the catalogue")
    if _section(lines, HOOKS_HEADING) is None:
        problems.append(f"{where}: no '{HOOKS_HEADING}' section (metrics, logs, knobs, failure modes)")
    return problems


def check_readmes(catalogue: Catalogue, repo_root: Path) -> list[str]:
    """Every component README under ``repo_root`` checked against the catalogue."""
    problems: list[str] = []
    for c in catalogue.components:
        path = repo_root / c.folder / "README.md"
        if not path.is_file():
            problems.append(f"{c.folder}/README.md: missing")
            continue
        problems += check_readme(catalogue, c, path.read_text(encoding="utf-8"))
    return problems


# ------------------------------------------------------------------------------------------- mtlab roles


def select(catalogue: Catalogue, component: str | None = None, role: str | None = None) -> Catalogue:
    """The part of the catalogue a ``--component`` / ``--role`` filter asks for.

    A component keeps its owners and every role with a lab that touches it, each with only those labs; a role
    keeps only the components it owns, with only its own responsibilities in each. Both: their intersection.
    """
    components = catalogue.components
    roles = catalogue.roles
    if component is not None:
        components = tuple(c for c in components if c.id == component)
        owners = {o.role for c in components for o in c.owners}
        roles = tuple(replace(r, labs=tuple(lab for lab in r.labs if component in lab.components)) for r in roles)
        roles = tuple(r for r in roles if r.id in owners or r.labs)
    if role is not None:
        components = tuple(
            replace(c, owners=tuple(o for o in c.owners if o.role == role)) for c in components if role in c.role_ids
        )
        roles = tuple(r for r in roles if r.id == role)
    return Catalogue(components=components, roles=roles)


def to_json(catalogue: Catalogue) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "components": [
            {
                "id": c.id,
                "folder": c.folder,
                "summary": c.summary,
                "runs_on": c.runs_on,
                "status": c.status,
                "issue": c.issue,
                "seed_names": list(c.seed_names),
                "roles": [{"role": o.role, "responsibilities": list(o.responsibilities)} for o in c.owners],
            }
            for c in catalogue.components
        ],
        "roles": [
            {
                "id": r.id,
                "name": r.name,
                "summary": r.summary,
                "seed_names": list(r.seed_names),
                "components": [c.id for c in catalogue.components_of(r.id)],
                "labs": [
                    {"id": lab.id, "title": lab.title, "components": list(lab.components), "status": lab.status}
                    for lab in r.labs
                ],
            }
            for r in catalogue.roles
        ],
    }


_WIDTH: Final = 110


def _rows(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    """A plain-text table whose last column wraps to ``_WIDTH``."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lead = indent + "".join(f"{{:<{w + 2}}}" for w in widths)
    room = max(_WIDTH - len(lead.format(*[""] * len(widths))), 30)
    pad = " " * len(lead.format(*[""] * len(widths)))
    out = []
    for row in [header, *rows]:
        wrapped = textwrap.wrap(row[-1], room, break_on_hyphens=False) or [""]
        out.append(lead.format(*row[:-1]) + wrapped[0])
        out += [pad + more for more in wrapped[1:]]
    return out


def render_components(catalogue: Catalogue) -> list[str]:
    out: list[str] = []
    for c in catalogue.components:
        out.append(f"{c.id}: {c.summary}")
        out.append(f"  folder {c.folder}/ · runs on {c.runs_on} · {c.status} (issue #{c.issue})")
        out += _rows(("ROLE", "RESPONSIBILITIES"), [(o.role, "; ".join(o.responsibilities)) for o in c.owners])
        labs = catalogue.labs_touching(c.id)
        if labs:
            out += textwrap.wrap(
                "labs: " + ", ".join(lab.id for lab in labs),
                _WIDTH,
                initial_indent="  ",
                subsequent_indent="        ",
                break_on_hyphens=False,
            )
        out.append("")
    return out


def render_roles(catalogue: Catalogue) -> list[str]:
    out: list[str] = []
    for r in catalogue.roles:
        out.append(f"{r.id}: {r.name}. {r.summary}")
        owned = [
            (c.id, "; ".join(o.responsibilities))
            for c in catalogue.components_of(r.id)
            for o in c.owners
            if o.role == r.id
        ]
        if owned:
            out += _rows(("COMPONENT", "RESPONSIBILITIES"), owned)
        if r.labs:
            out += _rows(("LAB", "STATUS", "WHAT YOU DO"), [(lab.id, lab.status, lab.title) for lab in r.labs])
        out.append("")
    return out


def render_role_index(catalogue: Catalogue) -> list[str]:
    return _rows(
        ("ROLE", "NAME", "LABS", "OWNS"),
        [
            (r.id, r.name, str(len(r.labs)), ", ".join(c.id for c in catalogue.components_of(r.id)))
            for r in catalogue.roles
        ],
        indent="",
    )


def _cmd_roles(args: argparse.Namespace) -> int:
    try:
        catalogue = load_catalogue(repo_root=find_repo_root())
    except CatalogueError as exc:
        print(f"mtlab roles: {exc}", file=sys.stderr)
        return 1
    component: str | None = args.component
    role: str | None = args.role
    for flag, value, known in (
        ("--component", component, [c.id for c in catalogue.components]),
        ("--role", role, [r.id for r in catalogue.roles]),
    ):
        if value is not None and value not in known:
            print(f"mtlab roles: unknown {flag[2:]} {value!r}; choose from {', '.join(known)}", file=sys.stderr)
            return 2
    chosen = select(catalogue, component, role)
    if args.json:
        print(json.dumps(to_json(chosen), indent=2))
        return 0
    if component is not None and role is not None and not chosen.components:
        labs = [lab.id for r in chosen.roles for lab in r.labs]
        also = f"; its labs that touch {component}: {', '.join(labs)}" if labs else ""
        print(f"{role} does not own {component}{also}")
        return 0
    if role is not None:
        lines = render_roles(chosen)
    else:
        lines = render_components(chosen)
        if component is None:
            lines += [*render_role_index(chosen), "", "`mtlab roles --role ID` shows a role's labs."]
    print("\n".join(lines).rstrip())
    return 0


def add_roles_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mtlab roles`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "roles",
        help="which roles own each component, and each role's labs",
        description="Print the role catalogue (mtlab/roles.toml): for each component, the engineering roles\n"
        "that own it and what each does there; for each role, its labs. Filters combine.",
        epilog="examples:\n"
        "  mtlab roles --component gateway   who owns the gateway, and the labs that touch it\n"
        "  mtlab roles --role dba            what a DBA owns, and the DBA labs\n"
        "  mtlab roles --json | jq '.roles[].labs[].id'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--component", metavar="NAME", help="only this component (e.g. gateway, shard_db)")
    p.add_argument("--role", metavar="ID", help="only this role, with its labs (e.g. sre, dba, security)")
    p.add_argument("--json", action="store_true", help="machine-readable output for scripts (same filters)")
    p.set_defaults(func=_cmd_roles)
