"""Rows of text laid out in columns that fit a width: cut with ``…``, never wrapped.

This is the layout behind every table for people (``display`` and ``watch`` say what
the columns are). It works on plain strings, so that a table of 100k rows costs what
formatting 100k lines costs: cells are measured in terminal cells (a CJK character
takes two), a cell too wide for its column ends in ``…``, a column that gives way is
left out whole, and no line is ever wider than the width. With no width (output that
is not a terminal) nothing is cut: values are written whole, and a value wider than
its column's padding pushes the rest of its line to the right rather than be cut.

A long table is laid out page by page (:class:`Layout`): each page of rows can
widen the columns (widths never shrink), and the header is written again above a
page whose layout changed, as ``vmstat`` does, so memory stays one page's worth.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

GAP = 2  # spaces between two columns
ELLIPSIS = "…"
FLEX_FLOOR = 16  # a cut-able column is not cut narrower than this (or its header) before others give way
PAD_MAX = 60  # with no width, columns are padded up to this; a longer value runs on, whole

Line = tuple[str, list[tuple[int, int, str]]]  # a line of text and its styled spans (start, end, style)


class Column:
    """One column: its header and how it gives way when the width is short.

    ``flex``: its cells may be cut (names, commands); else it is shown whole or not
    at all. ``rank``: when even the narrowest columns do not fit, the one with the
    lowest rank is left out first; None: never left out. ``styles``: a style per
    cell value (the status in colour). ``always``: shown even when every cell is empty.
    """

    __slots__ = ("always", "flex", "header", "rank", "right", "styles")

    def __init__(
        self,
        header: str,
        *,
        flex: bool = False,
        rank: int | None = None,
        right: bool = False,
        styles: dict[str, str] | None = None,
        always: bool = False,
    ) -> None:
        self.header, self.flex, self.rank, self.right = header, flex, rank, right
        self.styles, self.always = styles or {}, always or rank is None


def reranked(columns: Sequence[Column], **ranks: int) -> tuple[Column, ...]:
    """The same columns, some of them ranked otherwise (another view of the same table)."""
    out = []
    for c in columns:
        rank = ranks.get(c.header, c.rank)
        out.append(Column(c.header, flex=c.flex, rank=rank, right=c.right, styles=c.styles, always=c.always))
    return tuple(out)


# -- measuring and cutting text ------------------------------------------------------------
def _char_width(ch: str) -> int:
    import unicodedata

    if unicodedata.category(ch) in ("Mn", "Me", "Cf"):  # combining marks, zero-width joiners
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str, stop: int | None = None) -> int:
    """How many terminal cells ``text`` takes (counting stops once past ``stop``, if given)."""
    if text.isascii():
        return len(text)
    used = 0
    for ch in text:
        used += _char_width(ch)
        if stop is not None and used > stop:
            break
    return used


def cut(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` cells, else its start and ``…`` in exactly that room or less."""
    if width <= 0:
        return ""
    if text.isascii():
        return text if len(text) <= width else text[: width - 1] + ELLIPSIS
    if cell_width(text, stop=width) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        kept.append(ch)
        used += w
    return "".join(kept) + ELLIPSIS


def pad(text: str, width: int, right: bool = False) -> str:
    room = width - cell_width(text, stop=width)
    if room <= 0:
        return text
    return " " * room + text if right else text + " " * room


# -- fitting columns to a width --------------------------------------------------------------
def _fit(columns: Sequence[Column], natural: list[int], filled: list[bool], width: int | None) -> list[int]:
    """The width of each column (0: left out), from each column's natural width."""
    headers = [cell_width(c.header) for c in columns]
    shown = [filled[i] or c.always for i, c in enumerate(columns)]
    if width is None:
        return [min(max(natural[i], headers[i]), max(PAD_MAX, headers[i])) if shown[i] else 0
                for i in range(len(columns))]  # fmt: skip
    full = [max(natural[i], headers[i]) for i in range(len(columns))]
    floor = [min(full[i], max(headers[i], FLEX_FLOOR)) if c.flex else full[i] for i, c in enumerate(columns)]

    def needed(widths: Iterable[int]) -> int:
        kept = [w for w, s in zip(widths, shown, strict=True) if s]
        return sum(kept) + GAP * max(0, len(kept) - 1)

    # Columns give way, lowest rank first, until the narrowest of the rest fit.
    for _, i in sorted((c.rank, i) for i, c in enumerate(columns) if c.rank is not None):
        if needed(floor) <= width:
            break
        shown[i] = False
    if needed(full) <= width:
        return [w if s else 0 for w, s in zip(full, shown, strict=True)]
    # Cut-able columns share what is left: the widest are cut first, down to a common level.
    flex = [i for i, c in enumerate(columns) if shown[i] and c.flex and full[i] > floor[i]]
    room = width - needed([0 if i in flex else w for i, w in enumerate(full)])  # with every gap

    def spent(level: int) -> int:
        return sum(max(floor[i], min(full[i], level)) for i in flex)

    low, high = 0, max((full[i] for i in flex), default=0)
    while low < high:  # the highest level at which the flex columns fit in ``room``
        mid = (low + high + 1) // 2
        low, high = (mid, high) if spent(mid) <= room else (low, mid - 1)
    widths = [w if s else 0 for w, s in zip(full, shown, strict=True)]
    for i in flex:
        widths[i] = max(floor[i], min(full[i], low))
    spare = room - spent(low)
    for i in flex:  # the cells left over go to the columns cut at that level, left to right
        if spare > 0 and full[i] > widths[i]:
            widths[i] += 1
            spare -= 1
    return widths


class Layout:
    """Columns fitted to ``width`` (None: not a terminal, never cut), page by page."""

    def __init__(self, columns: Sequence[Column], width: int | None) -> None:
        self.columns, self.width = columns, width
        self.natural = [0] * len(columns)
        self.filled = [False] * len(columns)
        self.widths: list[int] = []
        self._plan: list[tuple[int, int, bool, bool, dict[str, str]]] = []
        self._overfull = False

    def add_page(self, rows: Sequence[Sequence[str]]) -> bool:
        """Widen the columns for these rows; True if the layout changed (a header is due)."""
        stop = self.width if self.width is not None else PAD_MAX
        natural, filled = self.natural, self.filled
        for row in rows:
            for i, cell in enumerate(row):
                if cell and cell != "-":
                    filled[i] = True
                    w = len(cell) if cell.isascii() else cell_width(cell, stop=stop)
                    if w > natural[i]:
                        natural[i] = w
        widths = _fit(self.columns, natural, filled, self.width)
        if widths == self.widths:
            return False
        self.widths = widths
        shown = [i for i, w in enumerate(widths) if w]
        # (index, width, right-aligned, padded, styles) of each column shown, in order.
        self._plan = [
            (
                i,
                widths[i],
                self.columns[i].right,
                i != shown[-1] or self.columns[i].right,
                self.columns[i].styles,
            )
            for i in shown
        ]
        self._overfull = self.width is not None and sum(widths) + GAP * (len(shown) - 1) > self.width
        return True

    def header(self) -> Line:
        text, _ = self._join([c.header for c in self.columns], styled=False)
        return text, [(0, len(text), "bold")] if text else []

    def line(self, row: Sequence[str]) -> Line:
        return self._join(row, styled=True)

    def _join(self, cells: Sequence[str], styled: bool) -> Line:
        parts: list[str] = []
        spans: list[tuple[int, int, str]] = []
        at = 0
        cutting = self.width is not None
        for i, width, right, padded, styles in self._plan:
            cell = cells[i]
            if parts:
                parts.append(GAP * " ")
                at += GAP
            if cell.isascii():  # the common case, at C speed
                text = cell[: width - 1] + ELLIPSIS if cutting and len(cell) > width else cell
                filled = (text.rjust(width) if right else text.ljust(width)) if padded else text
            else:
                text = cut(cell, width) if cutting else cell
                filled = pad(text, width, right) if padded else text
            if styled and styles and cell in styles:
                start = at + len(filled) - len(text) if right else at
                spans.append((start, start + len(text), styles[cell]))
            parts.append(filled)
            at += len(filled)
        line = "".join(parts).rstrip(" ")  # empty last cells leave no trailing blanks
        if self._overfull and cell_width(line, stop=self.width) > self.width:  # type: ignore[operator]
            line = cut(line, self.width)  # type: ignore[arg-type]  # too narrow for even the kept columns
            spans = [(a, min(b, len(line)), style) for a, b, style in spans if a < len(line)]
        return line, spans


# -- writing lines to a terminal ---------------------------------------------------------------
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def ansi(line: Line, colour: bool) -> str:
    """The line as text for a terminal: its styles as SGR escapes when ``colour``."""
    text, spans = line
    if not colour or not spans:
        return text
    out, at = [], 0
    for start, end, style in spans:
        out += [text[at:start], f"\x1b[{_SGR.get(style, '0')}m", text[start:end], "\x1b[0m"]
        at = end
    out.append(text[at:])
    return "".join(out)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
