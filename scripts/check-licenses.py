#!/usr/bin/env python3
"""License check of every crate the workspace builds (from `cargo metadata`): each package's SPDX
expression must be satisfiable with the licenses allowed below (an OR needs one allowed side, an
AND needs both). A crate without a license, or with one outside the list, fails `make test`
with its name, so a new dependency's license is a decision someone made, not an accident."""
import json
import re
import subprocess
import sys

ALLOWED = {
    "MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause", "BSD-3-Clause", "ISC",
    "Zlib", "Unlicense", "CDLA-Permissive-2.0", "BSL-1.0", "Unicode-3.0", "0BSD", "CC0-1.0",
}


def tokens(expr):
    # Older crates write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    expr = expr.replace("/", " OR ")
    return re.findall(r"\(|\)|[A-Za-z0-9.+-]+(?: WITH [A-Za-z0-9.+-]+)?", expr)


def allowed(toks):
    """Evaluates an SPDX expression: OR binds looser than AND; parentheses group."""
    pos = 0

    def term():
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "(":
            value = disjunction()
            pos += 1  # ")"
            return value
        return tok in ALLOWED

    def conjunction():
        nonlocal pos
        value = term()
        while pos < len(toks) and toks[pos] == "AND":
            pos += 1
            value = term() and value
        return value

    def disjunction():
        nonlocal pos
        value = conjunction()
        while pos < len(toks) and toks[pos] == "OR":
            pos += 1
            value = conjunction() or value
        return value

    return disjunction()


def main():
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked"]))
    bad = []
    for p in meta["packages"]:
        lic = p.get("license")
        if not lic or not allowed(tokens(lic)):
            bad.append(f"{p['name']} {p['version']}: {lic or 'no license field'}")
    if bad:
        print("license check failed; not in the allowed list (scripts/check-licenses.py):", file=sys.stderr)
        print("\n".join("  " + b for b in sorted(bad)), file=sys.stderr)
        sys.exit(1)
    print(f"license check: {len(meta['packages'])} crates, all under allowed licenses")


if __name__ == "__main__":
    main()
