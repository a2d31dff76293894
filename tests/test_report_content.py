"""What a reviewer sees in the report of the synthetic study: the HTML parsed, the Markdown read.

The study runs two of its arms (the words alone, the voice features alone) through
`cer experiment run`, then `cer experiment report --notebook` renders the Markdown and the HTML.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from cer.cli import main
from experiments.cli import STUDIES_DIR

pytestmark = pytest.mark.slow


class Page(HTMLParser):
    """The parts of an HTML page the tests look at."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.title, self.tables, self.captions, self.images = "", [], [], []
        self.scripts, self.links, self.classes = [], [], set()
        self._open: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._open.append(tag)
        self.classes.update((attrs.get("class") or "").split())
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figcaption":
            self.captions.append("")
        elif tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "script":
            self.scripts.append(attrs.get("src") or "")
        elif tag == "link":
            self.links.append(attrs.get("href") or "")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        while self._open and self._open.pop() != tag:
            pass

    def handle_data(self, data):
        if "title" in self._open[-1:]:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        if "figcaption" in self._open:
            self.captions[-1] += data


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "synthetic"
    arms = "text_T,fusion_unimodal_A"
    run = ["experiment", "run", str(STUDIES_DIR / "synthetic.yaml"), "--arms", arms, "-q"]
    assert main([*run, "--output-dir", str(folder)]) == 0
    assert main(["experiment", "report", str(folder), "--notebook"]) == 0
    return folder


def test_the_html_is_a_document_without_code_that_opens_offline(study):
    text = (study / "report" / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.title == "synthetic-voice: study report"
    # no code cells or prompts, none of papermill's parameters
    assert not {"jp-InputArea", "jp-InputPrompt", "jp-OutputPrompt"} & page.classes
    assert "study_dir =" not in text and "import " not in text.split("<body", 1)[1]
    # nothing loaded from the internet: no script or stylesheet by URL, figures embedded
    assert not [src for src in page.scripts if src]
    assert not [href for href in page.links if href.startswith(("http", "//"))]
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert ".venv" not in text and "site-packages" not in text


def test_the_html_opens_with_a_summary_table_with_intervals(study):
    page = Page((study / "report" / "report.html").read_text(encoding="utf-8"))
    header, *rows = page.tables[0]
    assert header[:4] == ["arm", "what it is", "modalities (present/clips)", "model"]
    assert "macro F1 [95% CI]" in header and "accuracy [95% CI]" in header
    by_arm = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(by_arm) == {"text_T", "fusion_unimodal_A"}  # first column is the arm: no index
    words = by_arm["text_T"]
    assert words["model"] == "bundled-minilm" and words["modalities (present/clips)"] == "T 8/8"
    assert words["what it is"].startswith("MiniLM-L6 fine-tuned on the words alone")
    mean, interval = words["macro F1 [95% CI]"].split(" ", 1)
    low, high = (float(v) for v in interval.strip("[]").split(","))
    assert low <= float(mean) <= high
    assert by_arm["fusion_unimodal_A"]["accuracy [95% CI]"].startswith("1.000")
    for table in page.tables:  # pandas would add an empty first header cell for its index
        assert table[0][0], table[0]


def test_every_figure_has_a_numbered_caption(study):
    page = Page((study / "report" / "report.html").read_text(encoding="utf-8"))
    assert len(page.captions) == len(page.images) == 4
    assert [c.split(".")[0] for c in page.captions] == [f"Figure {i}" for i in range(1, 5)]
    scores, _, confusion, ablation = page.captions
    assert "95% bootstrap interval" in scores and "chance" in scores
    assert "count and the share of its gold row" in confusion
    assert "modality subset" in ablation


def test_the_markdown_states_the_dataset_and_shows_a_prompt_per_arm(study):
    markdown = (study / "report" / "report.md").read_text(encoding="utf-8")
    title = markdown.splitlines()[0]
    assert title.startswith("# synthetic-voice: study report, 20")
    assert markdown.index("## Summary") < markdown.index("## Dataset") < markdown.index("## Scores")
    assert "| fold | split | clips | bright | dark |" in markdown
    assert "| 0 | train | 20 | 10 | 10 |" in markdown and "| 0 | test | 8 | 4 | 4 |" in markdown
    assert "Protocol **official**" in markdown and "**Leakage check: passed.**" in markdown
    prompts = markdown.split("## Example prompts")[1].split("\n## ")[0]
    assert "```text\nTranscription: " in prompts  # text_T's prompt, as the model read it
    assert "**fusion_unimodal_A**: No prompt: this feature baseline reads openSMILE" in prompts
    assert "](figures/confusion.png)" in markdown and "*Figure 3. Confusion matrices" in markdown
    method = markdown.split("## Method")[1]
    assert "evaluation." not in method and "experiments." not in method  # no internal names
    assert ".venv" not in markdown
