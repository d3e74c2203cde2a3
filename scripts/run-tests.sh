#!/usr/bin/env bash
# Runs each test binary given, then the shell-level tests in tests/*.sh, and
# prints one closing line "N passed, N failed" summed over all of them.
# TESTS_SH="a.sh b.sh" limits the shell-level tests to those names.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
passed=0; failed=0; bad=()
tally() { # $1 = name, $2 = output file, $3 = exit code
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
  if [ -z "$line" ]; then failed=$((failed + 1)); bad+=("$1 (no result line, exit $3)"); return; fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$f" != 0 ] || [ "$3" != 0 ]; then bad+=("$1"); [ "$f" = 0 ] && failed=$((failed + 1)); fi
}
out=$(mktemp); trap 'rm -f "$out"' EXIT
for t in "$@"; do
  echo "== $(basename "$t")"
  "$t" > "$out" 2>&1; rc=$?
  grep -vE '^ok   ' "$out"
  tally "$(basename "$t")" "$out" "$rc"
done
for t in "$here"/tests/*.sh; do
  [ -e "$t" ] || continue
  if [ -n "${TESTS_SH:-}" ]; then case " $TESTS_SH " in *" $(basename "$t") "*) ;; *) continue ;; esac; fi
  echo "== $(basename "$t")"
  bash "$t" > "$out" 2>&1; rc=$?
  grep -vE '^ok   ' "$out"
  tally "$(basename "$t")" "$out" "$rc"
done
[ ${#bad[@]} -eq 0 ] || printf 'failing: %s\n' "${bad[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
