"""The role catalogue (mtlab/roles.toml), the component READMEs that must agree with it, and `mtlab roles`."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from mtlab.roles import (
    Catalogue,
    CatalogueError,
    add_roles_command,
    check_catalogue,
    check_readmes,
    find_repo_root,
    load_catalogue,
    parse_catalogue,
)

ROOT = Path(__file__).resolve().parents[2]
TOML = ROOT / "mtlab" / "roles.toml"
SEEDS = ROOT.parent / "shared" / "seeds"

DESIGNED = {
    "gateway": "services/gateway",
    "auth": "services/auth",
    "messages": "services/messages",
    "media": "services/media",
    "updates": "services/updates",
    "shard_db": "shard_db",
    "client": "mtlab/client",
    "infra": "infra",
    "loadtests": "loadtests",
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(repo_root=ROOT)


def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mtlab")
    add_roles_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["roles", *argv])
    code: int = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------- catalogue


def test_packaged_catalogue_is_the_repo_file_and_checks_clean(catalogue: Catalogue) -> None:
    assert find_repo_root() == ROOT
    assert load_catalogue(TOML) == catalogue
    assert check_catalogue(catalogue, ROOT) == []


def test_components_are_exactly_the_designed_ones(catalogue: Catalogue) -> None:
    assert {c.id: c.folder for c in catalogue.components} == DESIGNED


def test_every_role_owns_something_and_has_two_planned_labs(catalogue: Catalogue) -> None:
    assert len(catalogue.roles) >= 10
    for role in catalogue.roles:
        assert catalogue.components_of(role.id), role.id
        assert len(role.labs) >= 2, role.id
        assert all(lab.status == "planned" for lab in role.labs), role.id


def test_the_roles_the_brief_names_have_their_labs(catalogue: Catalogue) -> None:
    labs = {lab.id for r in catalogue.roles for lab in r.labs}
    for lab in ("dba-live-reshard", "sre-kill-under-load", "security-malformed-frames", "security-replay",
                "network-transports-tshark", "qa-session-properties"):
        assert lab in labs


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("qa = [\"gap and duplicate", "wizard = [\"gap and duplicate", "component updates: role 'wizard' is not in"),
        ('components = ["media"]\nstatus = "planned"', 'components = ["mdia"]\nstatus = "planned"',
         "unknown component(s) mdia"),
        ('id = "data-export-pipeline"', 'id = "data-consistency-audit"', "id is used twice"),
        ('status = "planned"\nissue = 6', 'status = "shipped"\nissue = 6', "status 'shipped'"),
        ('id = "cloud-autoscale-updates"', 'id = "Cloud Autoscale"', "not lower-kebab-case"),
    ],
)
def test_inconsistent_catalogue_is_refused(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(_edit(TOML.read_text(), old, new))
    with pytest.raises(CatalogueError, match=re.escape(expected)):
        load_catalogue(path)


def test_a_role_with_one_lab_is_refused(tmp_path: Path) -> None:
    text = TOML.read_text()
    lab = text[text.index("[[roles.data.labs]]\nid = \"data-export-pipeline\""):text.index("[roles.cloud]")]
    path = tmp_path / "roles.toml"
    path.write_text(text.replace(lab, ""))
    with pytest.raises(CatalogueError, match="role data: has 1 lab"):
        load_catalogue(path)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('runs_on = "locust"', 'runs_on = "locust"\nstauts = "built"', "components.loadtests: unknown stauts"),
        ('runs_on = "locust"\n', "", "components.loadtests: missing runs_on"),
        ("issue = 5", 'issue = "five"', "components.updates.issue: expected an integer"),
        ('storage = ["disks and capacity of shard servers"]', 'storage = "disks"',
         "components.shard_db.roles.storage: expected a list"),
        ("schema = 1", "schema = 2", "this mtlab reads schema 1"),
        ("[roles.product]", "[roles.product", "not valid TOML"),
    ],
)
def test_malformed_catalogue_names_the_key(old: str, new: str, expected: str) -> None:
    with pytest.raises(CatalogueError, match=re.escape(expected)):
        parse_catalogue(_edit(TOML.read_text(), old, new))


def test_folders_must_exist_unless_planned(catalogue: Catalogue, tmp_path: Path) -> None:
    def missing(c: str) -> str:
        return f"component {c}: folder {DESIGNED[c]}/ does not exist and the component is not planned"

    # tmp_path starts with none of the folders: only the built components are reported.
    built = [c.id for c in catalogue.components if c.status == "built"]
    assert check_catalogue(catalogue, tmp_path) == [missing(c) for c in built]
    for c in built:
        (tmp_path / DESIGNED[c]).mkdir(parents=True)
    assert check_catalogue(catalogue, tmp_path) == []
    shard_db_built = parse_catalogue(_edit(TOML.read_text(), 'status = "planned"\nissue = 4\nseed_names = ["Sharded',
                                           'status = "built"\nissue = 4\nseed_names = ["Sharded'))
    assert check_catalogue(shard_db_built, tmp_path) == [missing("shard_db")]
    (tmp_path / "shard_db").mkdir()
    assert check_catalogue(shard_db_built, tmp_path) == []


# ------------------------------------------------------------------------------------------------ READMEs


def test_every_component_readme_lists_exactly_its_roles(catalogue: Catalogue) -> None:
    assert check_readmes(catalogue, ROOT) == []


def test_built_components_are_packages_with_their_readme(catalogue: Catalogue) -> None:
    """A component the catalogue calls built has code beside its README (and a planned one says so)."""
    for c in catalogue.components:
        folder = ROOT / c.folder
        if c.status == "built" and c.folder.startswith(("services/", "mtlab/", "shard_db")):
            assert (folder / "__init__.py").exists(), c.folder
            assert (folder / "README.md").exists(), c.folder


@pytest.fixture
def readme_copy(catalogue: Catalogue, tmp_path: Path) -> Path:
    for c in catalogue.components:
        (tmp_path / c.folder).mkdir(parents=True)
        shutil.copy(ROOT / c.folder / "README.md", tmp_path / c.folder / "README.md")
    assert check_readmes(catalogue, tmp_path) == []
    return tmp_path


@pytest.mark.parametrize(
    ("folder", "old", "new", "expected"),
    [
        ("services/gateway", "## Roles\n\n", "## Roles\n\n- `dba` (DBA / database engineer): keys\n",
         "services/gateway/README.md: lists role dba, which the catalogue does not give gateway"),
        ("services/gateway", "## Roles\n\n", "## Roles\n\n- `wizard` (Wizard): spells\n",
         "lists role wizard, which the catalogue does not give gateway (and it is not a catalogue role)"),
        ("infra", "- `cloud` (Cloud engineer): running the manifests on a cloud\n", "",
         "infra/README.md: does not list role cloud, which owns infra in the catalogue"),
        ("loadtests", "- `qa` (QA engineer)", "- `qa` (Tester)",
         "loadtests/README.md: role qa is named 'Tester', the catalogue calls it 'QA engineer'"),
        ("loadtests", "- `qa` (QA engineer)", "- qa (QA engineer)", "role bullet is not"),
        ("loadtests", "## Roles\n\n", "## Roles\n\n- `qa` (QA engineer): again\n", "role qa is listed twice"),
        ("shard_db", "## Roles", "## Owners", "shard_db/README.md: no '## Roles' section"),
        ("mtlab/client", "## Lab hooks (planned)", "## Hooks", "mtlab/client/README.md: no '## Lab hooks' section"),
    ],
)
def test_readme_checker_catches_disagreement(
    catalogue: Catalogue, readme_copy: Path, folder: str, old: str, new: str, expected: str
) -> None:
    path = readme_copy / folder / "README.md"
    path.write_text(_edit(path.read_text(), old, new))
    problems = check_readmes(catalogue, readme_copy)
    assert problems, "the checker missed the edit"
    assert expected in problems[0]
    assert all(p.startswith(f"{folder}/README.md: ") for p in problems)


def test_readme_checker_notices_a_missing_readme(catalogue: Catalogue, readme_copy: Path) -> None:
    (readme_copy / "services" / "media" / "README.md").unlink()
    assert check_readmes(catalogue, readme_copy) == ["services/media/README.md: missing"]


# --------------------------------------------------------------------------------------------- the seeds


def _seed_ownership(text: str) -> list[tuple[str, str]]:
    """(component, role) as one seed document writes them in its "Components and roles" section."""
    start = re.search(r"^##\s*Components and roles\s*$", text, re.M)
    assert start is not None
    section = re.split(r"^##", text[start.end():], maxsplit=1, flags=re.M)[0]
    bullets = [(len(m[1]), m[2]) for m in re.finditer(r"^( *)-\s*(\S.*)$", section, re.M)]
    top = min(indent for indent, _ in bullets)
    pairs, component = [], ""
    for indent, raw in bullets:
        bold = re.match(r"\*\*(.+?)\*\*", raw)
        name = (bold[1] if bold else raw).strip()
        if indent == top:
            component = name
        else:
            pairs.append((component, name))
    return pairs


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed documents live beside the project, not in it")
def test_catalogue_holds_the_union_of_the_seeds(catalogue: Catalogue) -> None:
    def ids(name: str, entries: list[tuple[str, tuple[str, ...]]]) -> set[str]:
        return {i for i, seed_names in entries if name.lower() in (s.lower() for s in seed_names)}

    components = [(c.id, c.seed_names) for c in catalogue.components]
    roles = [(r.id, r.seed_names) for r in catalogue.roles]
    seen = 0
    for doc in sorted(SEEDS.glob("*.txt")):
        for seed_component, seed_role in _seed_ownership(doc.read_text()):
            seen += 1
            where = f"{doc.name}: {seed_component} / {seed_role}"
            assert ids(seed_component, components), f"{where}: component not in any seed_names"
            assert ids(seed_role, roles), f"{where}: role not in any seed_names"
            for cid in ids(seed_component, components):
                for rid in ids(seed_role, roles):
                    assert rid in catalogue.component(cid).role_ids, f"{where}: {rid} missing from {cid}"
    assert seen > 80


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed documents live beside the project, not in it")
def test_every_seed_name_is_quoted_verbatim_from_a_seed(catalogue: Catalogue) -> None:
    seeds = "\n".join(doc.read_text() for doc in SEEDS.glob("*.txt"))
    for name in [n for c in catalogue.components for n in c.seed_names] + [
        n for r in catalogue.roles for n in r.seed_names
    ]:
        assert name in seeds, name


# -------------------------------------------------------------------------------------------- mtlab roles


def test_json_is_the_whole_catalogue(catalogue: Catalogue, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--json", capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["schema"] == 1
    assert [c["id"] for c in data["components"]] == list(DESIGNED)
    assert {c["id"]: [o["role"] for o in c["roles"]] for c in data["components"]} == {
        c.id: list(c.role_ids) for c in catalogue.components
    }
    assert sum(len(r["labs"]) for r in data["roles"]) == sum(len(r.labs) for r in catalogue.roles)
    dba = next(r for r in data["roles"] if r["id"] == "dba")
    assert dba["components"] == ["auth", "messages", "shard_db"]


def test_json_role_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--role", "dba", "--json", capsys=capsys)
    data = json.loads(out)
    assert code == 0
    assert [r["id"] for r in data["roles"]] == ["dba"]
    assert [c["id"] for c in data["components"]] == ["auth", "messages", "shard_db"]
    assert all([o["role"] for o in c["roles"]] == ["dba"] for c in data["components"])


def test_json_component_filter_keeps_owners_and_labs_touching_it(
    catalogue: Catalogue, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run("--component", "client", "--json", capsys=capsys)
    data = json.loads(out)
    assert code == 0
    assert [c["id"] for c in data["components"]] == ["client"]
    roles = {r["id"]: r for r in data["roles"]}
    assert set(catalogue.component("client").role_ids) <= set(roles)
    assert all("client" in lab["components"] for r in roles.values() for lab in r["labs"])
    # network owns only the gateway, but its tshark lab captures the client's side too
    assert roles["network"]["components"] == []
    assert "network-transports-tshark" in [lab["id"] for lab in roles["network"]["labs"]]


def test_table_per_component(catalogue: Catalogue, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys=capsys)
    assert code == 0
    for c in catalogue.components:
        assert f"\n{c.id}: " in f"\n{out}"
    for r in catalogue.roles:
        assert re.search(rf"^{r.id} +{re.escape(r.name)} +{len(r.labs)} ", out, re.M), r.id


def test_role_view_lists_its_labs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--role", "sre", capsys=capsys)
    assert code == 0
    assert out.startswith("sre: Site reliability engineer.")
    assert re.search(r"^  sre-kill-under-load +planned +Kill a service under locust load", out, re.M)
    assert "dba-live-reshard" not in out


def test_role_that_does_not_own_component(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("--component", "infra", "--role", "qa", capsys=capsys)
    assert (code, out) == (0, "qa does not own infra\n")


@pytest.mark.parametrize(("flag", "value"), [("--component", "database"), ("--role", "wizard")])
def test_unknown_name_is_a_usage_error(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(flag, value, capsys=capsys)
    assert code == 2
    assert out == ""
    assert f"unknown {flag[2:]} '{value}'; choose from" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("--help", capsys=capsys)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mtlab roles" in out
    for flag in ("--component NAME", "--role ID", "--json"):
        assert flag in out
