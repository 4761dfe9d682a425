"""Oracle for the C++ Jinja subset: renders chat templates with jinja2 configured as
transformers' apply_chat_template does (sandboxed, trim_blocks, lstrip_blocks, raise_exception,
tojson without ASCII escaping).

usage: pipeline_render_chat.py CASES.json OUT.json
CASES.json: [{"template": str, "vars": {...}}, ...]; OUT.json: [{"ok": str} | {"error": str}]
"""
import json
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    out = []
    for case in cases:
        try:
            out.append({"ok": env.from_string(case["template"]).render(**case["vars"])})
        except Exception as e:  # the C++ side only checks that both fail
            out.append({"error": str(e)})
    json.dump(out, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)


if __name__ == "__main__":
    main()
