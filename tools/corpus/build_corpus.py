#!/usr/bin/python3
"""Build TranspOLMo's bundled multi-domain text corpus from Debian packages.

Standard library only; meant to be run with Debian's /usr/bin/python3 by
tools/corpus/build.sh (which installs the packages first).

Domains and where they come from:

  scripture       bible-kjv / bible-kjv-text   (`bible` program, King James Version)
  quotations      fortunes, fortunes-min        (/usr/share/games/fortunes/*)
  dictionary      wordnet-base                  (/usr/share/wordnet/data.*, glosses)
  technical_docs  python3-doc -> python3.X-doc  (HTML under /usr/share/doc/python3.X/html)
  manpages        manpages, manpages-dev        (rendered with man-db/groff)
  code            libpython3.X-stdlib/-minimal  (/usr/lib/python3.X/**/*.py)

Output (all deterministic: sorted inputs, hash-based sampling with a fixed
seed, no timestamps):

  train.jsonl, heldout.jsonl   one {"text", "source", "domain"} object per line
  STATS.md                     documents / characters / bytes per domain and split
  SOURCES.md                   package, version, upstream, licence, what was used
"""

import argparse
import ast
import concurrent.futures
import gzip
import hashlib
import html.parser
import io
import json
import math
import os
import re
import subprocess
import sys
import tokenize
import unicodedata

SEED = "transpolmo-corpus-v1"
MAX_DOC_BYTES = 8000          # hard upper bound per document (UTF-8 bytes)
MIN_DOC_BYTES = 20            # drop fragments shorter than this
DOMAIN_CAP_BYTES = 2_000_000  # sample each domain down to about this much text
HELDOUT_FRACTION = 0.05

DOMAINS = ["scripture", "quotations", "dictionary", "technical_docs", "manpages", "code"]

PYVER = "%d.%d" % sys.version_info[:2]
PYLIB = "/usr/lib/python" + PYVER
PYDOC_HTML = "/usr/share/doc/python%s/html" % PYVER
FORTUNE_DIR = "/usr/share/games/fortunes"
WORDNET_DIR = "/usr/share/wordnet"

SUBPROC_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "TZ": "UTC",
    "MANWIDTH": "80",
    "MANPAGER": "cat",
    "PAGER": "cat",
    "HOME": "/nonexistent",
}


def log(*a):
    print("[corpus]", *a, file=sys.stderr, flush=True)


def sha(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def nbytes(s):
    return len(s.encode("utf-8"))


# --------------------------------------------------------------------------
# text cleaning and splitting


def resolve_overstrike(line):
    """Emulate a terminal (like `col -b`) for lines containing backspaces."""
    buf = []
    pos = 0
    for ch in line:
        if ch == "\b":
            pos = max(0, pos - 1)
        elif pos < len(buf):
            # underline overstrike: keep the letter, not the underscore
            if ch != "_" or buf[pos] == " ":
                buf[pos] = ch
            pos += 1
        else:
            buf.append(ch)
            pos += 1
    return "".join(buf)


_BLANKS3 = re.compile(r"\n{4,}")


def clean_text(s, max_blank_lines=2):
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    if "\b" in s:
        s = "\n".join(resolve_overstrike(l) if "\b" in l else l for l in s.split("\n"))
    s = unicodedata.normalize("NFC", s)
    out = []
    for ch in s:
        if ch in "\n\t":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat == "Cs" or ch in "\ufeff\ufffe\uffff":
            continue
        out.append(ch)
    s = "".join(out)
    lines = [l.rstrip() for l in s.split("\n")]
    s = "\n".join(lines).strip("\n")
    s = re.sub(r"\n{%d,}" % (max_blank_lines + 2), "\n" * (max_blank_lines + 1), s)
    return s


def hard_split(line, limit):
    """Split one over-long line at character boundaries (UTF-8 byte limit)."""
    out, cur, cur_b = [], [], 0
    for ch in line:
        b = len(ch.encode("utf-8"))
        if cur_b + b > limit and cur:
            out.append("".join(cur))
            cur, cur_b = [], 0
        cur.append(ch)
        cur_b += b
    if cur:
        out.append("".join(cur))
    return out


def pack(units, sep, limit, balanced=True):
    """Greedily pack text units (joined by sep) into chunks of <= limit bytes.

    With balanced=True the target chunk size is total/ceil(total/limit) so a
    9 KB text becomes two ~4.5 KB chunks rather than 8 KB + 1 KB."""
    sep_b = nbytes(sep)
    sizes = [nbytes(u) for u in units]
    total = sum(sizes) + sep_b * max(0, len(units) - 1)
    if total <= limit:
        return [sep.join(units)] if units else []
    target = limit
    if balanced:
        target = min(limit, int(math.ceil(total / math.ceil(total / limit))) + 64)
    chunks, cur, cur_b = [], [], 0
    for u, b in zip(units, sizes):
        add = b + (sep_b if cur else 0)
        if cur and (cur_b + add > limit or cur_b >= target or cur_b + add > target + target // 4):
            chunks.append(sep.join(cur))
            cur, cur_b = [], 0
            add = b
        cur.append(u)
        cur_b += add
    if cur:
        chunks.append(sep.join(cur))
    return chunks


def split_text(text, limit=MAX_DOC_BYTES, balanced=True):
    """Split text at paragraph, then line, then character boundaries."""
    if nbytes(text) <= limit:
        return [text]
    paras = re.split(r"\n\s*\n", text)
    units = []
    for p in paras:
        if nbytes(p) <= limit:
            units.append(p)
            continue
        lines = []
        for l in p.split("\n"):
            lines.extend(hard_split(l, limit) if nbytes(l) > limit else [l])
        units.extend(pack(lines, "\n", limit, balanced))
    return pack(units, "\n\n", limit, balanced)


def merge_small(units, small, limit, sep="\n\n"):
    """Merge units smaller than `small` bytes into the following unit (a short
    tail into the previous one) as long as the result stays <= limit bytes."""
    def fits(a, b):
        return nbytes(a) + nbytes(sep) + nbytes(b) <= limit
    out = []
    for u in units:
        if out and nbytes(out[-1]) < small and fits(out[-1], u):
            out[-1] = out[-1] + sep + u
        else:
            out.append(u)
    if len(out) >= 2 and nbytes(out[-1]) < small and fits(out[-2], out[-1]):
        out[-2:] = [out[-2] + sep + out[-1]]
    return out


_MOJIBAKE = re.compile(r"[\u0080-\u00ff]{2,}")


def fix_mojibake(s):
    """Undo UTF-8 text that was decoded as Latin-1 (possibly twice), as found
    in a few fortune cookies ("donâ\x80\x99t" -> "don’t")."""
    def repl(m):
        t = m.group(0)
        for _ in range(3):
            try:
                u = t.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                break
            if u == t:
                break
            t = u
        return t
    prev = None
    while prev != s:
        prev, s = s, _MOJIBAKE.sub(repl, s)
    return s


class Doc:
    __slots__ = ("domain", "source", "group", "idx", "text")

    def __init__(self, domain, source, group, idx, text):
        self.domain, self.source, self.group, self.idx, self.text = domain, source, group, idx, text

    @property
    def key(self):
        return "%s|%s|%06d" % (self.domain, self.group, self.idx)


class DocSink:
    """Collects documents of one domain, cleaning and size-checking them."""

    def __init__(self, domain):
        self.domain = domain
        self.docs = []
        self.counter = {}

    def add(self, source, group, text, split=True, max_blank_lines=2):
        text = clean_text(text, max_blank_lines)
        parts = split_text(text) if split else [text]
        for p in parts:
            p = clean_text(p, max_blank_lines)
            if nbytes(p) < MIN_DOC_BYTES or not p.strip():
                continue
            assert nbytes(p) <= MAX_DOC_BYTES, (source, nbytes(p))
            i = self.counter.get(group, 0)
            self.counter[group] = i + 1
            self.docs.append(Doc(self.domain, source, group, i, p))


# --------------------------------------------------------------------------
# dpkg helpers


def dpkg_files(pkg):
    r = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True, env=SUBPROC_ENV)
    if r.returncode != 0:
        raise SystemExit("package %s is not installed (run tools/corpus/build.sh)" % pkg)
    return sorted(set(l for l in r.stdout.splitlines() if l.startswith("/")))


def dpkg_field(pkg, fmt):
    r = subprocess.run(["dpkg-query", "-W", "-f=" + fmt, pkg], capture_output=True, text=True,
                       env=SUBPROC_ENV)
    return r.stdout.strip() if r.returncode == 0 else ""


# --------------------------------------------------------------------------
# scripture: King James Bible via the `bible` program


def extract_scripture():
    sink = DocSink("scripture")
    r = subprocess.run(["bible", "-l0", "Gen1:1-Rev22:21"], capture_output=True, env=SUBPROC_ENV,
                       check=True)
    text = r.stdout.decode("utf-8")
    chapters = []  # (book, chapter, [(verse, text)])
    head_re = re.compile(r"^(\S.*) (\d+)$")
    verse_re = re.compile(r"^\s+(\d+) (.*)$")
    for line in text.split("\n"):
        if not line.strip():
            continue
        m = head_re.match(line)
        if m:
            chapters.append((m.group(1), int(m.group(2)), []))
            continue
        m = verse_re.match(line)
        if m and chapters:
            chapters[-1][2].append((int(m.group(1)), m.group(2).strip()))
            continue
        raise SystemExit("unexpected line from `bible`: %r" % line[:80])
    nverses = sum(len(c[2]) for c in chapters)
    if nverses != 31102:
        raise SystemExit("expected 31102 KJV verses, got %d" % nverses)
    for book, ch, verses in chapters:
        title = "%s %d" % (book, ch)
        lines = ["%d %s" % (v, t) for v, t in verses]
        parts = pack(lines, "\n", MAX_DOC_BYTES - 200)
        for k, part in enumerate(parts):
            head = title if k == 0 else "%s (continued)" % title
            sink.add("bible-kjv:" + title, "bible:" + title, head + "\n\n" + part, split=False)
    log("scripture: %d chapters, %d verses, %d docs" % (len(chapters), nverses, len(sink.docs)))
    return sink.docs


# --------------------------------------------------------------------------
# quotations: fortune cookie files

FORTUNE_SKIP = {"ascii-art"}  # pictures, not text


def extract_quotations():
    sink = DocSink("quotations")
    owners = {}
    for pkg in ("fortunes-min", "fortunes"):
        for f in dpkg_files(pkg):
            owners[f] = pkg
    files = []
    for path in sorted(owners):
        if os.path.dirname(path) != FORTUNE_DIR:
            continue
        name = os.path.basename(path)
        if name.endswith((".dat", ".u8")) or name in FORTUNE_SKIP:
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        files.append(path)
    for path in files:
        name = os.path.basename(path)
        with open(path, "rb") as fh:
            raw = fh.read().decode("utf-8", errors="replace")
        raw = fix_mojibake(raw.replace("\r\n", "\n"))
        entries = re.split(r"(?m)^%\n", raw + "\n")
        for k, e in enumerate(entries):
            if e.strip("\n%").strip():
                sink.add("%s:%s" % (owners[path], name), "fortune:%s:%05d" % (name, k),
                         e.rstrip("\n%"))
    log("quotations: %d files, %d docs" % (len(files), len(sink.docs)))
    return sink.docs


# --------------------------------------------------------------------------
# dictionary: WordNet 3.0 synset glosses

LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
]
POSNAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
WN_GROUP_BYTES = 1500


def extract_dictionary():
    sink = DocSink("dictionary")
    nsyn = 0
    for pos in ("noun", "verb", "adj", "adv"):
        path = os.path.join(WORDNET_DIR, "data." + pos)
        entries = []  # (lexname, line)
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                if line.startswith("  ") or not line.strip():
                    continue  # licence header
                body, _, gloss = line.partition(" | ")
                f = body.split()
                lex = LEXNAMES[int(f[1])]
                ss_type = f[2]
                wcnt = int(f[3], 16)
                words = []
                for k in range(wcnt):
                    w = f[4 + 2 * k]
                    w = re.sub(r"\((a|p|ip)\)$", "", w).replace("_", " ")
                    if w not in words:
                        words.append(w)
                gloss = gloss.strip()
                if not gloss:
                    continue
                entries.append((lex, "%s (%s): %s" % (", ".join(words), POSNAME[ss_type], gloss)))
        nsyn += len(entries)
        # group consecutive synsets of one lexicographer file into ~1.5 KB documents
        run_lex, run = None, []
        gi = 0

        def flush():
            nonlocal gi
            for chunk in pack(run, "\n", WN_GROUP_BYTES, balanced=True):
                src = "wordnet-base:data.%s:%s" % (pos, run_lex)
                sink.add(src, "wordnet:%s:%s:%05d" % (pos, run_lex, gi), chunk, split=False)
                gi += 1

        for lex, text in entries:
            if lex != run_lex and run:
                flush()
                run = []
            run_lex = lex
            run.append(text)
        if run:
            flush()
    log("dictionary: %d synsets, %d docs" % (nsyn, len(sink.docs)))
    return sink.docs


# --------------------------------------------------------------------------
# technical_docs: Python documentation HTML -> plain text

BLOCK_TAGS = {"p", "div", "section", "pre", "ul", "ol", "li", "dl", "dt", "dd", "table", "tr",
              "blockquote", "hr", "figure", "figcaption", "caption", "thead", "tbody", "aside",
              "h1", "h2", "h3", "h4", "h5", "h6"}
SKIP_CLASSES = {"headerlink", "toctree-wrapper", "contents", "sphinxsidebar", "related",
                "linenos", "footer"}
VOID_TAGS = {"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base", "source"}


class SphinxText(html.parser.HTMLParser):
    """Turns the main body of a Sphinx HTML page into plain text blocks.

    Produces self.blocks: list of (kind, payload) with kind in
    {"h", "p", "pre"}; for "h" the payload is (level, text); otherwise
    (indent, text, tight)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.body_depth = 0
        self.skip_tag = None
        self.skip_depth = 0
        self.inline = []
        self.pre_depth = 0
        self.heading = None
        self.indent = 0
        self.list_stack = []  # [kind, counter]
        self.prefix = ""
        self.tight = False
        self.blocks = []
        self.in_cell = False
        self.table_depth = 0

    # -- helpers
    def flush(self, tight=None):
        text = "".join(self.inline)
        self.inline = []
        if self.heading is not None:
            return
        text = re.sub(r"[ \t\n\r\f\v]+", " ", text).strip()
        if text:
            ind = " " * self.indent
            first = self.prefix
            self.prefix = ""
            body = first + text
            self.blocks.append(("p", (self.indent, ind + body, self.tight if tight is None else tight)))

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if not self.in_body:
            if tag == "div" and "body" in classes and a.get("role") == "main":
                self.in_body = True
                self.body_depth = 1
            return
        if tag == "div":
            self.body_depth += 1
        if self.skip_tag:
            if tag == self.skip_tag and tag not in VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in ("script", "style", "nav") or (classes & SKIP_CLASSES):
            if tag in VOID_TAGS:
                return
            self.skip_tag, self.skip_depth = tag, 1
            return
        if self.pre_depth:
            if tag == "pre":
                self.pre_depth += 1
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.flush()
            self.heading = (int(tag[1]), [])
            return
        if tag == "br":
            self.inline.append("\n")
            return
        if tag in ("td", "th"):
            if self.in_cell:
                self.inline.append(" | ")
            self.in_cell = True
            return
        if self.table_depth and tag in BLOCK_TAGS and tag not in ("table", "tr", "pre"):
            # paragraphs and lists inside table cells stay on the row's line
            self.inline.append(" ")
            return
        if tag == "table":
            self.table_depth += 1
        if tag in BLOCK_TAGS:
            self.flush()
        if tag == "pre":
            self.pre_depth = 1
            self.inline = []
        elif tag in ("ul", "ol"):
            self.list_stack.append([tag, 0])
        elif tag == "li":
            self.tight = True
            if self.list_stack:
                kind = self.list_stack[-1]
                kind[1] += 1
                self.prefix = "* " if kind[0] == "ul" else "%d. " % kind[1]
            else:
                self.prefix = "* "
            self.indent += 2
        elif tag == "dd" or tag == "blockquote":
            self.indent += 3
        elif tag == "dt":
            self.tight = False
        elif tag == "tr":
            self.tight = True
            self.in_cell = False

    def handle_endtag(self, tag):
        if not self.in_body:
            return
        if tag == "div":
            self.body_depth -= 1
            if self.body_depth == 0:
                self.flush()
                self.in_body = False
                return
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if self.pre_depth:
            if tag == "pre":
                self.pre_depth -= 1
                if self.pre_depth == 0:
                    code = "".join(self.inline).strip("\n")
                    self.inline = []
                    if code.strip():
                        ind = " " * (self.indent + 4)
                        code = "\n".join((ind + l) if l.strip() else "" for l in code.split("\n"))
                        self.blocks.append(("pre", (self.indent, code, False)))
            return
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and self.heading is not None:
            level, parts = self.heading
            self.heading = None
            text = re.sub(r"\s+", " ", "".join(parts)).strip()
            if text:
                self.blocks.append(("h", (level, text)))
            return
        if tag in ("td", "th"):
            return
        if self.table_depth and tag in BLOCK_TAGS and tag not in ("table", "tr", "pre"):
            self.inline.append(" ")
            return
        if tag == "table":
            self.table_depth = max(0, self.table_depth - 1)
        if tag in BLOCK_TAGS:
            self.flush()
        if tag in ("ul", "ol"):
            if self.list_stack:
                self.list_stack.pop()
            if not self.list_stack:
                self.tight = False
        elif tag == "li":
            self.indent = max(0, self.indent - 2)
        elif tag == "dd" or tag == "blockquote":
            self.indent = max(0, self.indent - 3)
        elif tag == "tr":
            self.in_cell = False
        elif tag == "table":
            self.tight = False

    def handle_data(self, data):
        if not self.in_body or self.skip_tag:
            return
        if self.heading is not None:
            self.heading[1].append(data)
        else:
            self.inline.append(data)


HEAD_UNDERLINE = {1: "=", 2: "=", 3: "-", 4: "~", 5: "~", 6: "~"}


def render_blocks(blocks):
    out = []
    prev_tight = False
    for kind, payload in blocks:
        if kind == "h":
            level, text = payload
            s = text + "\n" + HEAD_UNDERLINE[level] * min(len(text), 78)
            tight = False
        else:
            _, s, tight = payload
        if out:
            out.append("\n" if (tight and prev_tight) else "\n\n")
        out.append(s)
        prev_tight = tight
    return "".join(out)


PYDOC_SKIP = re.compile(r"^(genindex.*|search|py-modindex|contents|index|download|copyright|"
                        r"license|bugs|about|whatsnew/changelog)\.html$")


def extract_technical_docs():
    sink = DocSink("technical_docs")
    pkg = "python%s-doc" % PYVER
    pages = []
    for path in dpkg_files(pkg):
        if not path.startswith(PYDOC_HTML + "/") or not path.endswith(".html"):
            continue
        rel = path[len(PYDOC_HTML) + 1:]
        if rel.startswith("_") or PYDOC_SKIP.match(rel):
            continue
        pages.append((rel, path))
    for rel, path in pages:
        with open(path, "rb") as fh:
            src = fh.read().decode("utf-8", errors="replace")
        p = SphinxText()
        p.feed(src)
        p.close()
        # split the page into sections at headings of level <= 3
        sections, cur = [], []
        for b in p.blocks:
            if b[0] == "h" and b[1][0] <= 3 and cur:
                sections.append(cur)
                cur = []
            cur.append(b)
        if cur:
            sections.append(cur)
        texts = [render_blocks(s) for s in sections]
        # merge tiny consecutive sections, split huge ones
        for t in merge_small(texts, 1200, 6000):
            sink.add("%s:%s" % (pkg, rel), "pydoc:" + rel, t)
    log("technical_docs: %d pages, %d docs" % (len(pages), len(sink.docs)))
    return sink.docs


# --------------------------------------------------------------------------
# manpages: man-pages project pages rendered to text

MAN_PKGS = ("manpages", "manpages-dev")
_SGR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def render_man(path):
    r = subprocess.run(["man", "--no-hyphenation", "--no-justification", "-E", "UTF-8", "-l", path],
                       capture_output=True, env=SUBPROC_ENV)
    return r.returncode, r.stdout.decode("utf-8", errors="replace")


def extract_manpages(jobs):
    sink = DocSink("manpages")
    pages = []
    for pkg in MAN_PKGS:
        for path in dpkg_files(pkg):
            m = re.match(r"^/usr/share/man/man(\d)/([^/]+)\.(\d\w*)\.gz$", path)
            if not m or os.path.islink(path) or not os.path.isfile(path):
                continue
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", errors="replace")
            body = [l for l in head.split("\n") if l.strip() and not l.startswith(('.\\"', "'\\\""))]
            if body and body[0].startswith(".so ") and len(body) <= 2:
                continue  # alias page
            pages.append((pkg, path, m.group(2), m.group(3)))
    pages.sort(key=lambda x: x[1])
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        rendered = list(ex.map(lambda p: render_man(p[1]), pages))
    failed = 0
    for (pkg, path, name, sec), (rc, out) in zip(pages, rendered):
        out = _SGR.sub("", out)
        lines = clean_text(out).split("\n")
        if rc != 0 or len(lines) < 4:
            failed += 1
            continue
        # drop the running header (first line) and footer (last line)
        lines = lines[1:-1]
        sections, cur = [], []
        for l in lines:
            if l and not l[0].isspace():
                if cur:
                    sections.append(cur)
                cur = [l]
            elif cur or l.strip():
                cur.append(l)
        if cur:
            sections.append(cur)
        title = "%s(%s)" % (name, sec)
        rel = path[len("/usr/share/man/"):]
        units = []
        for s in sections:
            heading, body = s[0], "\n".join(s[1:]).strip("\n")
            text = heading + "\n" + body if body else heading
            if nbytes(text) > MAX_DOC_BYTES - 200:
                parts = split_text(body, MAX_DOC_BYTES - 400)
                units.append(heading + "\n" + parts[0])
                units.extend(heading + " (continued)\n" + p for p in parts[1:])
            else:
                units.append(text)
        for t in merge_small(units, 1200, MAX_DOC_BYTES - 100):
            sink.add("%s:%s" % (pkg, rel.replace(".gz", "")), "man:" + rel, title + "\n\n" + t)
    log("manpages: %d pages rendered (%d failed), %d docs" % (len(pages), failed, len(sink.docs)))
    if failed > len(pages) // 10:
        raise SystemExit("too many man pages failed to render")
    return sink.docs


# --------------------------------------------------------------------------
# code: the Python standard library source

CODE_TARGET = 6000


def code_segments(src_lines, nodes, start_line, end_line):
    """Cut lines [start_line, end_line] (1-based, inclusive) at statement
    boundaries; leading comments/blank lines belong to the next statement."""
    segs = []
    prev = start_line - 1
    for i, node in enumerate(nodes):
        first = node.lineno
        for d in getattr(node, "decorator_list", []):
            first = min(first, d.lineno)
        last = node.end_lineno
        if i == len(nodes) - 1:
            last = end_line
        if last <= prev:
            continue
        segs.append((prev + 1, last, node))
        prev = last
    if prev < end_line:
        if segs:
            a, _, n = segs[-1]
            segs[-1] = (a, end_line, n)
        else:
            segs.append((start_line, end_line, None))
    return segs


def code_units(src_lines, segs):
    """Turn segments into text units; oversized classes are split per method."""
    units = []
    for a, b, node in segs:
        text = "\n".join(src_lines[a - 1:b])
        if nbytes(text) <= MAX_DOC_BYTES:
            units.append(text)
            continue
        body = getattr(node, "body", None)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and len(body) > 1:
            header_end = body[0].lineno - 1
            for d in getattr(body[0], "decorator_list", []):
                header_end = min(header_end, d.lineno - 1)
            inner = code_segments(src_lines, body, header_end + 1, b)
            sub = code_units(src_lines, inner)
            if header_end >= a:
                head = "\n".join(src_lines[a - 1:header_end])
                if sub and nbytes(head) + nbytes(sub[0]) + 1 <= MAX_DOC_BYTES:
                    sub[0] = head + "\n" + sub[0]
                else:
                    sub.insert(0, head)
            units.extend(sub)
        else:
            # split at blank lines, then lines
            blocks = re.split(r"\n(?=\s*\n)", text)
            for blk in blocks:
                if nbytes(blk) <= MAX_DOC_BYTES:
                    units.append(blk)
                else:
                    units.extend(split_text(blk))
    return units


def is_generated_codec(path, head):
    return "/encodings/" in path and "generated from" in head


def extract_code():
    sink = DocSink("code")
    owners = {}
    for pkg in ("libpython%s-minimal" % PYVER, "libpython%s-stdlib" % PYVER):
        for f in dpkg_files(pkg):
            if f.startswith(PYLIB + "/") and f.endswith(".py"):
                owners[f] = pkg
    nfiles = 0
    skipped = 0
    for path in sorted(owners):
        rel = path[len(PYLIB) + 1:]
        parts = rel.split("/")
        if parts[0] in ("test", "idlelib", "pydoc_data", "site-packages", "dist-packages") or \
                any(p in ("tests", "idle_test") for p in parts) or parts[0].startswith("config-"):
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with tokenize.open(path) as fh:
                src = fh.read()
        except (SyntaxError, UnicodeDecodeError):
            skipped += 1
            continue
        if is_generated_codec(path, src[:3000]):
            continue
        src = clean_text(src, max_blank_lines=2)
        if not src.strip():
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            skipped += 1
            continue
        nfiles += 1
        lines = src.split("\n")
        source = "%s:%s" % (owners[path], rel)
        group = "py:" + rel
        if nbytes(src) <= MAX_DOC_BYTES:
            sink.add(source, group, src, split=False)
            continue
        segs = code_segments(lines, tree.body, 1, len(lines)) if tree.body else [(1, len(lines), None)]
        # segments are contiguous line ranges: joining them with "\n"
        # reproduces the file exactly (blank lines and comments included)
        units = code_units(lines, segs)
        for chunk in pack_code(units):
            sink.add(source, group, chunk, split=False)
    log("code: %d files, %d skipped, %d docs" % (nfiles, skipped, len(sink.docs)))
    return sink.docs


def pack_code(units):
    """Pack consecutive top-level statements into ~CODE_TARGET-byte chunks."""
    flat = []
    for u in units:
        flat.extend(split_text(u) if nbytes(u) > MAX_DOC_BYTES else [u])
    chunks, cur, cur_b = [], [], 0
    for u in flat:
        b = nbytes(u)
        if cur and (cur_b + b + 1 > MAX_DOC_BYTES or cur_b + b + 1 > CODE_TARGET):
            chunks.append("\n".join(cur))
            cur, cur_b = [], 0
        cur_b += b + (1 if cur else 0)
        cur.append(u)
    if cur:
        chunks.append("\n".join(cur))
    return chunks


# --------------------------------------------------------------------------
# sampling, splitting, writing


def dedupe(docs):
    seen = set()
    out = []
    for d in docs:
        h = sha(d.text)
        if h in seen:
            continue
        seen.add(h)
        out.append(d)
    return out, len(docs) - len(out)


def cap_domain(docs, cap):
    total = sum(nbytes(d.text) for d in docs)
    if total <= cap:
        return docs, total
    order = sorted(docs, key=lambda d: sha("%s:cap:%s" % (SEED, d.key)))
    keep, acc = set(), 0
    for d in order:
        if acc >= cap:
            break
        keep.add(d.key)
        acc += nbytes(d.text)
    return [d for d in docs if d.key in keep], total


def heldout_split(docs):
    """Hold out whole groups (chapter, page, module, ...) until ~5% of docs."""
    groups = {}
    for d in docs:
        groups.setdefault(d.group, []).append(d)
    target = int(round(HELDOUT_FRACTION * len(docs)))
    order = sorted(groups, key=lambda g: sha("%s:heldout:%s" % (SEED, g)))
    held, n = set(), 0
    slack = max(1, target // 10)
    for g in order:
        if n >= target:
            break
        if n + len(groups[g]) > target + slack:
            continue
        held.add(g)
        n += len(groups[g])
    train = [d for d in docs if d.group not in held]
    heldout = [d for d in docs if d.group in held]
    return train, heldout


def to_json(d):
    s = json.dumps({"text": d.text, "source": d.source, "domain": d.domain}, ensure_ascii=False)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def write_jsonl(path, docs):
    docs = sorted(docs, key=lambda d: sha("%s:order:%s" % (SEED, d.key)))
    data = "".join(to_json(d) + "\n" for d in docs).encode("utf-8")
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return data


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def fmt_int(n):
    return "{:,}".format(n)


def stats_md(split_docs, file_bytes, notes):
    lines = ["# Corpus statistics", "",
             "Generated by `tools/corpus/build.sh` (do not edit by hand).", "",
             "Characters are Unicode code points of `text`; bytes are its UTF-8 size "
             "(JSONL files are larger because of JSON escaping and the other fields).", ""]
    lines += ["| domain | split | documents | characters | bytes | mean bytes/doc | max bytes |",
              "|---|---|---:|---:|---:|---:|---:|"]
    tot = {}
    for dom in DOMAINS:
        for split in ("train", "heldout"):
            ds = [d for d in split_docs[split] if d.domain == dom]
            n = len(ds)
            c = sum(len(d.text) for d in ds)
            b = sum(nbytes(d.text) for d in ds)
            mx = max((nbytes(d.text) for d in ds), default=0)
            t = tot.setdefault(split, [0, 0, 0, 0])
            t[0] += n
            t[1] += c
            t[2] += b
            t[3] = max(t[3], mx)
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                dom, split, fmt_int(n), fmt_int(c), fmt_int(b), fmt_int(b // n if n else 0),
                fmt_int(mx)))
    for split in ("train", "heldout"):
        n, c, b, mx = tot[split]
        lines.append("| **all** | %s | %s | %s | %s | %s | %s |" % (
            split, fmt_int(n), fmt_int(c), fmt_int(b), fmt_int(b // n if n else 0), fmt_int(mx)))
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|"]
    for name in sorted(file_bytes):
        data = file_bytes[name]
        lines.append("| `%s` | %s | `%s` |" % (name, fmt_int(len(data)), hashlib.sha256(data).hexdigest()))
    lines += ["", "## Extraction", ""] + ["- " + n for n in notes] + [""]
    return "\n".join(lines)


# licence facts, checked against each package's /usr/share/doc/<pkg>/copyright
SOURCES = [
    {
        "domain": "scripture",
        "packages": ["bible-kjv", "bible-kjv-text"],
        "upstream": "Bible Retrieval System by Chip Chapin (Hewlett Packard, 1989-1993), "
                    "ftp.funet.fi:/pub/doc/religion/christian/Bible/unix; Debian maintenance "
                    "by Matthew Vernon",
        "licence": "Text: the King James Version (1611), **public domain** (the copyright file "
                   "states that its copyright \"is expired\"). Data files/BRS program: \"provided "
                   "for unrestricted use ... Users may copy, modify or distribute this file at "
                   "will\" (Chip Chapin); Debian's code changes and `randverse`: GPL-2+.",
        "expect": {"bible-kjv-text": ["King James", "unrestricted use"]},
        "extracted": "All 66 books, 1,189 chapters, 31,102 verses printed by "
                     "`bible -l0 Gen1:1-Rev22:21`; one document per chapter (\"Book N\" "
                     "heading, one numbered verse per line), long chapters (e.g. Psalm 119) "
                     "split at verse boundaries.",
    },
    {
        "domain": "quotations",
        "packages": ["fortunes", "fortunes-min"],
        "upstream": "fortune-mod 1.99.1 (BSD fortune(6) by Ken Arnold; Linux port by Florian "
                    "La Roche, Amy A. Lewis; data file `cookie` from Karl Lehenbauer)",
        "licence": "The package's copyright file gives the **BSD licence** (University of "
                   "California, 3-clause form: advertising clause deleted) for fortune-mod; the "
                   "cookie files themselves are collected quotations from many authors with no "
                   "separate per-quotation licence, distributed by Debian in `main` under that "
                   "notice. Only the files of these two packages are used (not the offensive "
                   "collection of `fortunes-off`).",
        "expect": {"fortunes": ["Regents of the University of California",
                                "Redistribution and use in source and binary forms"]},
        "extracted": "Every cookie file in /usr/share/games/fortunes except `ascii-art` "
                     "(pictures); one document per fortune (entries separated by `%`); "
                     "backspace overstrike resolved, exact duplicates removed.",
    },
    {
        "domain": "dictionary",
        "packages": ["wordnet-base"],
        "upstream": "WordNet 3.0, Cognitive Science Laboratory, Princeton University "
                    "(http://wordnet.princeton.edu/)",
        "licence": "**WordNet 3.0 licence** (permissive, BSD-like: \"Permission to use, copy, "
                   "modify and distribute this software and database ... for any purpose and "
                   "without fee or royalty is hereby granted\", provided the notice "
                   "\"WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.\" "
                   "and the disclaimer are kept; reproduced below). Debian packaging: GPL-2+.",
        "expect": {"wordnet-base": ["WordNet 3.0 Copyright 2006 by Princeton University",
                                    "License: WordNet3.0"]},
        "extracted": "Synset glosses from data.noun, data.verb, data.adj, data.adv: each synset "
                     "rendered as `word, synonym (part of speech): gloss; \"examples\"`; "
                     "consecutive synsets of one lexicographer file grouped into documents of "
                     "up to ~1.5 KB.",
        "notice_from": ("wordnet-base", "WordNet3.0"),
    },
    {
        "domain": "technical_docs",
        "packages": ["python3-doc", "python%s-doc" % PYVER],
        "upstream": "The Python documentation (https://docs.python.org/%s/), Python Software "
                    "Foundation" % PYVER,
        "licence": "**PSF License Agreement (Python Software Foundation License Version 2)**: "
                   "\"Python software and documentation are licensed under the PSF License "
                   "Agreement\"; code examples in the documentation are additionally available "
                   "under the Zero-Clause BSD licence (docs' license.html). Debian's copyright "
                   "file reproduces the Python licence stack (PSF-2, BeOpen, CNRI, CWI).",
        "expect": {"python%s-doc" % PYVER: ["PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2"]},
        "extracted": "The HTML manual under /usr/share/doc/python%s/html (tutorial, library, "
                     "reference, howto, faq, c-api, extending, using, installing, distributing, "
                     "whatsnew except the changelog), converted to plain text from the main "
                     "body only (navigation, indices and the licence/copyright pages dropped); "
                     "one document per section (headings of level 1-3), tiny sections merged, "
                     "long ones split at paragraphs. `python3-doc` is the dependency package "
                     "that installs it." % PYVER,
    },
    {
        "domain": "manpages",
        "packages": ["manpages", "manpages-dev"],
        "upstream": "The Linux man-pages project (https://www.kernel.org/pub/linux/docs/man-pages/), "
                    "rendered with man-db/groff",
        "licence": "**Various free licences, per page** (DEP-5 copyright file): mostly "
                   "**Linux-man-pages-copyleft** (verbatim copies and modified versions may be "
                   "made and distributed, keeping the notice), the rest GPL-2+, GPL-1+, "
                   "BSD-3-clause, BSD-4-clause, GPL-2, BSD-2-clause or Expat; see "
                   "/usr/share/doc/manpages/copyright for the page-by-page list. Page files per "
                   "licence in that file: %s.",
        "licence_counts": "manpages",
        "expect": {"manpages": ["Linux-man-pages-copyleft"], "manpages-dev": ["Linux-man-pages-copyleft"]},
        "extracted": "Every page of sections 1-8 shipped by these two packages (alias pages "
                     "that only `.so`-include another page skipped), rendered with "
                     "`man --no-hyphenation --no-justification -E UTF-8 -l` at MANWIDTH=80 "
                     "in the C.UTF-8 locale; running header/footer dropped; one document per "
                     "section (NAME, SYNOPSIS, DESCRIPTION, ...; short ones merged, long ones "
                     "split at paragraphs), each prefixed with `name(section)`.",
    },
    {
        "domain": "code",
        "packages": ["libpython%s-stdlib" % PYVER, "libpython%s-minimal" % PYVER],
        "upstream": "CPython %s standard library (https://www.python.org/), Python Software "
                    "Foundation" % PYVER,
        "licence": "**PSF License Agreement (Python Software Foundation License Version 2)** "
                   "for Python itself; a few incorporated modules carry additional permissive "
                   "notices listed in the copyright file (e.g. MIT/BSD-style, zlib-style).",
        "expect": {"libpython%s-stdlib" % PYVER: ["PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2"]},
        "extracted": "The .py files of %s shipped by these packages, excluding test/, "
                     "idlelib/, pydoc_data/ and the table-driven generated codecs in "
                     "encodings/; files up to 8 KB are one document, larger ones are cut at "
                     "top-level statement boundaries (big classes at method boundaries, found "
                     "with `ast`) and packed into chunks of up to ~6 KB." % PYLIB,
    },
]


def copyright_licence_text(pkg, name):
    """The text of a `License: <name>` paragraph of a DEP-5 copyright file."""
    txt = open("/usr/share/doc/%s/copyright" % pkg, encoding="utf-8").read()
    m = re.search(r"^License: %s\n((?: .*\n?)+)" % re.escape(name), txt, re.M)
    if not m:
        raise SystemExit("licence %s not found in %s's copyright file" % (name, pkg))
    lines = [l[1:] for l in m.group(1).rstrip("\n").split("\n")]
    return "\n".join("" if l == "." else l for l in lines)


def copyright_licence_counts(pkg):
    """Files per licence in a DEP-5 copyright file, most common first."""
    txt = open("/usr/share/doc/%s/copyright" % pkg, encoding="utf-8").read()
    counts = {}
    for para in txt.split("\n\n"):
        m = re.search(r"^Files:(.*?)(?=^\S)", para, re.S | re.M)
        lic = re.search(r"^License: (.*)$", para, re.M)
        if m and lic:
            counts[lic.group(1)] = counts.get(lic.group(1), 0) + len(m.group(1).split())
    return ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_licences(notes):
    for s in SOURCES:
        for pkg, needles in s.get("expect", {}).items():
            path = "/usr/share/doc/%s/copyright" % pkg
            try:
                txt = open(path, encoding="utf-8", errors="replace").read()
            except OSError:
                raise SystemExit("missing %s" % path)
            for n in needles:
                if n not in txt:
                    raise SystemExit("licence check failed: %r not in %s -- re-check SOURCES.md" % (n, path))


def copy_copyright_files(out):
    """Copy each package's copyright file verbatim to <out>/licenses/ (one copy
    per distinct content); returns {package: relative path}."""
    lic_dir = os.path.join(out, "licenses")
    os.makedirs(lic_dir, exist_ok=True)
    by_hash, where = {}, {}
    for s in SOURCES:
        for pkg in s["packages"]:
            with open("/usr/share/doc/%s/copyright" % pkg, "rb") as fh:
                data = fh.read()
            h = hashlib.sha256(data).hexdigest()
            if h not in by_hash:
                rel = "licenses/%s.copyright" % pkg
                tmp = os.path.join(out, rel) + ".tmp"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, os.path.join(out, rel))
                by_hash[h] = rel
            where[pkg] = by_hash[h]
    return where


def sources_md(domain_info, copies):
    lines = ["# Sources and licences of the bundled corpus", "",
             "`data/corpus/` is generated by `tools/corpus/build.sh` from Debian 12 packages; "
             "this file is regenerated with it. Each record's `source` field names the Debian "
             "package and the file (or chapter, page, module) it came from. Licence statements "
             "below were read from each package's `/usr/share/doc/<package>/copyright` (the "
             "build checks that those files still contain the quoted licence names), and each "
             "copyright file is copied verbatim under `licenses/`, which keeps the copyright "
             "notices and permission texts that the BSD, PSF, WordNet and man-pages licences "
             "ask redistributors to preserve.", "",
             "Attribution for the formatted manual pages (the Linux-man-pages-copyleft licence "
             "requires formatted versions distributed without their source to acknowledge the "
             "copyright and authors): the pages are by the Linux man-pages project and the "
             "authors named page by page in `licenses/manpages.copyright`; their source is "
             "Debian's `manpages` / `manpages-dev` packages (and "
             "https://www.kernel.org/pub/linux/docs/man-pages/). Pages under GPL-1+/GPL-2(+) "
             "stay under those licences in this processed form.", "",
             "| domain | Debian packages (version) | licence |", "|---|---|---|"]
    for s in SOURCES:
        pv = ", ".join("`%s` %s" % (p, dpkg_field(p, "${Version}") or "?") for p in s["packages"])
        short = re.findall(r"\*\*(.+?)\*\*", s["licence"])
        lines.append("| %s | %s | %s |" % (s["domain"], pv, "; ".join(short)))
    lines.append("")
    for s in SOURCES:
        lines += ["## %s" % s["domain"], ""]
        for p in s["packages"]:
            src = dpkg_field(p, "${source:Package}")
            lines.append("- Package: `%s` version `%s` (source package `%s`); "
                         "`/usr/share/doc/%s/copyright` is copied verbatim to [`%s`](%s)"
                         % (p, dpkg_field(p, "${Version}"), src, p, copies[p], copies[p]))
        lines.append("- Upstream: " + s["upstream"])
        lic = s["licence"]
        if s.get("licence_counts"):
            lic = lic % copyright_licence_counts(s["licence_counts"])
        lines.append("- Licence: " + lic)
        lines.append("- Extracted: " + s["extracted"])
        info = domain_info.get(s["domain"])
        if info:
            lines.append("- Kept in the corpus: " + info)
        if s.get("notice_from"):
            pkg, name = s["notice_from"]
            notice = copyright_licence_text(pkg, name)
            lines += ["", "Licence notice (`License: %s` in /usr/share/doc/%s/copyright):" % (name, pkg),
                      ""] + [("> " + l).rstrip() for l in notice.split("\n")]
        lines.append("")
    lines += ["## Tools used (not redistributed)", "",
              "- `man-db` %s and `groff-base` %s render the manual pages; `bible-kjv` %s's "
              "`bible` program decodes the compressed KJV text." % (
                  dpkg_field("man-db", "${Version}"), dpkg_field("groff-base", "${Version}"),
                  dpkg_field("bible-kjv", "${Version}")), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--jobs", type=int, default=2, help="parallel man renderers")
    ap.add_argument("--cap-bytes", type=int, default=DOMAIN_CAP_BYTES)
    args = ap.parse_args()

    if not sys.executable.startswith("/usr/bin/"):
        log("warning: not running Debian's /usr/bin/python3 (%s)" % sys.executable)
    os.makedirs(args.out, exist_ok=True)
    notes = []
    check_licences(notes)

    extractors = {
        "scripture": extract_scripture,
        "quotations": extract_quotations,
        "dictionary": extract_dictionary,
        "technical_docs": extract_technical_docs,
        "manpages": lambda: extract_manpages(args.jobs),
        "code": extract_code,
    }
    all_train, all_held = [], []
    domain_info = {}
    for dom in DOMAINS:
        docs = extractors[dom]()
        docs, ndup = dedupe(docs)
        kept, total = cap_domain(docs, args.cap_bytes)
        train, held = heldout_split(kept)
        kb = sum(nbytes(d.text) for d in kept)
        info = "%s of %s documents (%s of %s text bytes, sampled by hashed document key); " \
               "%d exact duplicates dropped" % (fmt_int(len(kept)), fmt_int(len(docs)),
                                                fmt_int(kb), fmt_int(total), ndup)
        domain_info[dom] = info
        notes.append("%s: %s" % (dom, info))
        log("%s: %s; train %d / heldout %d" % (dom, info, len(train), len(held)))
        all_train += train
        all_held += held

    for d in all_train + all_held:
        assert d.text and d.text == unicodedata.normalize("NFC", d.text)
        assert nbytes(d.text) <= MAX_DOC_BYTES
    file_bytes = {
        "train.jsonl": write_jsonl(os.path.join(args.out, "train.jsonl"), all_train),
        "heldout.jsonl": write_jsonl(os.path.join(args.out, "heldout.jsonl"), all_held),
    }
    notes += ["seed `%s`; documents at most %d UTF-8 bytes; held-out split: whole source units "
              "(chapter, fortune, synset group, doc page, man page, module) chosen by hashed "
              "key until ~%d%% of each domain's documents; records ordered by hashed key."
              % (SEED, MAX_DOC_BYTES, int(HELDOUT_FRACTION * 100)),
              "Python %s (%s) ran the build." % (PYVER, sys.executable)]
    write_text(os.path.join(args.out, "STATS.md"),
               stats_md({"train": all_train, "heldout": all_held}, file_bytes, notes))
    copies = copy_copyright_files(args.out)
    write_text(os.path.join(args.out, "SOURCES.md"), sources_md(domain_info, copies))
    log("wrote %s: train %d docs, heldout %d docs" % (args.out, len(all_train), len(all_held)))


if __name__ == "__main__":
    main()
