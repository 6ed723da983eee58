#!/usr/bin/env bash
# Fails, naming file:line, when code or docs point outside the repository: to design and research
# notes that are not part of it (a file name such as DESIGN.md or kic.md that does not exist at
# that path here, or a shared/research/ folder), or to an issue number ("issue 9", "Issue #4").
# A comment or doc says the fact itself, or points to a file in the repository.
#
# Run from anywhere: ./scripts/check-doc-refs.sh (part of `make lint`). Looks at the files git
# tracks plus new ones not ignored; vendor/ (third-party code) is left out.
set -euo pipefail
cd "$(dirname "$0")/.."

self="scripts/check-doc-refs.sh"
notes='(kic|plugins|grpcroute|reliability|realk8s|aesthetics|DESIGN)\.md'
# Folders of notes outside the repository (not a namespace called "shared" in test data).
folders='shared/(research|DESIGN)|research/[A-Za-z0-9_-]+\.md|\.\./shared/'
issues='[Ii]ssue ?#?[0-9]'
pattern="${notes}|${folders}|${issues}"

mapfile -t files < <(git ls-files -co --exclude-standard | grep -v -e '^vendor/' -e "^${self}\$" |
    while read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done)
[ "${#files[@]}" -gt 0 ] || exit 0

found=0
# file:line:text of every line that mentions one of the names.
while IFS= read -r hit; do
    file="${hit%%:*}"
    rest="${hit#*:}"
    line="${rest%%:*}"
    text="${rest#*:}"
    bad=0
    if grep -qE "${folders}|${issues}" <<<"$text"; then
        bad=1
    fi
    # A note's name is fine where it is a path to a file that exists here (docs/plugins.md),
    # from the repository root or from the file's own folder.
    while IFS= read -r name; do
        [ -n "$name" ] || continue
        if [ ! -f "$name" ] && [ ! -f "$(dirname "$file")/$name" ]; then
            bad=1
        fi
    done < <(grep -oE "[A-Za-z0-9_./-]*${notes}" <<<"$text" || true)
    if [ "$bad" = 1 ]; then
        echo "$file:$line: reference outside the repository: $(sed -E 's/^[[:space:]]+//' <<<"$text")"
        found=1
    fi
done < <(grep -nHE "$pattern" -- "${files[@]}" 2>/dev/null || true)

if [ "$found" = 1 ]; then
    echo "check-doc-refs: state the fact itself, or point to a file in the repository" >&2
    exit 1
fi
