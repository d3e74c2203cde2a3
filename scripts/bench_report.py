#!/usr/bin/env python3
"""Formats bench/results.jsonl as a Markdown table. The reference column is the
best-known CPU engine (llama.cpp) measured on this machine kind with 2 threads,
as recorded in the engine issue; the in-run ratio is the decode's weight
traffic over the memory read bandwidth measured in the same run; prefill's
products are given as a fraction of the vector multiply-add rate probed after
each pp run (the machine's speed at that moment). With several passes over
the set (the "pass" field), a row shows the pass with the median pp and the
pass with the median tg, and the range over the passes."""
import json, sys

REF = {  # (shape, type): (tg tok/s, pp128 tok/s)
    ("tinyllama-1.1b", "q8_0"): (15, 103),
    ("tinyllama-1.1b", "q4_0"): (25, 138),
    ("stories110M", "q8_0"): (134, 1020),
    ("stories15M", "q8_0"): (1500, 10000),
}

def median_row(rs, key):
    s = sorted(rs, key=key)
    return s[(len(s) - 1) // 2]

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for d in runs:
    groups.setdefault((d["shape"], d["type"]), []).append(d)
rows = []
for rs in groups.values():
    p = median_row(rs, lambda d: d["pp"]["avg_ts"])
    t = median_row(rs, lambda d: d["tg"]["avg_ts"])
    d = dict(p)
    for k in ("tg", "decode_weight_bytes_per_s", "decode_bw_fraction", "mem_read_bw_bytes_per_s"):
        d[k] = t[k]
    d["pp_range"] = (min(r["pp"]["avg_ts"] for r in rs), max(r["pp"]["avg_ts"] for r in rs))
    d["tg_range"] = (min(r["tg"]["avg_ts"] for r in rs), max(r["tg"]["avg_ts"] for r in rs))
    d["passes"] = len(rs)
    rows.append(d)
print("| shape | type | threads | pp128 tok/s | ref pp | pp/ref | pp of madd probe | tg64 tok/s | ref tg | tg/ref | decode GB/s | of measured bandwidth |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for d in rows:
    ref = REF.get((d["shape"], d["type"]))
    pp, tg = d["pp"]["avg_ts"], d["tg"]["avg_ts"]
    rp = f'{ref[1]}' if ref else "—"
    rt = f'{ref[0]}' if ref else "—"
    ppr = f'{pp / ref[1]:.0%}' if ref else "—"
    tgr = f'{tg / ref[0]:.0%}' if ref else "—"
    pk = (f'{d["pp_madd_fraction"]:.0%} of {d["madd_peak_per_s"] / 1e9:.0f} G/s'
          if "madd_peak_per_s" in d else "—")
    def rng(r):
        return f' ({r[0]:.0f}–{r[1]:.0f})' if d["passes"] > 1 else ""
    print(f'| {d["shape"]} | {d["type"]} | {d["threads"]} | {pp:.1f} ± {d["pp"]["stddev_ts"]:.1f}{rng(d["pp_range"])} | {rp} | {ppr} | {pk} '
          f'| {tg:.1f} ± {d["tg"]["stddev_ts"]:.1f}{rng(d["tg_range"])} | {rt} | {tgr} | {d["decode_weight_bytes_per_s"] / 1e9:.1f} '
          f'| {d["decode_bw_fraction"]:.0%} of {d["mem_read_bw_bytes_per_s"] / 1e9:.1f} GB/s |')
if rows:
    print(f'\ncpu: {rows[0]["cpu"]}')
    n = max(d["passes"] for d in rows)
    if n > 1:
        print(f'\nEach row: the pass with the median pp (its probe) and the pass with the median tg (its bandwidth), '
              f'of {n} passes over the set minutes apart; in parentheses the range of the passes\' means.')
