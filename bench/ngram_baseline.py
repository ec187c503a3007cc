"""Baseline: character n-gram perplexity on The Time Machine, held-out split (docs/reference.md).

Reference figures of this project; first measured 2026-11-23 on a 2-core CPU.

Preprocessing as the book does it: every run of non-letters becomes one space, lines stripped and
lower-cased, characters of all lines joined (no separator). The last 10% of the characters are held
out. Prints the held-out perplexity of add-k (Laplace-style) and interpolated Kneser-Ney models.

usage: python bench/ngram_baseline.py src/rnnlab/data/timemachine.txt
"""
import collections
import math
import re
import sys

lines = open(sys.argv[1]).readlines()
text = "".join(re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines)
cut = int(len(text) * 0.9)
train, val = text[:cut], text[cut:]
V = sorted(set(text))
print(f"chars={len(text)} vocab={len(V) + 1} train={len(train)} val={len(val)}")


def counts(n):
    c = collections.Counter(train[i:i + n] for i in range(len(train) - n + 1))
    return c


def addk_ppl(n, k):
    cn, cc = counts(n), counts(n - 1) if n > 1 else None
    nll, m = 0.0, 0
    for i in range(n - 1, len(val)):
        ctx, g = val[i - n + 1:i], val[i - n + 1:i + 1]
        num = cn.get(g, 0) + k
        den = (cc.get(ctx, 0) if n > 1 else len(train)) + k * len(V)
        nll -= math.log(num / den)
        m += 1
    return math.exp(nll / m)


def kn_ppl(N, d=0.75):
    c = [None] + [counts(n) for n in range(1, N + 1)]
    # continuation counts for lower orders
    cont = [None] + [collections.Counter(g[1:] for g in c[n + 1]) for n in range(1, N)] + [None]
    ctx_tot = [None] + [collections.Counter() for _ in range(N)]
    ctx_types = [None] + [collections.Counter() for _ in range(N)]
    cont_ctx_tot = [None] + [collections.Counter() for _ in range(N)]
    cont_ctx_types = [None] + [collections.Counter() for _ in range(N)]
    for n in range(1, N + 1):
        for g, v in c[n].items():
            ctx_tot[n][g[:-1]] += v
            ctx_types[n][g[:-1]] += 1
        if n < N:
            for g, v in cont[n].items():
                cont_ctx_tot[n][g[:-1]] += v
                cont_ctx_types[n][g[:-1]] += 1

    def p(h, w, n, top):
        if n == 0:
            return 1.0 / len(V)
        ctx = h[len(h) - (n - 1):] if n > 1 else ""
        if top:
            cnt, tot, types = c[n].get(ctx + w, 0), ctx_tot[n].get(ctx, 0), ctx_types[n].get(ctx, 0)
        else:
            cnt, tot, types = cont[n].get(ctx + w, 0), cont_ctx_tot[n].get(ctx, 0), cont_ctx_types[n].get(ctx, 0)
        lower = p(h, w, n - 1, False)
        if tot == 0:
            return lower
        return max(cnt - d, 0) / tot + d * types / tot * lower

    nll, m = 0.0, 0
    for i in range(N - 1, len(val)):
        nll -= math.log(p(val[i - N + 1:i], val[i], N, True))
        m += 1
    return math.exp(nll / m)


for n in range(1, 7):
    print(f"add-k n={n} k=1: ppl={addk_ppl(n, 1):.3f}  k=0.01: ppl={addk_ppl(n, 0.01):.3f}")
for n in range(2, 9):
    print(f"kneser-ney n={n}: ppl={kn_ppl(n):.3f}")
