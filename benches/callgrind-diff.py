#!/usr/bin/env python3
"""Per-iteration difference of callgrind's function costs between two profiles (benches/profile.sh).

usage: callgrind-diff.py BASE.out NEW.out N [self|inclusive] [TOP] [REGEX]

N divides every count (the requests of the loop, or the spans); `self` sums each function's
own cost over its instances (generic instances share a demangled name), `inclusive` takes the
largest instance (callgrind's inclusive counts of recursive and nested generic calls overlap:
read them as orders of magnitude, not as a sum); REGEX keeps matching functions only.
"""
import re, subprocess, sys
def costs(path, inclusive):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", "--inclusive=" + ("yes" if inclusive else "no"), path],
                         capture_output=True, text=True).stdout
    total = None; d = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.*)$", line)
        if not m: continue
        v = int(m.group(1).replace(",", "")); name = m.group(2).strip()
        if name.startswith("PROGRAM TOTALS") or "PROGRAM TOTALS" in name:
            total = v; continue
        if ":" not in name and "[" not in name: continue
        name = re.sub(r"^\S*?:", "", name, count=1) if re.match(r"^[^ ]*\.rs:|^\?\?\?:|^[^ ]*\.c:|^[^ ]*\.h:", name) else name
        name = re.sub(r" \[[^\]]*\]$", "", name)
        if not inclusive: name = re.sub(r"'\d+$", "", name)
        if inclusive: d[name] = max(d.get(name, 0), v)
        else: d[name] = d.get(name, 0) + v
    return total, d
base, new, n = sys.argv[1], sys.argv[2], float(sys.argv[3])
inc = (sys.argv[4] if len(sys.argv) > 4 else "inclusive") == "inclusive"
top = int(sys.argv[5]) if len(sys.argv) > 5 else 25
filt = sys.argv[6] if len(sys.argv) > 6 else None
tb, b = costs(base, inc); tn, c = costs(new, inc)
print(f"total per iteration: base {tb/n:.0f}, new {tn/n:.0f}, diff {(tn-tb)/n:+.0f}")
diffs = sorted(((c.get(k,0)-b.get(k,0))/n, k) for k in set(b)|set(c))
if filt: diffs = [x for x in diffs if re.search(filt, x[1])]
for v, k in sorted(diffs, key=lambda x: -abs(x[0]))[:top]:
    k = re.sub(r"/root/.cargo/registry/src/index.crates.io-[0-9a-f]+/", "", k)
    k = re.sub(r"/rustc/[0-9a-f]+/library/", "", k)
    k = re.sub(r"/work/wt-perf/", "", k)
    print(f"{v:+9.0f}  {k[:230]}")
