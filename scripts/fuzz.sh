#!/usr/bin/env bash
# Fuzzes one of ftune's file parsers with libFuzzer for a bounded time.
#   scripts/fuzz.sh TARGET [SECONDS=20] [WORK_DIR=/tmp/ftune-fuzz-TARGET-$USER]
#   scripts/fuzz.sh TARGET --run FILE...   (re-run saved inputs, e.g. a crash-* reproducer)
# TARGET is one of the rows of the table below. The main build uses g++ and LibTorch; this
# compiles only the torch-free sources a parser needs with clang (-fsanitize=fuzzer,address,
# undefined), so it needs no CMake build dir.
# Exit codes: 0 no crash, 77 clang++ or a library missing (ctest reports a skip), other: the
# fuzzer found a crash, a leak or a timeout; the reproducer is WORK_DIR/crash-* (or leak-*,
# timeout-*, oom-*); keep it as a seed in the target's corpus once fixed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] [WORK_DIR] (targets: safetensors tokenizer jinja toml jsonl gguf)}
shift

# One row per target: sources (besides the fuzz target itself), libraries, the seed corpus and
# dictionary (relative to the repo), and the largest input.
common_src="common/error.cpp common/text.cpp"
tokenizer_src="data/tokenizer/added_vocab.cpp data/tokenizer/bpe.cpp data/tokenizer/byte_tokenizer.cpp
  data/tokenizer/pipeline.cpp data/tokenizer/regex.cpp data/tokenizer/tokenizer.cpp
  data/tokenizer/tokenizer_json.cpp data/tokenizer/unicode.cpp common/sha256.cpp"
# The renderer's loop and size bounds, lowered so that hitting them stays well inside -timeout
# under ASan (data/pipeline/jinja_eval.cpp).
jinja_bounds="-DFTUNE_JINJA_MAX_STEPS=5000 -DFTUNE_JINJA_MAX_BYTES=1048576"
defs=""
jinja_src="data/pipeline/jinja_parse.cpp data/pipeline/jinja_eval.cpp data/pipeline/chat_templates.cpp"
case "$target" in
  safetensors)
    main=tests/runtime/fuzz_safetensors_header.cpp
    src="runtime/checkpoint/safetensors.cpp runtime/checkpoint/posix_file.cpp $common_src"
    libs=""
    corpus=tests/runtime/fuzz_corpus/safetensors
    dict=tests/runtime/fuzz_corpus/safetensors.dict
    max_len=4096 ;;
  tokenizer)
    main=tests/data/fuzz_tokenizer_json.cpp
    src="data/pipeline/encode.cpp $tokenizer_src $common_src"
    libs="-lpcre2-8 -lutf8proc"
    corpus=tests/data/fuzz_corpus/tokenizer
    dict=tests/data/fuzz_corpus/tokenizer.dict
    max_len=8192 ;;
  jinja)
    main=tests/data/fuzz_chat_template.cpp
    src="$jinja_src $common_src"
    libs=""
    defs="$jinja_bounds"
    corpus=tests/data/fuzz_corpus/jinja
    dict=tests/data/fuzz_corpus/jinja.dict
    max_len=4096 ;;
  toml)
    main=tests/launcher/fuzz_toml_config.cpp
    src="launcher/cli/config.cpp data/pipeline/tokenize_config.cpp $common_src"
    libs=""
    # toml++ 3.3.0 (Debian 12) reaches TOML_UNREACHABLE in is_non_ascii_horizontal_whitespace
    # for most non-ASCII characters below U+049A (`[toЏenize]`): undefined behaviour in the
    # library, where GCC's code happens to return the right answer (false, not whitespace).
    # Not ours to fix; ignore that one check so the fuzzer can look past it.
    defs="-fno-sanitize=unreachable"
    corpus=tests/launcher/fuzz_corpus/toml
    dict=tests/launcher/fuzz_corpus/toml.dict
    max_len=4096 ;;
  jsonl)
    main=tests/data/fuzz_jsonl_record.cpp
    src="data/pipeline/render.cpp data/pipeline/input.cpp data/pipeline/encode.cpp $jinja_src $tokenizer_src
         $common_src"
    libs="-lz -lzstd -lpcre2-8 -lutf8proc"
    defs="$jinja_bounds"
    corpus=tests/data/fuzz_corpus/jsonl
    dict=tests/data/fuzz_corpus/jsonl.dict
    max_len=4096 ;;
  gguf)
    main=tests/runtime/fuzz_gguf.cpp
    src="$(cd "$root" && echo runtime/checkpoint/gguf*.cpp) runtime/checkpoint/posix_file.cpp $common_src"
    libs=""
    corpus=tests/runtime/fuzz_corpus/gguf
    dict=tests/runtime/fuzz_corpus/gguf.dict
    max_len=8192 ;;
  *)
    echo "[fuzz] unknown target '$target' (safetensors tokenizer jinja toml jsonl gguf)" >&2
    exit 2 ;;
esac

rerun=()
if [[ "${1:-}" == "--run" ]]; then
  shift
  rerun=("$@")
  seconds=0
  work=${TMPDIR:-/tmp}/ftune-fuzz-$target-$(id -un)
else
  seconds=${1:-20}
  work=${2:-${TMPDIR:-/tmp}/ftune-fuzz-$target-$(id -un)}
fi
cxx=${FTUNE_FUZZ_CXX:-$(command -v clang++ || true)}
if [[ -z "$cxx" ]]; then
  echo "[fuzz] clang++ not found; install Debian's clang to run the fuzzer" >&2
  exit 77
fi

# A system library missing (Debian's libpcre2-dev, libutf8proc-dev, ...) is a skip; a compile
# error in ftune's own sources is not.
if [[ -n "$libs" ]] && ! echo 'int main() { return 0; }' | "$cxx" -x c++ - $libs -o /dev/null 2>/dev/null; then
  echo "[fuzz] $target needs $libs, which $cxx cannot link" >&2
  exit 77
fi

# shellcheck disable=SC2206  # the rows are space- and newline-separated lists of paths
sources=($main $src)
bin="$work/fuzz_$target"
mkdir -p "$work/corpus"

# Rebuild only when a source or header is newer than the binary: the compile takes far longer
# than a run. Headers: every .h beside a source, which over-approximates what it includes.
stale=0
[[ -x "$bin" ]] || stale=1
deps=("${sources[@]}" scripts/fuzz.sh)
for f in "${sources[@]}"; do
  for h in "$root/$(dirname "$f")"/*.h; do [[ -e "$h" ]] && deps+=("${h#"$root"/}"); done
done
for f in "${deps[@]}"; do
  [[ "$root/$f" -nt "$bin" ]] && stale=1
done
if (( stale )); then
  echo "[fuzz] compiling $bin with $cxx"
  # -O1 keeps the sanitizers' reports readable and the compile short; NDEBUG off so that the
  # parsers' own asserts count as crashes too. One object per source through ccache where
  # there is one (keyed relative to the checkout, as scripts/build.sh does): the compile is
  # most of a fuzz ctest's time in a fresh build directory.
  cflags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $defs -I"$root")
  launcher=()
  if [[ "${FTUNE_FUZZ_CCACHE:-1}" != 0 ]] && command -v ccache >/dev/null; then
    launcher=(env CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1 ccache)
  fi
  mkdir -p "$work/obj"
  compile() {
    local objs=() f o
    for f in "${sources[@]}"; do
      o="$work/obj/${f//\//_}.o"
      "${launcher[@]}" "$cxx" "${cflags[@]}" -c "$root/$f" -o "$o"
      objs+=("$o")
    done
    "$cxx" -fsanitize=fuzzer,address,undefined "${objs[@]}" $libs -o "$bin.tmp"
  }
  # Share the machine's two build slots with scripts/locked-build.sh.
  while true; do
    for slot in 0 1; do
      exec 9>"/tmp/ftune-build-slot-$slot.lock"
      if flock -n 9; then
        compile
        exec 9>&-
        mv "$bin.tmp" "$bin"
        break 2
      fi
    done
    sleep 2
  done
fi

flags=(-timeout=10 -rss_limit_mb=2048 -max_len="$max_len" -artifact_prefix="$work/")
[[ -f "$root/$dict" ]] && flags+=(-dict="$root/$dict")
if (( ${#rerun[@]} )); then
  exec "$bin" "${flags[@]}" "${rerun[@]}"
fi

# Seeds go into a working copy so that the inputs libFuzzer adds never touch the repository.
cp -n "$root/$corpus"/* "$work/corpus/"
echo "[fuzz] $target: running for ${seconds}s on $(ls "$work/corpus" | wc -l) corpus inputs"
exec "$bin" "$work/corpus" -max_total_time="$seconds" "${flags[@]}" -print_final_stats=1
