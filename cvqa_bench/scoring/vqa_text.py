"""Answer normalisation of the official VQA evaluation (GT-Vision-Lab ``vqaEval.py``) and of EvalAI.

Reproduced quirk for quirk, because published VQAv2 / VizWiz / TextVQA numbers depend on it:

* punctuation is deleted when it touches a space (or the text holds a digit-comma-digit anywhere),
  otherwise replaced by a space; both tests look at the *input* text, not the text being edited;
* the period regex ``(?!<=\\d)(\\.)(?!\\d)`` carries a typo (``(?!<=`` is a look-ahead, not a
  look-behind), so it removes every period not followed by a digit, and the official call passes
  ``re.UNICODE`` (= 32) as the *count*, so at most 32 such periods are removed;
* digits/articles lowercase the text, map number words ``none``/``zero`` … ``ten`` to digits, drop
  ``a``/``an``/``the`` and expand apostrophe-less contractions from the official table, whose
  capitalised keys (``Im``, ``Ive``…) can never match after lowercasing and whose
  ``"somebody'd": "somebodyd"`` runs backwards: kept as published.
"""

from __future__ import annotations

import re

# The official table, entry for entry (GT-Vision-Lab/VQA vqaEval.py, master).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Order matters only for the replace calls, and it is the official order.
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(\,)(\d)")
# The official code calls ``periodStrip.sub("", text, re.UNICODE)``: the flag lands in ``count``.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)


def clean_whitespace(text: str) -> str:
    """Replace newlines and tabs by spaces and strip surrounding whitespace (the official first step)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: delete or space out punctuation, then strip periods."""
    # The official code re-runs this search once per punctuation mark on the unchanged input;
    # running it once gives the same answer.
    digit_comma_digit = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if digit_comma_digit or (mark + " " in text or " " + mark in text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lowercase, number words to digits, drop articles, contractions."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_normalize(text: str) -> str:
    """Punctuation then digit/article processing: what the official code applies to a cleaned answer."""
    return process_digit_article(process_punctuation(text))


def evalai_normalize(text: str) -> str:
    """The EvalAI / TextVQA answer processor (``EvalAIAnswerProcessor.__call__``), applied to any answer.

    It lowercases, deletes every ``,`` and ``?``, splits ``'s`` into `` 's``, cleans whitespace, then
    runs the same punctuation and digit/article steps. Because all commas are gone before the
    punctuation step, its digit-comma-digit test (a slightly different regex in EvalAI) never fires.
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return vqa_normalize(clean_whitespace(text))
