"""The documentation: README.md's file map names every src module, every relative link and #anchor
of README.md, RESULTS.md and docs/*.md resolves, the README's contents list every section, and the
README stays short. Standard library only (no MindSpore import)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 320  # issues ask for Serving and LibriSpeech sections in the README itself

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target) and ![alt](target); the text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")


def doc_pages():
    return [README, ROOT / "RESULTS.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text):
    """The lines outside fenced code blocks (fenced lines become empty, keeping line numbers)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return out


def slug(heading):
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation removed except
    '-' and '_', each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every heading's anchor on a page, with GitHub's -1, -2 ... suffixes for repeated ones."""
    seen, out = {}, set()
    for line in prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def headings(text, levels):
    return [(len(m.group(1)), m.group(2)) for m in map(HEADING.match, prose_lines(text))
            if m and len(m.group(1)) in levels]


def links(text):
    """(line number, target) of every markdown link outside code blocks and code spans."""
    prose = "\n".join(prose_lines(text))
    # blank out code spans but keep their newlines, so line numbers stay right
    prose = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
    return [(prose.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(prose)]


def broken_links(page):
    """Every relative link of a page whose file or #anchor does not exist, as readable lines."""
    problems = []
    for line, target in links(page.read_text(encoding="utf-8")):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto:, ...
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name}:{line}"
        if not dest.exists():
            problems.append(f"{where}: {target}: no such file")
            continue
        if fragment:
            if dest.suffix != ".md":
                problems.append(f"{where}: {target}: an anchor into a file that is not markdown")
            elif fragment not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: {target}: no heading '#{fragment}' in {dest.name}")
    return problems


def section(text, title):
    """The lines of the '## title' section of a page (up to the next '## ' heading)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start + 1:end])


def test_slugs_follow_github_rules():
    assert slug("Differences from the model-zoo version") == "differences-from-the-model-zoo-version"
    assert slug("The model zoo's published figures") == "the-model-zoos-published-figures"
    assert slug("Quick start, measured") == "quick-start-measured"
    assert slug("`src/conv_spec.py` and **bold**") == "srcconv_specpy-and-bold"
    assert slug("2026-12-01, AMD EPYC: quick start") == "2026-12-01-amd-epyc-quick-start"
    assert anchors("# A\n## Training\n```\n# not a heading\n```\n## Training\n") == {
        "a", "training", "training-1"}


def test_the_checker_reports_a_broken_file_and_a_broken_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Real section\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Here\n\n[ok](other.md#real-section) [ok](#here) [web](https://x.org/#y)\n"
                    "`[in code](missing.md)`\n```\n[in a block](missing.md)\n```\n"
                    "[gone](missing.md) [bad](other.md#no-such) [bad here](#nowhere)\n")
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert "missing.md: no such file" in problems[0]
    assert "no heading '#no-such' in other.md" in problems[1]
    assert "no heading '#nowhere' in page.md" in problems[2]


def test_every_src_module_is_in_the_readme_file_map():
    file_map = section(README.read_text(encoding="utf-8"), "File map")
    modules = sorted(p.name for p in (ROOT / "src").glob("*.py") if p.name != "__init__.py")
    assert modules
    missing = [m for m in modules if not re.search(rf"(?<![\w/.])src/{re.escape(m)}(?!\w)", file_map)]
    assert not missing, f"add these to README.md's file map (as src/<name>.py): {missing}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_readme_contents_list_every_section_and_page():
    text = README.read_text(encoding="utf-8")
    contents = section(text, "Contents")
    linked = {target for _, target in links(contents)}
    wanted = [f"#{slug(title)}" for _, title in headings(text, {2}) if title != "Contents"]
    for page in sorted((ROOT / "docs").glob("*.md")):
        name = f"docs/{page.name}"
        wanted.append(name)
        wanted += [f"{name}#{slug(title)}" for _, title in headings(page.read_text(encoding="utf-8"), {2, 3})]
    missing = [w for w in wanted if w not in linked]
    assert not missing, f"README.md's Contents should link these: {missing}"


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/")
