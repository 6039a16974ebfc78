"""Text normalisation used by the benchmark metrics.

Two independent pieces live here:

* :func:`normalize_vqa_answer`: the answer normalisation of the official VQA v2 evaluation script
  (``vqaEval.py`` of GT-Vision-Lab/VQA, also used verbatim by OpenFlamingo). Its quirks are reproduced on
  purpose, because they change scores: see the function's docstring.
* :func:`ptb_like_tokenize`: a pure-Python stand-in for the Stanford PTBTokenizer (CoreNLP 3.4.1) that
  pycocoevalcap runs through Java before computing CIDEr/BLEU/ROUGE. It is used only when Java is missing.
"""

from __future__ import annotations

import re

__all__ = [
    "PTB_REMOVED_PUNCTUATION",
    "normalize_vqa_answer",
    "process_digit_article",
    "process_punctuation",
    "ptb_like_tokenize",
]

# --------------------------------------------------------------------------------------------------
# VQA v2 answer normalisation
# --------------------------------------------------------------------------------------------------

# Characters handled by the official processPunctuation, in its order. Apostrophes and periods are not
# in the list: apostrophes survive, periods get their own rule below.
_VQA_PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

# The official pattern is "(?!<=\d)(\.)(?!\d)". Its first group is a negative *lookahead* for the literal
# text "<=" plus a digit (a mistyped lookbehind), which can never match where a period starts, so the
# effective rule is only "a period not followed by a digit": "1.5" and ".5" keep theirs, "5." loses it.
_VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# A comma between two digits ("3,000"). When it occurs anywhere in the answer, every listed punctuation
# character is deleted outright instead of being replaced by a space.
_VQA_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
# The official script calls periodStrip.sub("", text, re.UNICODE): the flag lands in the `count`
# parameter, so at most re.UNICODE (= 32) periods are removed. Reproduced for exactness.
_VQA_PERIOD_STRIP_COUNT = int(re.UNICODE)

_VQA_NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_VQA_ARTICLES = frozenset({"a", "an", "the"})


def _build_vqa_contractions() -> dict[str, str]:
    """The official contraction table: a spelling with missing apostrophe(s) -> the written form.

    Generated from the written forms: one with a single apostrophe is looked up without it
    ("dont" -> "don't"); one with several apostrophes is looked up with exactly one of them missing
    ("couldnt've" and "couldn'tve" -> "couldn't've"), which is how the official table is made. Only
    forms whose apostrophe-free spelling is not an ordinary word are listed (no "we'll" -> "well").
    The official table also holds "Id've", "I'dve", "Im" and "Ive" with a capital I; lookups happen
    after lower-casing, so those can never fire and are left out without changing any result.
    """
    written_forms = (
        "ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's how'd "
        "how'll how's isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock "
        "oughtn't shan't should've shouldn't somebody'll somebody's someone'd someone'll someone's "
        "something'd something'll that's there'd there're there's they'd they'll they're they've 'twas "
        "wasn't we've weren't what'll what're what's what've when's where'd where's where've who'd who'll "
        "who's who've why'll why're why's won't would've wouldn't y'all you'd you'll you're you've "
        "couldn't've hadn't've he'd've it'd've mightn't've she'd've shouldn't've somebody'd've "
        "someone'd've something'd've there'd've they'd've we'd've who'd've wouldn't've you'd've "
        "y'all'll y'all'd've 'ow's'at"
    ).split()
    table: dict[str, str] = {}
    for written in written_forms:
        cuts = [i for i, char in enumerate(written) if char == "'"]
        if len(cuts) == 1:
            table[written.replace("'", "")] = written
        else:
            for cut in cuts:
                table[written[:cut] + written[cut + 1 :]] = written
    # Entries of the official table that map a word to itself, and one that maps it the wrong way round.
    table.update({"let's": "let's", "she's": "she's", "somebody'd": "somebodyd"})
    return table


_VQA_CONTRACTIONS: dict[str, str] = _build_vqa_contractions()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation`` step of the VQA evaluation.

    For each character of the official list, in order: it is deleted when it has a space on either side
    *in the original text* (``"a - b"`` -> ``"a  b"``) or when the original text contains a comma
    between two digits anywhere (``"3,000"`` -> ``"3000"``; then every listed character is deleted);
    otherwise it is replaced by a space (``"t-shirt"`` -> ``"t shirt"``). Finally, at most 32 periods
    that are not followed by a digit are deleted (``"5."`` -> ``"5"``, ``"1.5"`` unchanged).
    """
    out = text
    has_digit_comma = _VQA_DIGIT_COMMA.search(text) is not None
    for char in _VQA_PUNCTUATION:
        if has_digit_comma or (char + " ") in text or (" " + char) in text:
            out = out.replace(char, "")
        else:
            out = out.replace(char, " ")
    return _VQA_PERIOD_STRIP.sub("", out, count=_VQA_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle`` step: lower-case, split on whitespace, map number words
    ("two" -> "2", "none" -> "0"; zero to ten only), drop the articles a/an/the, then restore
    apostrophes of known contractions ("dont" -> "don't"), and join with single spaces."""
    words = [_VQA_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _VQA_ARTICLES]
    return " ".join(_VQA_CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise a VQA answer exactly as the official VQA v2 evaluation (and OpenFlamingo) does.

    Steps: newlines and tabs become spaces and the ends are stripped; then :func:`process_punctuation`;
    then :func:`process_digit_article`. Examples: ``"Two dogs."`` -> ``"2 dogs"``, ``"yes!"`` -> ``"yes"``,
    ``"the cat"`` -> ``"cat"``, ``"dont"`` -> ``"don't"``, ``"3,000"`` -> ``"3000"``, ``"1.5"`` ->
    ``"1.5"``, ``"t-shirt"`` -> ``"t shirt"``.

    Deliberately kept quirks of the official script: the digit-comma rule switches *all* punctuation to
    deletion (``"hi-fi 1,000"`` -> ``"hifi 1000"``); only periods not followed by a digit are removed (the
    "not preceded by a digit" half of the official regex never takes effect); at most 32 periods are
    removed; number words above ten are not mapped; case is folded only in the last step.
    """
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


# --------------------------------------------------------------------------------------------------
# PTB-like caption tokenisation (fallback for pycocoevalcap's Java PTBTokenizer)
# --------------------------------------------------------------------------------------------------

#: Tokens that pycocoevalcap's ``PTBTokenizer`` drops after tokenising (its ``PUNCTUATIONS`` list, copied
#: as is). Note that the Java tokenizer runs with ``-lowerCase``, so brackets come out as ``-lrb-``,
#: ``-rrb-`` and so on, which do *not* equal the upper-case entries here: pycocoevalcap keeps them, and so
#: does :func:`ptb_like_tokenize`.
PTB_REMOVED_PUNCTUATION: frozenset[str] = frozenset(
    {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
)

# Abbreviations whose period PTBTokenizer 3.4.1 keeps as part of the word, in any letter case
# (checked against the Java tokenizer: titles, months, days, US states, company suffixes, ...).
_PTB_ABBREVIATIONS = (
    "mr|mrs|ms|drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|mt|capt|"
    "ste?|ave|pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|mme?|mmes|mlles?|"
    "jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|mon|tues?|wed|thu|thurs|fri|"
    "ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kans?|ky|md|mich|minn|mo|mont|neb|nev|okla|penn|tenn|"
    "va|vt|wisc?|wyo|"
    "inc|cos?|corp|pp?tys?|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys|invt|elec|natl|m[ft]g|"
    "jr|sr|bros|blvd|rd|esq|ft|bldg|est|tel|ext|sq|etc|al|seq|vs|alex|wm|jos|cie|cf|treas"
)
# State abbreviations that are also ordinary words: kept only when capitalised ("Mass." vs "mass.").
_PTB_CAPITALISED_ABBREVIATIONS = "Az|Ark|Del|Ill|La|Mass|Miss|Ore|Pa|Tex|Wash"
# Abbreviations that keep their period only before a number ("no. 5", "fig. 3").
_PTB_NUMBER_ABBREVIATIONS = "no|nos|figs?|ca|art|prop|pp|op"

# Combining marks (as in a decomposed "e\u0301") count as part of a word, as in PTB.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_LETTER = rf"(?:[^\W\d_]|[{_MARKS}])"
_ALNUM = rf"(?:[^\W_]|[{_MARKS}])"
# One word piece: a number with internal separators ("1,000", "3.5", "5:30"), or letters/digits that may
# continue through ".", "!" or "?" when a letter follows ("dog.cat", "hello!world", as PTB does).
_PIECE = rf"(?:\d+(?:[.,:]\d+)+|{_ALNUM}+(?:[.!?]{_LETTER}{_ALNUM}*)*)"

# Ordered alternatives: the first that matches at the current position wins.
_PTB_TOKEN = re.compile(
    rf"""
    (?P<url>https?://[^\s"<>|()]*[^\s"<>|.!?(){{}},-]
        | www\.(?:[^\s"<>|.!?(){{}},]+\.)+[A-Za-z]{{2,4}}(?:/[^\s"<>|()]*[^\s"<>|.!?(){{}},-])?)
    | (?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
    | (?P<handle>[@#]{_LETTER}\w*)
    | (?P<sgml></?[A-Za-z][^\s<>]*>)
    | (?P<acronym>[A-Za-z](?:\.[A-Za-z])+\.(?!{_ALNUM}))
    | (?P<abbrev>(?:(?i:{_PTB_ABBREVIATIONS})|{_PTB_CAPITALISED_ABBREVIATIONS})\.(?!{_ALNUM})
        | [A-Za-z]\.(?!{_ALNUM})(?!\s+[A-Z][a-z])
        | (?i:{_PTB_NUMBER_ABBREVIATIONS})\.(?=\s+\d))
    | (?P<ampersand>[A-Z]+&[A-Z]+(?!{_ALNUM}))
    | (?P<apostrophe_word>[yY]'(?=all\b)
        | [A-HJ-XZa-hj-xz]'{_LETTER}{{2,}}
        | {_LETTER}*[aeiouyAEIOUY]'[aeiouAEIOU]{_LETTER}*)
    | (?P<before_nt>{_ALNUM}+(?=[nN]'[tT](?!{_ALNUM})))
    | (?P<nt>[nN]'[tT](?!{_ALNUM}))
    | (?P<fraction>\d{{1,4}}/\d{{1,4}}(?!{_ALNUM}))
    | (?P<word>{_PIECE}(?:[-/]{_PIECE})*)
    | (?P<signed_number>[-+](?:\d+(?:[.,:]\d+)*|\.\d+)|\.\d+)
    | (?P<clitic>'(?i:s|m|d|re|ve|ll)(?!{_ALNUM})
        | '[nN]'
        | '[tT](?=(?i:is|was)\b)
        | '(?i:em|til|till|cause)(?!{_ALNUM})
        | '\d\d{_ALNUM}*+(?![.,:]\d))
    | (?P<quote>'+|`+|")
    | (?P<periods>\.+)
    | (?P<marks>[!?]+)
    | (?P<dashes>-+)
    | (?P<bracket>[()\[\]{{}}])
    | (?P<other>\S)
    """,
    re.VERBOSE,
)

_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
# PTB splits these words after their third letter ("gonna" -> "gon na", "cannot" -> "can not").
_PTB_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "wanna", "lemme", "gimme"})
_UNICODE_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ", "\u2026": " ... ", "\u00a0": " ",
    }
)  # fmt: skip


def _ptb_token_text(kind: str, text: str) -> list[str]:
    """The token(s) PTB emits for one scanner match, before lower-casing."""
    if kind == "quote":
        return ["''"]  # opening (``) or closing ('') quote: both are removed afterwards
    if kind == "periods":
        return ["." if len(text) == 1 else "..."]
    if kind == "dashes":
        return ["-" if len(text) == 1 else "--"]
    if kind == "bracket":
        return [_PTB_BRACKETS[text]]
    if kind == "word" and text.lower() in _PTB_SPLIT_WORDS:
        return [text[:3], text[3:]]
    return [text]


def ptb_like_tokenize(caption: str) -> str:
    """Tokenise a caption the way pycocoevalcap's Java ``PTBTokenizer`` does, in pure Python.

    Output: lower-cased tokens joined by single spaces, with the tokens of
    :data:`PTB_REMOVED_PUNCTUATION` dropped. Behaviour copied from Stanford PTBTokenizer 3.4.1 (as run by
    pycocoevalcap with ``-preserveLines -lowerCase``):

    * sentence punctuation is split off and removed: ``. , ; : ? !``, quotes (``"`` and ``'`` used as
      quotes, curly quotes), ``-``, ``--`` (also en/em dashes) and ``...``; runs such as ``!!!`` or ``?!``
      stay as one (kept) token, as in PTB;
    * clitics are split: ``isn't`` -> ``is n't``, ``can't`` -> ``ca n't``, ``dog's`` -> ``dog 's``,
      ``they've`` -> ``they 've``; ``gonna`` -> ``gon na``, ``cannot`` -> ``can not``; ``o'clock`` and
      ``ma'am`` stay whole;
    * numbers keep internal separators (``3.5``, ``1,000``, ``5:30``, ``1/2``); hyphenated and
      slash-joined words stay whole (``t-shirt``, ``10-year-old``, ``cats/dogs``);
    * known abbreviations, acronyms and single letters keep their period (``mr.``, ``st.``, ``u.s.``,
      ``plan b.``; a single letter loses it before a capitalised word, a sentence start);
    * brackets become ``-lrb-``, ``-rrb-``, ``-lsb-``, ... and are kept (pycocoevalcap's removal list
      has them upper-case only);
    * other symbols (``$ % # & * + =``) become separate tokens; URLs and e-mail addresses stay whole;
      characters outside the Basic Multilingual Plane (emoji) are dropped.

    It was checked token for token against the Java tokenizer on caption-style text (see the tests);
    unusual input (rare abbreviations, exotic Unicode, SGML) may still tokenise differently.
    """
    text = " ".join(caption.splitlines()).translate(_UNICODE_PUNCTUATION)
    text = "".join(char for char in text if ord(char) <= 0xFFFF)
    tokens: list[str] = []
    for match in _PTB_TOKEN.finditer(text):
        kind = match.lastgroup
        assert kind is not None  # every alternative is a named group
        tokens.extend(_ptb_token_text(kind, match.group()))
    return " ".join(tok.lower() for tok in tokens if tok not in PTB_REMOVED_PUNCTUATION)
