"""Replace a benchmark's table in a Markdown document, keeping the prose around it."""

from pathlib import Path


def write_table(docs, start, end, table, title):
    """Put ``table`` between the ``start`` and ``end`` markers of ``docs``.

    A document without the markers gets them appended; a missing document is created
    with the heading ``title``.
    """
    docs = Path(docs)
    text = docs.read_text() if docs.exists() else f"# {title}\n\n"
    if start not in text:
        text = f"{text.rstrip()}\n\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    docs.write_text(f"{head}{start}\n{table}\n{end}{tail}")
