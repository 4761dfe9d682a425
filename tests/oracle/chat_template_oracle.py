"""transformers' apply_chat_template on a model or tokenizer directory, for the tests that check
that chat templates travel with the tokenizer files.

usage: chat_template_oracle.py DIR   prints {"render": ..., "chat": ..., "has_jinja": ..., "has_json": ...}
"""
import json
import os
import sys

from transformers import AutoTokenizer

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]

d = sys.argv[1]
tok = AutoTokenizer.from_pretrained(d)
print(json.dumps({"render": tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True), "chat": CHAT,
                  "has_jinja": os.path.exists(os.path.join(d, "chat_template.jinja")),
                  "has_json": os.path.exists(os.path.join(d, "chat_template.json"))}))
