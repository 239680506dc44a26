#!/usr/bin/env python3
"""Lints the shipped rules, dashboards and promtool fixtures for `le` and `quantile` values that
Prometheus 3 never stores.

Prometheus 3 rewrites the `le` of a classic histogram bucket and the `quantile` of a summary to a
canonical float when it scrapes (Go's shortest `%g`, plus `.0` when that has neither `.` nor `e`):
`le="1"` is stored as `le="1.0"`, `le="10"` as `le="10.0"`, `1000000` as `1e+06`. The library
writes them in that form already (so Prometheus 2 stores the same). A selector written the other
way (`le="1"`) matches nothing in production, while promtool's rule tests, which do not go through
the scrape parser, still pass when their input series are written the same wrong way. So every
`le="..."` / `quantile="..."` (and each alternative of a `=~` / `!~` regex) in a shipped file must
be canonical.

    python3 scripts/check-prometheus3-selectors.py [FILE...]

Without arguments it checks servicemonitors/prometheus-rules.yaml, servicemonitors/tests/*.yaml
(rule tests and fixtures) and dashboards/*.json. Prints one `ok -`/`not ok -` line per file and
exits 1 if any value is not canonical.
"""

import decimal
import math
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# le="1", le=~"1|2.5", quantile!="0.5", with the quotes of YAML/JSON strings possibly escaped (\").
SELECTOR = re.compile(r'\b(le|quantile)\s*(=~|!~|!=|=)\s*\\?"([^"\\]*)\\?"')


def canonical(text):
    """The form Prometheus 3 stores for the float `text`, or None when it is not a number."""
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"
    # repr() is the shortest round-trip form, as Go's FormatFloat(v, 'g', -1, 64) uses.
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digits))
    scientific = len(digits) + exponent - 1
    prefix = "-" if sign else ""
    if scientific < -4 or scientific >= 21 or scientific >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return "%s%se%s%02d" % (prefix, mantissa, "-" if scientific < 0 else "+", abs(scientific))
    text = format(decimal.Decimal(repr(abs(value))), "f")
    if "." not in text:
        text += ".0"
    return prefix + text


def problems(text):
    """Every non-canonical value in `text`, as `label op "value" (stored as "...")`."""
    found = []
    for label, op, value in SELECTOR.findall(text):
        alternatives = value.split("|") if op in ("=~", "!~") else [value]
        for alternative in alternatives:
            want = canonical(alternative)
            if want is not None and want != alternative:
                found.append('%s%s"%s" (Prometheus 3 stores "%s")' % (label, op, alternative, want))
    return found


def self_test():
    for value, want in [("1", "1.0"), ("10", "10.0"), ("0.5", "0.5"), ("+Inf", "+Inf"),
                        ("0", "0.0"), ("0.005", "0.005"), ("1000000", "1e+06"),
                        ("0.00001", "1e-05"), ("100000", "100000.0"), ("2.50", "2.5")]:
        assert canonical(value) == want, (value, canonical(value), want)
    assert problems('x{le="1"} and y{le=~"0.5|10"}') == [
        'le="1" (Prometheus 3 stores "1.0")', 'le=~"10" (Prometheus 3 stores "10.0")']
    assert problems('{\\"le\\": 1} le=\\"1.0\\" quantile="0.99"') == []


def main(argv):
    self_test()
    files = [pathlib.Path(a) for a in argv] or sorted(
        [ROOT / "servicemonitors/prometheus-rules.yaml"]
        + list((ROOT / "servicemonitors/tests").rglob("*.yaml"))
        + list((ROOT / "dashboards").glob("*.json")))
    failed = 0
    for path in files:
        found = problems(path.read_text(encoding="utf-8"))
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        if found:
            failed += 1
            print("not ok - %s: le/quantile values Prometheus 3 never stores: %s"
                  % (name, "; ".join(sorted(set(found)))))
        else:
            print("ok - %s: every le/quantile value is canonical" % name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
