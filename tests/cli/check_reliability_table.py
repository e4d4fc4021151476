#!/usr/bin/env python3
"""docs/reliability.md's table of bad inputs and faults against the tests it names.

Each row's last column is `test_<x>.sh`: <check name>. The named test file must hold
the check (the name in quotes, or after "ok   "), and where the check is an
expect_fail the exit status it asserts (rc=N) must be the row's exit column.
With --fix, adds the missing rc=N to those expect_fail lines instead of failing.
"""
import re
import sys

doc, tests = sys.argv[1], sys.argv[2]
fix = "--fix" in sys.argv[3:]
text = open(doc, encoding="utf-8").read()
section = text.split("## Bad inputs and faults", 1)[1]
rows = [l for l in section.splitlines() if l.startswith("| ") and not l.startswith("| input")]
bad, n = [], 0
for row in rows:
    cols = [c.strip() for c in row.strip().strip("|").split(" | ")]
    if len(cols) != 4:
        bad.append("malformed row: " + row)
        continue
    m = re.fullmatch(r"`(test_[a-z0-9_]+\.sh)`: (.+)", cols[3])
    if not m:
        bad.append("no `test_x.sh`: name in row: " + row)
        continue
    fname, name = m.groups()
    try:
        src = open(f"{tests}/{fname}", encoding="utf-8").read()
    except OSError:
        bad.append(f"{fname} does not exist (row: {cols[0]})")
        continue
    n += 1
    if f'"{name}"' not in src and f"ok   {name}" not in src and f" {name} " not in src:
        bad.append(f"{fname} has no check '{name}'")
        continue
    lines = src.split("\n")
    for i, l in enumerate(lines):
        if not l.lstrip().startswith(f'expect_fail "{name}"'):
            continue
        if not cols[2].isdigit():
            bad.append(f"{fname}: '{name}' is an expect_fail but the row's exit is '{cols[2]}'")
            continue
        rc = re.search(r'" rc=(\d+) --', l)
        if rc and rc.group(1) == cols[2]:
            continue
        if fix and not rc:
            lines[i] = re.sub(r'" -- ', f'" rc={cols[2]} -- ', l, count=1)
            continue
        bad.append(f"{fname}: '{name}' asserts exit {rc.group(1) if rc else '(none)'}, the table says {cols[2]}")
    if fix:
        open(f"{tests}/{fname}", "w", encoding="utf-8").write("\n".join(lines))
for b in bad:
    print("FAIL", b)
print(f"{n} rows checked, {len(bad)} problems")
sys.exit(1 if bad or n < 20 else 0)
