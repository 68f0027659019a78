set -x
for r in 1 2; do
  (cd /tmp/wt-exp && EXP_HOT_TOPIC=1 EXP_HOT_NICE=10 .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/n$r > /tmp/exp/n$r.log 2>&1)
  (cd /tmp/wt-a && .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/a$((r+2)) > /tmp/exp/a$((r+2)).log 2>&1)
done
