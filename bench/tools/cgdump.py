"""Reads a callgrind dump (the walk cgself.py, cgcallers.py and cgcallees.py share).

records(path) yields (function, callee, cost, calls) for every cost line: a function's own cost
has callee and calls None; the inclusive cost of a call from `function` to `callee` has both.
Compressed names ("(12) name" first, "(12)" after) are expanded."""
import re


def records(path):
    names = {}

    def name(rest):
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        if not m:
            return rest
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), rest)

    function = callee = calls = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            function = name(line[3:])
        elif line.startswith("cfn="):
            callee = name(line[4:])
        elif line.startswith("calls="):
            calls = int(line[6:].split()[0])
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if len(parts) >= 2:
                if calls is None:
                    yield function, None, int(parts[1]), None
                else:
                    yield function, callee, int(parts[1]), calls
            calls = None
