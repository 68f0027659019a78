set -x
for r in 1 2; do
  (cd /tmp/wt-s && EXP_SWITCH=0.0005 .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/s$r > /tmp/exp/s$r.log 2>&1)
  (cd /tmp/wt-s && EXP_SWITCH=0.005 .venv/bin/python -m benchmarks --size medium --only skew --no-report --out /tmp/exp/b$r > /tmp/exp/b$r.log 2>&1)
done
