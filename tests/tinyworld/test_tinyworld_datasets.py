"""Tiny-world training sets and LM corpus: determinism, decodable shards, document invariants, no leaks.

"Leaks" are the evaluation formats ("Question: ... Answer:", "Output:"), held-out template wordings and the
made-up words reserved for the novel-word evaluation: none may appear in any training text or corpus line.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from flamingo_vlm.data.formats import InterleavedSample, PairSample, VideoSample, decode_sample
from flamingo_vlm.data.stream import expand_shards, read_raw_records
from flamingo_vlm.tinyworld import TEMPLATES, Shape, templates, vocabulary
from flamingo_vlm.tinyworld.pretrain import _pairs
from flamingo_vlm.tinyworld.words import is_novel
from flamingo_vlm.tinyworld.corpus import (
    _COLOUR_FACTS,
    _COLOUR_FORMS,
    _FACT_FORMS,
    _SHAPE_FACTS,
    CHUNK_SEPARATOR,
    LM_DOC_TYPES,
    iter_tokenizer_text,
    lm_document,
    read_lm_corpus,
    write_lm_corpus,
)
from flamingo_vlm.tinyworld.datasets import (
    DOC_TYPES,
    EVAL_CAPTION_FORMAT,
    EVAL_QA_FORMAT,
    NOVEL_WORD_PHRASES,
    TRAIN_QA_FORMATS,
    build_training_sets,
    caption_prefix,
    document_qa_format,
    fill_qa,
    has_eval_format,
    heldout_fragments,
    interleaved_document,
    reserved_eval_words,
    sample_rng,
    training_words,
    uses_heldout_wording,
)

COUNTS = {"num_pairs": 24, "num_videos": 6, "num_documents": 48}
WORD = re.compile(r"[a-z]+")


def _build(root: Path, seed: int) -> dict[str, str]:
    return build_training_sets(root, seed=seed, image_size=32, samples_per_shard=10, progress=False, **COUNTS)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _build(tmp_path_factory.mktemp("train"), seed=3)


def _raws(pattern: str) -> list[dict]:
    return [raw for url in expand_shards(pattern) for raw in read_raw_records(url)]


def _docs(shards: dict[str, str]) -> list[dict]:
    return [json.loads(raw["json"]) for raw in _raws(shards["interleaved"])]


def _all_training_texts(shards: dict[str, str]) -> list[str]:
    texts = [raw["txt"].decode() for kind in ("pairs", "video") for raw in _raws(shards[kind])]
    return texts + [s for doc in _docs(shards) for s in doc["text_list"]]


def _template_regex(text: str) -> re.Pattern[str]:
    """A template as a regex (slots match anything; first letter either case, as long captions are capitalised)."""
    parts = re.split(r"\{[^}]*\}", text)
    body = ".+".join(re.escape(p) for p in parts)
    if body and body[0].isalpha():
        body = f"[{body[0].lower()}{body[0].upper()}]" + body[1:]
    return re.compile(f"^{body}$", re.DOTALL)


# --- the leak checkers themselves ------------------------------------------------------------------------


def test_leak_checkers_flag_what_they_should_and_nothing_else() -> None:
    assert has_eval_format(EVAL_QA_FORMAT.format(question="what colour is the star?", answer="red"))
    assert has_eval_format(EVAL_CAPTION_FORMAT.format(caption="a red star"))
    for fmt in TRAIN_QA_FORMATS:
        assert not has_eval_format(fmt.format(question="what colour is the star?", answer="red")), fmt
    # Every held-out template is caught; no training template is.
    for t in TEMPLATES:
        assert uses_heldout_wording(t.text) == t.held_out, t.id
    assert heldout_fragments()
    assert "Question: {question} Answer: {answer}" not in TRAIN_QA_FORMATS


def test_training_words_avoid_the_reserved_pool() -> None:
    pool = reserved_eval_words()
    assert len(pool) == 64
    rng = np.random.default_rng(0)
    words = [w for _ in range(300) for w in training_words(rng, 4)]
    assert not pool & set(words)
    assert len(set(words)) > 300  # fresh words, not a small fixed list


# --- shards ----------------------------------------------------------------------------------------------


def test_every_shard_decodes_as_its_kind(shards: dict[str, str]) -> None:
    seen = Counter()
    for kind, cls in (("pairs", PairSample), ("video", VideoSample), ("interleaved", InterleavedSample)):
        for raw in _raws(shards[kind]):
            sample = decode_sample(kind, raw, max_images=None)
            assert isinstance(sample, cls)
            seen[kind] += 1
            if kind == "pairs":
                assert sample.image.size == (32, 32) and sample.text
            elif kind == "video":
                assert len(sample.frames) == 8 and sample.text
            else:
                assert 1 <= len(sample.images) <= 8
    assert seen == {"pairs": 24, "video": 6, "interleaved": 48}
    assert len(expand_shards(shards["pairs"])) == 3  # 24 samples at 10 per shard
    for pattern in shards.values():  # plain ustar members: no PAX header for readers to parse (tar_writer)
        with tarfile.open(expand_shards(pattern)[0]) as archive:
            assert all(member.pax_headers == {} for member in archive.getmembers())


def test_same_seed_gives_identical_shards_and_another_seed_differs(shards, tmp_path: Path) -> None:
    def digests(patterns: dict[str, str]) -> dict[str, list[str]]:
        return {k: [hashlib.sha256(Path(u).read_bytes()).hexdigest() for u in expand_shards(p)]
                for k, p in patterns.items()}

    again = _build(tmp_path / "again", seed=3)
    other = _build(tmp_path / "other", seed=4)
    assert digests(again) == digests(shards)
    for kind in shards:
        assert set(digests(other)[kind]).isdisjoint(digests(shards)[kind]), kind


def test_rebuild_with_fewer_samples_leaves_no_stale_shards(tmp_path: Path) -> None:
    build_training_sets(tmp_path, seed=0, num_pairs=25, num_videos=0, num_documents=0, image_size=16,
                        samples_per_shard=5, progress=False)
    patterns = build_training_sets(tmp_path, seed=0, num_pairs=6, num_videos=0, num_documents=0, image_size=16,
                                   samples_per_shard=5, progress=False)
    assert sorted(p.name for p in tmp_path.glob("pairs-*.tar")) == ["pairs-000000.tar", "pairs-000001.tar"]
    assert patterns == {"pairs": str(tmp_path / "pairs-{000000..000001}.tar")}


def test_no_training_text_leaks_eval_formats_heldout_wordings_or_eval_words(shards) -> None:
    texts = _all_training_texts(shards)
    assert len(texts) > 100
    pool = reserved_eval_words()
    for text in texts:
        assert not has_eval_format(text), text
        assert not uses_heldout_wording(text), text
        assert not pool & set(WORD.findall(text)), text
    # The shard bytes as a whole (JSON metadata included) hold no reserved word either.
    blob = b" ".join(v for k in shards for raw in _raws(shards[k]) for n, v in raw.items() if n in ("json", "txt"))
    assert not pool & set(WORD.findall(blob.decode()))


def test_interleaved_documents_are_mmc4_with_valid_image_positions(shards) -> None:
    docs = _docs(shards)
    types = Counter(doc["doc_type"] for doc in docs)
    assert set(types) == set(DOC_TYPES)
    for doc in docs:
        texts, infos = doc["text_list"], doc["image_info"]
        assert [i["image_name"] for i in infos] == [f"img{k}.png" for k in range(len(infos))]
        indices = [i["matched_text_index"] for i in infos]
        assert all(0 <= j < len(texts) for j in indices)
        assert indices == sorted(set(indices))  # one image per sentence, in document order
        assert all(t.strip() for t in texts)
        # Short enough that a 256-token window (about one token per word, plus punctuation) holds several
        # image+text pairs.
        words_per_image = sum(len(t.split()) for t in texts) / len(infos)
        assert words_per_image < 60, doc


def test_novel_word_documents_are_bursty_and_consistent(shards) -> None:
    docs = [d for d in _docs(shards) if d["doc_type"] == "novel_words"]
    docs += [interleaved_document(sample_rng(9, 0, i), 16, "novel_words").record()[0] for i in range(30)]
    word_sets = []
    for doc in docs:
        bindings, cats = doc["bindings"], doc["image_categories"]
        words = [b["word"] for b in bindings]
        assert 2 <= len(words) <= 4 and len(set(words)) == len(words)
        assert all(n >= 2 for n in Counter(cats).values()) and set(cats) == set(range(len(words)))
        assert len({(b["colour"], b["shape"]) for b in bindings}) == len(bindings)
        phrase = doc["phrase"]
        assert phrase in NOVEL_WORD_PHRASES
        matched = [doc["text_list"][i["matched_text_index"]] for i in doc["image_info"]]
        assert len(matched) == len(cats)
        for sentence, c, (colour, shape) in zip(matched, cats, doc["objects"], strict=True):
            assert sentence == phrase.format(word=words[c])  # one format per document, the bound word
            assert shape == bindings[c]["shape"]
            assert bindings[c]["colour"] in (None, colour)
        word_sets.append(frozenset(words))
    # Words are fresh per document: label meanings change across documents.
    assert len(set(word_sets)) == len(word_sets)
    assert any(b["colour"] is None for d in docs for b in d["bindings"])
    assert any(b["colour"] is not None for d in docs for b in d["bindings"])


@pytest.mark.parametrize("doc_type", ["album", "quiz", "compare"])
def test_documents_repeat_one_format(doc_type: str) -> None:
    for i in range(12):
        doc, images = interleaved_document(sample_rng(2, 7, i), 16, doc_type).record()
        assert 3 <= len(images) <= 5
        matched = [doc["text_list"][info["matched_text_index"]] for info in doc["image_info"]]
        if doc_type == "quiz":
            fmt = _template_regex(doc["qa_format"])
            assert all(fmt.match(s) for s in doc["text_list"]), doc
        else:
            tpl = _template_regex(next(t.text for t in TEMPLATES if t.id == doc["template_id"]))
            prefix = doc.get("caption_prefix", "")  # albums: one label per document before every caption
            assert all(s.startswith(prefix) and tpl.match(s[len(prefix):]) for s in matched), doc
            assert not next(t for t in TEMPLATES if t.id == doc["template_id"]).held_out
        if doc_type == "compare":
            assert len(doc["text_list"]) == 2 * len(images) - 1


def test_document_labels_vary_and_never_use_an_evaluation_label() -> None:
    rng = np.random.default_rng(0)
    prefixes = [caption_prefix(rng) for _ in range(400)]
    formats = [document_qa_format(rng) for _ in range(400)]
    # Documents choose their own labels, so the LM learns to copy whatever label a prompt's examples use ...
    assert "" in prefixes and len(set(prefixes)) > 50
    assert set(TRAIN_QA_FORMATS) <= set(formats) and len(set(formats)) > 100
    assert any(is_novel(p[:-2].lower()) for p in prefixes if p)  # made-up labels too ("Zib: ")
    # ... but never an evaluation label or a held-out wording, nor a word reserved for the novel-word task.
    for label_text in prefixes + formats:
        text = label_text + fill_qa("{question} {answer}", "what colour is the star?", "red")
        assert not has_eval_format(text) and not uses_heldout_wording(text), label_text
        assert not reserved_eval_words() & {w.lower() for w in re.findall(r"[A-Za-z]+", label_text)}


def test_clip_stage_reads_every_pair_and_counts_corrupt_ones(shards, tmp_path: Path) -> None:
    raws = _raws(shards["pairs"])
    assert [text for _, text in _pairs(shards["pairs"])] == [raw["txt"].decode() for raw in raws]
    # A corrupt pair is skipped, counted and named by reason, never silently dropped.

    bad = tmp_path / "bad-000000.tar"
    with tarfile.open(bad, "w") as tar:
        for name, data in (("k.png", b"not a png"), ("k.txt", b"a red circle")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    skipped = Counter()
    assert list(_pairs(str(bad), skipped=skipped)) == []
    assert skipped == {"corrupt:bad_image": 1}


def test_quiz_documents_ask_one_question_per_image() -> None:
    for i in range(12):
        doc, images = interleaved_document(sample_rng(6, 7, i), 16, "quiz").record()
        assert len(doc["text_list"]) == len(images)
        assert [info["matched_text_index"] for info in doc["image_info"]] == list(range(len(images)))


def test_compare_sentences_are_true() -> None:
    for i in range(10):
        doc = interleaved_document(sample_rng(5, 7, i), 16, "compare")
        counts = []
        for image, sentence in doc.items:
            if image is not None:
                counts.append(_object_count(sentence))
            else:
                a, b = counts[-2], counts[-1]
                want = "more" if b > a else "fewer" if b < a else "as many"
                assert sentence.startswith(want), (counts, sentence)


def _object_count(short_caption: str) -> int:
    """Objects in a short caption: "a red star, two blue circles and a cross on ..." -> 4."""
    numbers = {"a": 1, "an": 1, "two": 2, "three": 3, "four": 4}
    listed = re.split(r" on | against ", short_caption.removeprefix("a picture of "))[0]
    return sum(numbers[part.split()[0]] for part in re.split(r", | and ", listed))


# --- LM corpus -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lm_corpus(tmp_path_factory.mktemp("lm") / "corpus.txt", seed=1, num_documents=160, progress=False)


def test_corpus_is_one_document_per_line_and_deterministic(corpus: Path, tmp_path: Path) -> None:
    lines = corpus.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 161
    docs = list(read_lm_corpus(corpus))
    assert docs == lines[:-1] and all(d.strip() for d in docs)
    again = write_lm_corpus(tmp_path / "a.txt", seed=1, num_documents=160, progress=False)
    assert again.read_bytes() == corpus.read_bytes()
    other = write_lm_corpus(tmp_path / "b.txt", seed=2, num_documents=160, progress=False)
    assert set(read_lm_corpus(other)).isdisjoint(docs)


def test_corpus_has_no_eval_formats_heldout_wordings_or_eval_words(corpus: Path) -> None:
    pool = reserved_eval_words()
    for doc in read_lm_corpus(corpus):
        assert not has_eval_format(doc), doc
        assert not uses_heldout_wording(doc), doc
        assert not pool & set(WORD.findall(doc)), doc


def test_corpus_documents_have_in_context_structure(corpus: Path) -> None:
    docs = list(read_lm_corpus(corpus))
    assert sum(CHUNK_SEPARATOR in d for d in docs) == len(docs)  # every document is a run of chunks
    for kind in LM_DOC_TYPES:
        for i in range(6):
            doc = lm_document(sample_rng(4, 99, i), kind)
            chunks = doc.split(CHUNK_SEPARATOR)
            assert len(chunks) >= 2, (kind, doc)
            if kind == "repeats":  # the same run of words in every chunk: copying is the only way to predict it
                assert len(set(chunks)) == 1 and len(chunks[0].split()) >= 3, doc
            if kind in ("novel_words", "copying", "mapping", "repeats"):
                # Made-up words are defined/introduced and then reused in the same document.
                made_up = Counter(w for w in WORD.findall(doc.replace(CHUNK_SEPARATOR, " ")) if w not in vocabulary() and w not in _GLUE_WORDS)
                assert all(n >= 2 for n in made_up.values()), (kind, doc)
                assert made_up or kind in ("mapping", "repeats"), doc  # digits as labels; runs of world words
            if kind in ("scene_qa", "clip_qa"):
                # One Q/A format for the whole document: a format's marker is in every chunk or in none.
                used = [m for m in _QA_MARKERS if any(m in c for c in chunks)]
                assert len(used) <= 1 and all(m in c for m in used for c in chunks), doc
                # One question per chunk, so an answer is followed by <|endofchunk|>, never by another question.
                # (A question ends in "?" or is a request: "tell me ...", "count the ...", "say which ...".)
                assert all(c.count("?") + len(_REQUEST.findall(c)) == 1 for c in chunks), doc


def test_fact_documents_state_true_facts_and_often_name_the_thing_last() -> None:
    assert set(_SHAPE_FACTS) == {s.value for s in Shape}  # every shape gets facts
    true_sentences = {}  # every true sentence the forms can make -> (the word it names, whether it names it last)
    for word, facts in _SHAPE_FACTS.items():
        for fact in facts:
            for named_first, described_first in _FACT_FORMS:
                true_sentences[named_first.format(word=word, fact=fact)] = (word, False)
                true_sentences[described_first.format(word=word, fact=fact)] = (word, True)
    for word, things in _COLOUR_FACTS.items():
        for thing in things:
            for form in _COLOUR_FORMS:
                true_sentences[form.format(word=word, thing=thing)] = (word, form.endswith("{word}."))
    said = Counter()
    for i in range(60):
        for chunk in lm_document(sample_rng(4, 98, i), "facts").split(CHUNK_SEPARATOR):
            assert chunk in true_sentences, chunk  # a fact of the thing it names, not of another
            said[true_sentences[chunk]] += 1
    assert {word for word, _ in said} >= set(_SHAPE_FACTS)  # every shape is described
    # Most facts name the thing after describing it, so the word is predicted from what it is like.
    named_last = sum(n for (word, last), n in said.items() if last and word in _SHAPE_FACTS)
    named_first = sum(n for (word, last), n in said.items() if not last and word in _SHAPE_FACTS)
    assert named_last >= 20 and named_first >= 20


# The training wordings that ask by request rather than with a question mark.
_REQUEST = re.compile(r"\b(?:tell me|count the|say which)\b")

# Words the corpus's own sentences use that are neither world vocabulary nor made-up.
_GLUE_WORDS = {"we", "call", "called", "word", "means", "this", "here", "it", "that", "look", "what", "do",
               "key", "value", "input", "label", "q", "reply", "question", "so"}


# What tells the training Q/A formats apart ("{question} {answer}" has no marker).
_QA_MARKERS = ("Q: ", "question: ", " -> ", "q: ", " => ")


def test_tokenizer_text_covers_every_word_but_the_reserved_ones() -> None:
    text = " ".join(iter_tokenizer_text(seed=0, num_documents=20))
    words = set(WORD.findall(text.lower()))
    assert vocabulary() <= words
    heldout_words = {w for t in templates(split="heldout") for w in WORD.findall(re.sub(r"\{[^}]*\}", " ",
                                                                                        t.text.lower()))}
    assert heldout_words <= words
    assert "Question:" in text and "Answer:" in text and "Output:" in text
    assert not reserved_eval_words() & words
    assert CHUNK_SEPARATOR not in text
    assert {str(s) for s in Shape} <= words
