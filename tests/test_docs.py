"""The README starts short and its promises hold: at most 300 lines, the two set-up commands
first (the test command is the one `.ci/run` runs, the example is shipped), its example output
is what the command prints today, and every link in the README and docs/ resolves — files and
the headings they point at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *DOCS]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (a link or heading there is not one)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", _prose(path.read_text()), re.M)}


def test_the_readme_is_short_and_links_every_page_of_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert DOCS, "docs/ holds the long sections"
    linked = {(ROOT / m.group(1).split("#")[0]).resolve() for m in _LINK.finditer(readme)}
    assert set(DOCS) <= linked, sorted(str(p) for p in set(DOCS) - linked)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    links = [m.group(1) for m in _LINK.finditer(_prose(page.read_text()))]
    for link in links:
        if re.match(r"[a-z]+:", link):  # https:, mailto: — not ours to check offline
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} — no such file"
        if anchor:
            assert path.suffix == ".md" and anchor in _anchors(path), \
                f"{page.name}: {link} — no heading with that anchor"


def _first_block(text: str) -> list[str]:
    return re.search(r"^```sh\n(.*?)^```", text, re.S | re.M).group(1).splitlines()


def test_the_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("```sh") < readme.index("\n## ")  # before the first section
    install, tests = (line.split("#")[0].strip() for line in _first_block(readme))
    assert install.startswith("pip install -e . && wdaudit fixtures/")
    fixture = install.split("wdaudit ", 1)[1].split()[0]
    assert (ROOT / fixture).is_file()
    assert tests == "pip install -e '.[test]' && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'pip install -e "\.\[test\]"', ci)
    assert re.search(r"^python -m pytest -q$", ci, re.M)  # the README's test command, as is


def test_the_readmes_example_is_what_the_command_prints(monkeypatch):
    from click.testing import CliRunner

    from wdaudit.frontend.cli import main

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^```\n\$ wdaudit (\S+)\n(.*?)^```", readme, re.S | re.M)
    target, shown = block.group(1), block.group(2).splitlines()
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, [target])
    assert result.exit_code == 1  # as the README says: the example has findings
    printed = result.stdout.splitlines()
    for line in shown:
        head = line.split("…")[0].rstrip(". ")
        assert any(p.startswith(head) for p in printed), f"README shows {line!r}; printed:\n" \
            + result.stdout
