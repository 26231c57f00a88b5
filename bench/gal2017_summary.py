"""Summary tables of a gal2017 experiment from a copy of its database: mean accuracy per label count, labels to
90 % / 95 % per seed, distinct true classes per batch. Usage: python bench/gal2017_summary.py COPY.db [EXPERIMENT]"""
import sqlite3, sys, statistics as st
from collections import defaultdict
db = sqlite3.connect(sys.argv[1])
PREFIX = (sys.argv[2] if len(sys.argv) > 2 else 'gal2017-keras') + '-'  # the experiment's name
rows = db.execute("""select c.name, r.labeled_count, r.test_accuracy from round r join campaign c on c.id=r.campaign_id
                     where r.status='complete' and r.kind='active' and c.name like ?""", (PREFIX + "%",)).fetchall()
acc = defaultdict(dict)
for name, n, a in rows:
    strat, seed = name[len(PREFIX):].rsplit('-seed', 1)
    acc[strat].setdefault(int(seed), {})[n] = a
order = ['variation_ratios', 'entropy', 'mean_std', 'bald', 'random', 'batchbald']
cols = [60, 100, 120, 140, 160, 180, 200, 220, 240, 260, 280, 300]
print('| strategy | ' + ' | '.join(map(str, cols)) + ' | 90 %: mean (seeds) | 95 %: mean (seeds) |')
print('|---|' + '---|' * (len(cols) + 2))
def first(curve, target):
    for n in sorted(curve):
        if curve[n] >= target: return n
    return None
for s in order:
    if s not in acc: continue
    seeds = acc[s]
    common = set.intersection(*[set(c) for c in seeds.values()])
    mean = {n: st.mean(seeds[k][n] for k in seeds) for n in common}
    cells = [f"{mean[n]:.3f}" if n in mean else "" for n in cols]
    def t(target):
        m = first(mean, target)
        per = [first(seeds[k], target) for k in sorted(seeds)]
        return f"{m if m else '—'} ({', '.join(str(p) if p else '—' for p in per)})"
    print(f"| {s} | " + ' | '.join(cells) + f" | {t(0.90)} | {t(0.95)} |")
print()
for s in order:
    if s not in acc: continue
    seeds = acc[s]
    print(s, 'at max:', {k: (max(c), round(c[max(c)], 4)) for k, c in sorted(seeds.items())})
# distinct true classes per batch of 10
q = """select c.name, s.round_id, count(distinct a.label), count(*) from selection s join campaign c on c.id=s.campaign_id
       join annotation a on a.sample_id=s.sample_id and a.campaign_id=s.campaign_id and a.source != 'given'
       where c.name like ? group by c.name, s.round_id"""
per = defaultdict(list); share = defaultdict(list)
for name, rid, distinct, n in db.execute(q, (PREFIX + '%',)):
    per[name[len(PREFIX):].rsplit('-seed', 1)[0]].append(distinct)
q2 = """select c.name, s.round_id, a.label, count(*) from selection s join campaign c on c.id=s.campaign_id
       join annotation a on a.sample_id=s.sample_id and a.campaign_id=s.campaign_id and a.source != 'given'
       where c.name like ? group by c.name, s.round_id, a.label"""
top = defaultdict(int)
for name, rid, label, n in db.execute(q2, (PREFIX + '%',)):
    key = (name, rid); top[key] = max(top[key], n)
tops = defaultdict(list)
for (name, rid), n in top.items():
    tops[name[len(PREFIX):].rsplit('-seed', 1)[0]].append(n / 10)
print('\n| strategy | distinct classes per batch of 10 | share of the most picked class | batches |')
print('|---|---|---|---|')
for s in order:
    if s in per: print(f"| {s} | {st.mean(per[s]):.2f} | {st.mean(tops[s]):.2f} | {len(per[s])} |")
