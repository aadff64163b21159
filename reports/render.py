"""A report as a list of blocks, written twice: self-contained HTML and its Markdown twin.

HTML: inline CSS, figures embedded as base64 PNG data URIs, no scripts, and a
Content-Security-Policy that forbids loading anything (so the page opens from disk and fetches
nothing even if a browser were tempted). Every piece of text is HTML-escaped here, in one place,
so text from models, data or labels always shows as text.

Markdown: the same blocks; figures are PNG files beside ``report.md``; table cells have ``|``,
backslashes and Markdown punctuation escaped, ``<``/``>``/``&`` as entities, and newlines as
``<br>`` so no answer can break a table or inject markup.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

Span = str | tuple[str, str]  # plain text, or (style, text): "code"/"b"/"em"/"mark"/"flag"
# A table cell or paragraph is one Span or a *list* of Spans.


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    spans: tuple[Span, ...]
    css: str = ""  # "note" / "warn": a highlighted paragraph (a quote in Markdown); "verdict"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Span | Sequence[Span], ...], ...]
    row_css: tuple[str, ...] = ()   # one CSS class per row ("" for none)
    css: str = ""
    caption: str = ""
    num_cols: tuple[int, ...] = ()  # right-aligned (numeric) columns
    wrap_cols: tuple[int, ...] = ()  # numeric columns whose small print may wrap (long CIs)


@dataclass(frozen=True)
class Figure:
    name: str    # file name stem (Markdown) and id (HTML)
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1800px;padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ddd}
h3{margin-top:1.4em}
.table-wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.86em;margin:.6em 0}
table.headline{font-size:.76em}
th,td{border:1px solid #d0d0d0;padding:.25em .4em;vertical-align:top;text-align:left}
table.headline th,table.headline td{padding:.2em .3em}
table.headline th{font-size:.9em}
th{background:#f2f2f5;position:sticky;top:0;font-weight:600}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td small{color:#666;font-size:.85em}
td.wrap small{white-space:normal}
tr.baseline td{background:#f6f6f6;font-weight:600}
tr.best td{background:#e9f7ea}
table.fingerprint td:first-child{white-space:nowrap;font-weight:600}
table.examples td{max-width:40em;overflow-wrap:anywhere}
caption{text-align:left;font-weight:600;padding:.3em 0}
code{background:#f2f2f5;padding:0 .2em;border-radius:3px}
p.note{background:#f5f8ff;border-left:4px solid #6b8cd6;padding:.4em .8em}
p.warn{background:#fff6e5;border-left:4px solid #e0a030;padding:.4em .8em}
p.verdict{font-size:1.1em;background:#f7f7f9;border-left:4px solid #1d1d1f;padding:.4em .8em}
figure{display:inline-block;vertical-align:top;margin:1em 1.5em 1em 0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:40em}
.mark{color:#1a7f37;font-weight:600}
.flag{color:#b35900;font-weight:600}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(text: object) -> str:
    """HTML-escape any text (quotes included, so it is safe in attributes too)."""
    return html.escape(str(text), quote=True)


_LONG_WORD = re.compile(r"[^\s]{13,}")


def _breakable(escaped: str) -> str:
    """Escaped text whose long words (13+ characters with a letter, such as hook names, paths
    or 'true×informative') may wrap after ``.`` ``_`` ``×`` (``<wbr>``: no visible change,
    nothing added to copied text), so a table can fit a narrow screen."""
    def split(m: re.Match) -> str:
        word = m.group(0)
        if not re.search(r"[A-Za-z]", word):
            return word
        return re.sub(r"(?<=[._×])(?=[^\s._×])", "<wbr>", word)
    return _LONG_WORD.sub(split, escaped)


def _spans_html(spans: Span | Sequence[Span], wrap: bool = False) -> str:
    """Spans as HTML (escaped); ``wrap``: long words may break (table cells)."""
    if isinstance(spans, (str, tuple)):  # one span; several come as a list
        spans = [spans]
    fix = _breakable if wrap else (lambda t: t)
    out = []
    for s in spans:
        if isinstance(s, tuple):
            style, text = s
            tag = {"code": "code", "b": "strong", "em": "em", "mark": "span", "flag": "span",
                   "small": "small"}.get(style, "span")
            cls = f' class="{style}"' if style in ("mark", "flag") else ""
            out.append(f"<{tag}{cls}>{fix(esc(text)).replace(chr(10), '<br>')}</{tag}>")
        else:
            out.append(fix(esc(s)).replace("\n", "<br>"))
    return "".join(out)


def to_html(doc: Document) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>"
             f"<h1>{esc(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            anchor = f' id="{esc(b.anchor)}"' if b.anchor else ""
            parts.append(f"<h{b.level}{anchor}>{esc(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{esc(b.css)}"' if b.css else ""
            parts.append(f"<p{cls}>{_spans_html(list(b.spans))}</p>")
        elif isinstance(b, Table):
            cls = f' class="{esc(b.css)}"' if b.css else ""
            rows = []
            for k, row in enumerate(b.rows):
                css = b.row_css[k] if k < len(b.row_css) and b.row_css[k] else ""
                cells = "".join(
                    f"<td class=\"num{' wrap' if j in b.wrap_cols else ''}\">{_spans_html(c)}</td>"
                    if j in b.num_cols else f"<td>{_spans_html(c, wrap=True)}</td>"
                    for j, c in enumerate(row))
                rows.append(f"<tr class=\"{esc(css)}\">{cells}</tr>" if css else
                            f"<tr>{cells}</tr>")
            caption = f"<caption>{_breakable(esc(b.caption))}</caption>" if b.caption else ""
            head = "".join(f"<th>{_breakable(esc(h))}</th>" for h in b.header)
            parts.append(f"<div class=\"table-wrap\"><table{cls}>{caption}<thead><tr>{head}</tr>"
                         f"</thead><tbody>{''.join(rows)}</tbody></table></div>")
        elif isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            cap = f"<figcaption>{esc(b.caption)}</figcaption>" if b.caption else ""
            parts.append(f"<figure id=\"{esc(b.name)}\"><img alt=\"{esc(b.alt)}\" "
                         f"src=\"data:image/png;base64,{data}\">{cap}</figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


_MD_SPECIAL = "\\`*_[]|#<>"


def md_escape(text: object) -> str:
    """Text made inert in Markdown: punctuation backslash-escaped, ``&`` ``<`` ``>`` as
    entities, newlines as ``<br>`` (so table rows stay one line)."""
    s = str(text).replace("\\", "\\\\")
    for ch in "`*_[]|#":
        s = s.replace(ch, "\\" + ch)
    s = html.escape(s, quote=False)
    return s.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _spans_md(spans: Span | Sequence[Span]) -> str:
    if isinstance(spans, (str, tuple)):  # one span; several come as a list
        spans = [spans]
    out = []
    for s in spans:
        if isinstance(s, tuple):
            style, text = s
            wrap = {"code": "`", "b": "**", "em": "*", "mark": "**", "flag": "**"}.get(style, "")
            if style == "small":
                text = str(text).replace("\n", " ")
            lead = ""
            if style in ("mark", "flag"):
                lead = " " if str(text).startswith("\n") else ""
                text = str(text).lstrip("\n").replace("\n", "; ")
            if style == "code":
                text = str(text).replace("`", "'").replace("|", "\\|").replace("\n", " ")
                out.append(f"`{text}`")
            else:
                out.append(f"{lead}{wrap}{md_escape(text)}{wrap}")
        else:
            out.append(md_escape(s))
    return "".join(out)


def to_markdown(doc: Document, figure_dir: str = "figures") -> tuple[str, dict[str, bytes]]:
    """(Markdown text, {relative PNG path: bytes}) of the document."""
    lines = [f"# {md_escape(doc.title)}", ""]
    files: dict[str, bytes] = {}
    for b in doc.blocks:
        if isinstance(b, Heading):
            lines += [f"{'#' * b.level} {md_escape(b.text)}", ""]
        elif isinstance(b, Para):
            lines += [("> " if b.css in ("note", "warn") else "") + _spans_md(list(b.spans)),
                      ""]
        elif isinstance(b, Table):
            if b.caption:
                lines += [f"*{md_escape(b.caption)}*", ""]
            lines.append("| " + " | ".join(md_escape(h) for h in b.header) + " |")
            lines.append("|" + "|".join("---" for _ in b.header) + "|")
            for row in b.rows:
                lines.append("| " + " | ".join(_spans_md(c) for c in row) + " |")
            lines.append("")
        elif isinstance(b, Figure):
            path = f"{figure_dir}/{b.name}.png"
            files[path] = b.png
            lines += [f"![{md_escape(b.alt)}]({path})", ""]
            if b.caption:
                lines += [f"*{md_escape(b.caption)}*", ""]
    return "\n".join(lines).rstrip() + "\n", files
