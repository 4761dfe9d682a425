"""What the `tokenizers` library encodes a text to, or decodes ids to, for the generate tests.

  tok_encode_decode.py encode TOKDIR TEXT        -> JSON list of ids (add_special_tokens=True)
  tok_encode_decode.py decode TOKDIR JSON_IDS    -> JSON string (skip_special_tokens=True)
Output is ASCII JSON so no terminal encoding can change it.
"""
import json
import os
import sys

from tokenizers import Tokenizer


def main():
    mode, tokdir, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    path = tokdir if tokdir.endswith(".json") else os.path.join(tokdir, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    if mode == "encode":
        print(json.dumps(tok.encode(arg, add_special_tokens=True).ids))
    elif mode == "decode":
        print(json.dumps(tok.decode(json.loads(arg), skip_special_tokens=True)))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
