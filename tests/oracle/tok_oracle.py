#!/usr/bin/env python3
"""Oracle for ftune's tokenizer: builds tokenizer.json files with the `tokenizers` training
APIs and transformers' SentencePiece converter, and writes what `tokenizers` encodes and
decodes for a corpus.

  tok_oracle.py make OUTDIR CORPUS.jsonl [KIND...]  # OUTDIR/<kind>/tokenizer.json (+ config)
                                                    # and OUTDIR/fuzz.jsonl, a random tricky corpus
  tok_oracle.py expect TOKDIR CORPUS.jsonl OUT.jsonl
      one line per corpus line: ids (add_special_tokens False/True), decode of each
      (skip_special_tokens False/True)
  tok_oracle.py prepare OUTDIR CORPUS.jsonl KIND   # make + expect (both corpora) for one kind
"""
import json
import os
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                   "<|start_header_id|>", "<|end_header_id|>"]


def read_corpus(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def training_text(corpus):
    """The corpus plus deterministic filler so that merges reach multi-character words."""
    words = ("the of and to in is that it for on with as was by this be are from at or an have "
             "not which but all were when we there can been has more if no out so said what up "
             "its about into than them only other new some could time these two may then do "
             "first any my now such like our over man me even most made after also did many "
             "before must through back years where much your way well down should because "
             "tokenizer encode decode merge vocabulary byte level sentence piece").split()
    lines = []
    for i in range(3000):
        lines.append(" ".join(words[(i * 7 + k * 13) % len(words)] for k in range(12)))
    return corpus * 20 + lines


def write_config(path, **entries):
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=1)


def make_llama3(out, text):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=LLAMA3_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    # Added tokens with every flag: normalized/non-normalized, lstrip/rstrip, single_word.
    tok.add_tokens([AddedToken("[TOOL]", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("repeat", single_word=True),
                    AddedToken("café", normalized=True)])
    tok.add_special_tokens([AddedToken("<|python_tag|>", special=True)])
    d = os.path.join(out, "llama3")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    write_config(d, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                 chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def make_qwen2(out, text):
    """Qwen2 style: NFC normalizer, single-digit split, ByteLevel, no BOS."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # A normalized added token whose NFC form differs: matched and decoded in that form.
    tok.add_tokens([AddedToken("nai\u0308ve", normalized=True), AddedToken("e\u0301", normalized=True)])
    d = os.path.join(out, "qwen2")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    write_config(d, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)


def make_gpt2(out, text, name, add_prefix_space, roberta):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text, trainer)
    if roberta:
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")))
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))


def make_bpe_affixes(out, text):
    """BPE with continuing_subword_prefix and end_of_word_suffix, unk, and no decoder."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                  continuing_subword_prefix="##", end_of_word_suffix="</w>",
                                  limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    d = os.path.join(out, "bpe_affixes")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))


def add_byte_tokens(path):
    """SentencePiece byte fallback: <0x00>..<0xFF> in the model vocabulary."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    next_id = max(max(vocab.values()), max((t["id"] for t in j["added_tokens"]), default=-1)) + 1
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = next_id
        next_id += 1
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)


def make_spm_bpe(out, text, name, legacy):
    """SentencePiece-style BPE trained with `tokenizers`: byte_fallback and unk."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if legacy:  # Llama 2's first tokenizer.json: normalizer does the metaspace work
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:
        # split=True and prepend_scheme=always here; spm_hf covers split=False with "first".
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")])
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    add_byte_tokens(path)
    write_config(d, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def make_spm_hf(out, text):
    """A real SentencePiece BPE model with byte_fallback, converted by transformers."""
    import sentencepiece as spm
    d = os.path.join(out, "spm_hf")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "train.txt"), "w", encoding="utf-8") as f:
        for t in text:
            if t.strip():
                f.write(t.replace("\n", " ") + "\n")
    spm.SentencePieceTrainer.train(
        input=os.path.join(d, "train.txt"), model_prefix=os.path.join(d, "spm"), vocab_size=800,
        model_type="bpe", byte_fallback=True, character_coverage=0.98, minloglevel=2,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity")
    # transformers 5 converts a directory's tokenizer.model (LlamaConverter, non-legacy:
    # Metaspace prepend_scheme=first, byte_fallback, merges generated from the vocabulary).
    from transformers import LlamaTokenizer
    os.rename(os.path.join(d, "spm.model"), os.path.join(d, "tokenizer.model"))
    LlamaTokenizer.from_pretrained(d).save_pretrained(d)
    for f in ("train.txt", "spm.vocab", "tokenizer.model"):
        os.remove(os.path.join(d, f))


FRAGMENTS = (list("abcXYZ019 _-.,;:!?()[]{}<>|/\\\"'`~@#$%^&*+=") +
             ["'s", "'S", "'ll", "'LL", "'Re", "'ſ", " ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ",
              "\u00a0", "\u3000", "\u2028", "\u0085", "\u200b", "\u200d", "\u2009", "\u180e", "\x0b", "\x0c",
              "中文", "日本語", "한국어", "العربية", "हिन्दी", "Ελληνικά", "Русский", "ſ", "\u212a", "ß", "İ",
              "e\u0301", "\u0308", "nai\u0308ve", "naïve", "\uFB01", "\u212B", "\u0915\u094d\u0937", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "\U0001f600",
              "١٢٣", "१२३", "½", "²", "Ⅻ", "12345", "3.14", "<|eot_id|>", "<|begin_of_text|>", "<s>", "</s>",
              "<unk>", "[TOOL]", " [TOOL] ", "repeat", "Repeat", "café", "<|python_tag|>", "<0x41>", "▁", "▁▁",
              "Ġ", "def f(x):", "    return", "the", " the", "tokenizer", "encode"])


def fuzz_corpus(path, n, seed):
    """Random mixes of tricky fragments and random code points: finds regex-engine differences."""
    import random
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            parts = []
            for _ in range(rng.randint(1, 24)):
                r = rng.random()
                if r < 0.8:
                    parts.append(rng.choice(FRAGMENTS))
                else:
                    cp = rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x300, 0xFFFF), rng.randint(0x10000, 0x1FFFF)])
                    # Only characters assigned by Unicode 14 (Python 3.11's tables): for newer
                    # ones PCRE2 10.42 (Unicode 15) and tokenizers' Oniguruma (Unicode 16)
                    # disagree on \p{L}/\p{N}, which ftune cannot fix.
                    if 0xD800 <= cp <= 0xDFFF or unicodedata.category(chr(cp)) == "Cn":
                        cp = 0x41
                    parts.append(chr(cp))
            f.write(json.dumps({"text": "".join(parts)}, ensure_ascii=False) + "\n")


MAKERS = {
    "llama3": make_llama3,
    "gpt2": lambda out, text: make_gpt2(out, text, "gpt2", add_prefix_space=False, roberta=False),
    "roberta": lambda out, text: make_gpt2(out, text, "roberta", add_prefix_space=True, roberta=True),
    "spm_bpe": lambda out, text: make_spm_bpe(out, text, "spm_bpe", legacy=False),
    "spm_legacy": lambda out, text: make_spm_bpe(out, text, "spm_legacy", legacy=True),
    "spm_hf": make_spm_hf,
    "qwen2": make_qwen2,
    "bpe_affixes": make_bpe_affixes,
}


def make(out, corpus_path, kinds):
    fuzz_corpus(os.path.join(out, "fuzz.jsonl"), 3000, 1234)
    text = training_text(read_corpus(corpus_path))
    for kind in kinds:
        MAKERS[kind](out, text)


def prepare(out, corpus_path, kind):
    """make + expect for one kind, in one process (each C++ test runs in its own process)."""
    make(out, corpus_path, [kind])
    d = os.path.join(out, kind)
    expect(d, corpus_path, os.path.join(d, "expect.jsonl"))
    expect(d, os.path.join(out, "fuzz.jsonl"), os.path.join(d, "fuzz_expect.jsonl"))


def expect(tok_dir, corpus_path, out_path):
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(out_path, "w", encoding="utf-8") as f:
        for text in read_corpus(corpus_path):
            ids = tok.encode(text, add_special_tokens=False).ids
            ids_special = tok.encode(text, add_special_tokens=True).ids
            f.write(json.dumps({
                "ids": ids, "ids_special": ids_special,
                "decoded": tok.decode(ids_special, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids_special, skip_special_tokens=True),
            }, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4:] or list(MAKERS))
    elif sys.argv[1] == "prepare":
        prepare(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "expect":
        expect(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: tok_oracle.py make|prepare|expect ... (see the docstring)")
