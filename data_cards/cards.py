"""Dataset cards: Markdown for people, YAML front matter for the code that prepares the data.

A card is a ``.md`` file that opens with a ``---``-fenced YAML block. The preparation code reads
its facts (classes, file names, expected counts, known problems) from that block, so the card is
the single place where they are written down. Shipped cards live beside this module; a user card
is any file path with the same shape (see ``folder.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_cards.errors import CardError

CARDS_DIR = Path(__file__).resolve().parent
FENCE = "---"


@dataclass(frozen=True)
class Card:
    """One dataset card: its front matter (``meta``), its Markdown body and where it was read."""

    name: str
    meta: dict[str, Any]
    body: str
    path: Path

    @property
    def title(self) -> str:
        return str(self.meta.get("title", self.name))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.meta.get("classes") or ())

    def get(self, dotted: str, default: Any = None) -> Any:
        """Front-matter value at a dotted path (``"protocols.reference.folds"``)."""
        node: Any = self.meta
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, dotted: str) -> Any:
        value = self.get(dotted)
        if value is None:
            raise CardError(f"card {self.path} has no '{dotted}' in its front matter; add it")
        return value

    def text(self) -> str:
        """The whole card as written (front matter and body)."""
        return self.path.read_text(encoding="utf-8")


def parse_card(text: str, *, path: Path) -> Card:
    """Split a card into front matter and body; the front matter must be a YAML mapping."""
    import yaml

    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        raise CardError(
            f"card {path} must start with a '---' line that opens the YAML front matter"
        )
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == FENCE)
    except StopIteration as err:
        raise CardError(
            f"card {path}: the front matter is not closed by a second '---' line"
        ) from err
    try:
        meta = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as err:
        raise CardError(f"card {path}: front matter is not valid YAML: {err}") from err
    if not isinstance(meta, dict):
        raise CardError(f"card {path}: front matter must be a mapping of key: value")
    name = str(meta.get("name") or path.stem)
    return Card(name=name, meta=meta, body="".join(lines[end + 1 :]).lstrip("\n"), path=path)


def list_cards() -> tuple[str, ...]:
    """Names of the cards shipped with the package."""
    return tuple(sorted(p.stem for p in CARDS_DIR.glob("*.md")))


def load_card(name: str | Path) -> Card:
    """Load a shipped card by name (``"meld"``, ``"cexprdb"``, ``"folder"``) or any card by path."""
    candidate = Path(name)
    if candidate.suffix == ".md" or len(candidate.parts) > 1:
        path = candidate
    else:
        path = CARDS_DIR / f"{str(name).lower().replace('-', '')}.md"
    if not path.is_file():
        raise CardError(
            f"no dataset card {str(name)!r}; shipped cards are: {', '.join(list_cards())} "
            "(or pass the path of your own card, see `cer data card folder`)"
        )
    return parse_card(path.read_text(encoding="utf-8"), path=path)
