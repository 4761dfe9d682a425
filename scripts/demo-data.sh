#!/usr/bin/env bash
# Writes an instruction data set from text every Debian machine has: the package list's
# one-line descriptions, as chat records {"messages": [user: "What is the Debian package X?",
# assistant: "X: <summary>."]}. Uses apt's full list when present, else the installed packages;
# keeps every k-th package (for MAX_RECORDS) plus a few well-known ones the demo asks about.
#   scripts/demo-data.sh OUT.jsonl [MAX_RECORDS=3000]
set -euo pipefail
out=$1
max=${2:-3000}
list() {
  if [ "$(apt-cache dumpavail 2>/dev/null | grep -c '^Package:')" -gt 1000 ]; then
    apt-cache dumpavail | awk '/^Package: /{p=$2} /^Description: /{sub(/^Description: /, ""); print p "\t" $0}'
  else
    dpkg-query -W -f='${Package}\t${binary:Summary}\n'
  fi
}
# Sorted and de-duplicated so that the same package list always gives the same records.
list | sort -u -t $'\t' -k1,1 > "$out.tmp"
total=$(wc -l < "$out.tmp")
awk -F '\t' -v max="$max" -v total="$total" '
  function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
  BEGIN { step = total > max ? int(total / max) : 1 }
  NF == 2 && $2 != "" && (NR % step == 0 || $1 ~ /^(coreutils|curl|git|bash|openssh-client|rsync)$/) {
    printf "{\"messages\": [{\"role\": \"user\", \"content\": \"What is the Debian package %s?\"}, ", esc($1)
    printf "{\"role\": \"assistant\", \"content\": \"%s: %s.\"}]}\n", esc($1), esc($2)
  }' "$out.tmp" > "$out"
rm -f "$out.tmp"
echo "[demo] $(wc -l < "$out") chat records from the Debian package descriptions in $out"
