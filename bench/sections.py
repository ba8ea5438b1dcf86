"""Replace one marked section of bench/RESULTS.md (the scripts that write their own table)."""
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def replace_section(text, begin, end, path=RESULTS):
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) where the old section
    between those markers was, or append it to the file."""
    with open(path) as f:
        doc = f.read()
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + text + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    with open(path, "w") as f:
        f.write(doc)
