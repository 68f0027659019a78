set -x
for r in 1 2; do
  (cd /tmp/wt-a && .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/a$r > /tmp/exp/a$r.log 2>&1)
  (cd /tmp/wt-exp && EXP_HOT_TOPIC=1 .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/c$r > /tmp/exp/c$r.log 2>&1)
done
