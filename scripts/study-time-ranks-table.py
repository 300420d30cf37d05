# Prints REPORT.md's tables from the sweep.csv files that scripts/study-time-ranks.sh writes.
import csv, sys, glob, os
d = sys.argv[1]
def rows(name):
    return list(csv.DictReader(open(os.path.join(d, name, 'sweep.csv'))))
order = ['fcfs','sjf','sprpt','trail','las','mlfq','memory-time','fair','slack','sprpt-time','trail-time']
for name, label in [('azure','Azure conversation (19,366 requests)'),('mooncake','Mooncake conversation (12,031 requests)'),('vidur','Vidur arXiv summarization lengths (28,257 requests, Poisson arrivals at 4 req/s before scaling)')]:
    p = os.path.join(d, name, 'sweep.csv')
    if not os.path.exists(p): continue
    rs = rows(name)
    scales = sorted({float(r['rate_scale']) for r in rs})
    for pred in ['oracle','lognormal:1']:
        print(f"\n#### {label}, {pred}\n")
        hdr = "| policy |" + "|".join(f" ρ={l} mean e2e | p99 e2e | mean TTFT | p99 TTFT " for l in ['0.8','1.2']) + "|"
        print(hdr)
        print("|---|" + "---:|"*8)
        best = {}
        for s in scales:
            sub = [r for r in rs if float(r['rate_scale'])==s and r['predictor']==pred]
            best[s] = min(float(r['mean_e2e_s']) for r in sub)
        for pol in order:
            cells = []
            for s in scales:
                r = [r for r in rs if float(r['rate_scale'])==s and r['predictor']==pred and r['policy']==pol]
                if not r: cells += ['-']*4; continue
                r = r[0]
                m = float(r['mean_e2e_s'])
                ms = f"**{m:.2f}**" if m == best[s] else f"{m:.2f}"
                cells += [ms, f"{float(r['p99_e2e_s']):.1f}", f"{float(r['mean_ttft_s']):.2f}", f"{float(r['p99_ttft_s']):.1f}"]
                if r['requests_completed'] != r['requests_total']:
                    cells[-4] += f" ({r['requests_completed']}/{r['requests_total']})"
            print(f"| {pol} | " + " | ".join(cells) + " |")
