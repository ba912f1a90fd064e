"""The toy model's tokenizer: whole words of the toy world and its prompts, byte fallback for the rest.

Design (built by hand, not trained, so the vocabulary is exactly what the toy model needs):

* A `tokenizers` Unigram model whose pieces are the words of the world (`WORLD_VOCABULARY`, colours,
  shapes, ...), the words of the toy prompts and of the default engine prompts, the numbers 0-100 (area
  and count answers) and a little punctuation; each word with and without a leading "▁" (the
  sentencepiece space marker; the Metaspace pre-tokenizer turns spaces into it) and in lower and
  capitalised form.
* `byte_fallback=True` plus the 256 byte pieces ``<0x00>`` .. ``<0xFF>``: any character no piece
  covers becomes its UTF-8 bytes. So arbitrary concept names ("kona", "Anna's mug", "猫") never map to
  the unknown token, decoding restores them exactly, and a name appears as the same byte pieces
  whether it starts a line ("kona: <memory>") or follows a space ("is kona here?").
* Special tokens: ``<unk>`` (never produced), ``<|endoftext|>`` (padding), ``<|im_start|>``,
  ``<|im_end|>`` (end of turn = EOS) and ``<image>`` (the LLaVA image placeholder).
* A short chatml-like chat template.

A whole vocabulary of a few hundred pieces keeps the embedding matrices small (the whole model is
about 4 M parameters). The only strings that collide are ones containing "▁" itself (U+2581), which
decodes as a space.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .attributes import COLOURS, MARK_COLOURS, MARK_POSITIONS, PATTERNS, SHAPES, WORLD_VOCABULARY

UNK = "<unk>"
PAD = "<|endoftext|>"
BOT = "<|im_start|>"
EOT = "<|im_end|>"
IMAGE = "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOT, EOT, IMAGE)
SPACE = "\u2581"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Words of the toy prompts, the toy question templates and the engine's default prompts.
PROMPT_WORDS: tuple[str, ...] = (
    # roles and structure
    "user", "assistant", "system", "known", "frames", "question", "options", "answer",
    # the toy prompts and tasks
    "describe", "the", "main", "object", "objects", "image", "how", "much", "many", "of", "is", "are",
    "what", "which", "where", "here", "there", "colour", "color", "shape", "pattern", "mark", "marks",
    "does", "do", "have", "has", "it", "its", "in", "on", "at", "a", "an", "and", "or", "to", "this",
    "that", "these", "b", "left", "bigger", "smaller", "larger", "small", "big", "please", "give", "single",
    "character", "from", "above", "below", "same", "different", "one", "two", "yes", "no", "not",
    "name", "names", "see", "can", "you", "photo", "word", "phrase", "both", "neither", "none",
    # the engine's default prompts
    "subject", "with", "few", "keywords", "separated", "by", "commas", "percentage", "area", "cover",
    "covers", "number", "between", "personal", "concepts", "concept", "each", "given", "appearance",
    "sentence", "if", "appears", "call", "video", "for", "percent",
)  # fmt: skip

PUNCTUATION: tuple[str, ...] = (",", ".", ":", "?", "!", "'", "-", "(", ")", "%", ";", '"', "\n")
NUMBERS: tuple[str, ...] = tuple(str(i) for i in range(101))


def vocabulary_words() -> list[str]:
    """Every whole word of the vocabulary (lower case; capitalised and "▁" forms are added)."""
    words: list[str] = []
    for w in (*WORLD_VOCABULARY, *MARK_COLOURS, *MARK_POSITIONS, *COLOURS, *SHAPES, *PATTERNS, *PROMPT_WORDS):
        if w not in words:
            words.append(w)
    return words


def _pieces(words: Iterable[str]) -> list[tuple[str, float]]:
    """Unigram pieces with scores: whole words -1 (fewest pieces wins), single characters a bit less."""
    out: dict[str, float] = {}
    for tok in SPECIAL_TOKENS:
        out[tok] = 0.0
    for w in words:
        for form in dict.fromkeys((w, w.capitalize())):
            out.setdefault(form, -1.0)
            out.setdefault(SPACE + form, -1.0)
    for n in NUMBERS:
        out.setdefault(n, -1.0)
        out.setdefault(SPACE + n, -1.0)
    for p in PUNCTUATION:
        out.setdefault(p, -1.5)
    out.setdefault(SPACE, -2.0)
    pieces = list(out.items())
    pieces += [(f"<0x{b:02X}>", -20.0) for b in range(256)]
    return pieces


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer (deterministic: the same vocabulary and ids every time)."""
    pieces = _pieces(vocabulary_words())
    model = models.Unigram(pieces, unk_id=0, byte_fallback=True)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        eos_token=EOT,
        bos_token=None,
        additional_special_tokens=[BOT, IMAGE],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
