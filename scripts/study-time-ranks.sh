#!/usr/bin/env bash
# The study in REPORT.md (issue 11): every policy on every shared trace at loads 0.8 and 1.2,
# oracle and lognormal:1 predictions, then linear aging on the time-keyed ranks.
# Usage: scripts/study-time-ranks.sh OUT_DIR [TRACES_DIR]   (about 15 minutes on 1 core)
# Then: python3 scripts/study-time-ranks-table.py OUT_DIR
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [TRACES_DIR]}
T=${2:-../shared/traces}
B=${AUGUR:-target/release/augur}
P=fcfs,sjf,sprpt,trail,las,mlfq,memory-time,fair,slack,sprpt-time,trail-time
mkdir -p "$out"
for t in azure_llm_2023_conv.csv mooncake_fast25_conversation_trace.jsonl \
         vidur_arxiv_summarization_lengths_llama2.csv; do
  n=${t%%_*}
  "$B" sweep --trace "$T/$t" --policies $P --loads 0.8,1.2 --predictors oracle,lognormal:1 \
    --threads 1 --out "$out/$n" > "$out/$n.txt" 2> "$out/$n.err"
done
for a in 10000 100000 1000000; do
  for t in mooncake_fast25_conversation_trace.jsonl azure_llm_2023_conv.csv; do
    n=${t%%_*}
    "$B" sweep --trace "$T/$t" --policies sprpt-time,trail-time --aging $a --loads 0.8,1.2 \
      --predictors oracle --threads 1 --out "$out/$n-aging$a" > "$out/$n-aging$a.txt" 2>&1
  done
done
